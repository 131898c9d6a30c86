"""The study's findings: one line per claim its tests can make, with the evidence each rests on.

``findings`` reads the statistics notebook's tables of tests (each row labelled by
``stats.claims``) and writes one row per comparison: what is compared, the effect (a difference
of mean Dice, or the prompt-use index), the CI and Holm p the claim rests on and which test gave
them (seeds x clusters for recipes replicated across seeds, clusters otherwise), the seeds of
each side, the clusters, and the label: "replicated across seeds", "fixed models only (k
seeds)", "no practical difference" or "inconclusive". The README's and the docs' statements of
the demo's results quote this table; at paper scale it is the summary beside the paper.
"""

from __future__ import annotations

import pandas as pd

COLUMNS = [
    "area",
    "finding",
    "test_set",
    "effect",
    "ci_low",
    "ci_high",
    "p_holm",
    "test",
    "seeds_a",
    "seeds_b",
    "clusters",
    "claim",
]


# a table made readable (``tables.readable``) names these columns differently
ALIASES = {"trained_on": "dataset", "trained_with": "prompt"}


def _text(row: dict, *parts: str) -> str:
    """The named fields of ``row`` that hold a value, joined."""
    values = [row.get(p, row.get(ALIASES.get(p, ""), "")) for p in parts]
    return " ".join(str(v) for v in values if pd.notna(v) and v != "")


# area: (what is compared, from a row; the effect's column)
DESCRIBE = {
    "finetuned vs zero-shot": (
        lambda r: (
            f"{_text(r, 'model')} finetuned on {_text(r, 'trained_on', 'trained_with')} "
            f"vs {_text(r, 'baseline')}"
        ),
        "mean_diff",
    ),
    "text use": (
        lambda r: (
            f"{_text(r, 'model')} finetuned on {_text(r, 'trained_on')} with "
            f"{_text(r, 'trained_with')} vs with {_text(r, 'baseline')}"
        ),
        "mean_diff",
    ),
    "perturbed prompts": (
        lambda r: (
            f"{_text(r, 'setting', 'model')}: a {_text(r, 'mode')} "
            f"{_text(r, 'attribute')} word vs its prompt"
        ),
        "delta",
    ),
    "wording": (
        lambda r: (
            f"{_text(r, 'setting', 'model')}: its {_text(r, 'base_level')} prompt reworded "
            f"({_text(r, 'variant')}) vs as written"
        ),
        "delta",
    ),
    "prompt-use index": (
        lambda r: (
            f"{_text(r, 'setting', 'model')}: its prompt vs the {_text(r, 'control')} control"
        ),
        "use_index",
    ),
    "transfer modes": (
        lambda r: (
            f"{_text(r, 'model')} {_text(r, 'train')} (fraction "
            f"{_text(r, 'train_fraction') or 1}) vs {_text(r, 'baseline')}"
        ),
        "mean_diff",
    ),
    "reference faults": (lambda r: f"{_text(r, 'fault')} ({_text(r, 'model')})", "mean_diff"),
    "models": (
        lambda r: f"{_text(r, 'model_b')} vs {_text(r, 'model_a')} ({_text(r, 'setting')})",
        "mean_diff",
    ),
}


def findings(**tables: pd.DataFrame) -> pd.DataFrame:
    """One row per labelled comparison of the tables given by area (keys of ``DESCRIBE`` with
    spaces, dashes and parentheses as underscores: ``finetuned_vs_zero_shot=...``); tables
    without a ``claim`` column (no margin declared) or empty are left out."""
    areas = {_key(area): area for area in DESCRIBE}
    unknown = sorted(set(tables) - set(areas))
    if unknown:
        raise KeyError(f"unknown finding area(s) {unknown}; valid: {sorted(areas)}")
    rows = []
    for key, table in tables.items():
        if table is None or table.empty or "claim" not in table:
            continue
        area = areas[key]
        describe, effect = DESCRIBE[area]
        for row in table.to_dict("records"):
            rows.append(
                {
                    "area": area,
                    "finding": describe(row),
                    "test_set": row.get("test_set", ""),
                    "effect": row.get(effect),
                    "ci_low": row.get("claim_ci_low", float("nan")),
                    "ci_high": row.get("claim_ci_high", float("nan")),
                    "p_holm": row.get("claim_p", float("nan")),
                    "test": row.get("claim_test", ""),
                    "seeds_a": row.get("seeds_a", row.get("seeds", 1)),
                    "seeds_b": row.get("seeds_b", row.get("seeds", 1)),
                    "clusters": row.get("n_clusters"),
                    "claim": row["claim"],
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def _key(area: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in area.lower())
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_")
