"""The paper's tables from a gathered suite: Table 2, prompt levels, domain shift, effects.

Table 2, prompt levels and domain shift read the rows of ``stats.summary_table`` (computed
once for a suite: its bootstrap is the expensive part).

**Table 2** (``table2``): per training set, model, prompt and test set, mean Dice over images
(seeds averaged per image) with a 95 % bootstrap CI that resamples clusters (``stats``), for the
zero-shot and the finetuned runs, with the mean over non-empty truths and how empty masks were
predicted beside it (a configuration that predicts empty masks is flagged: its mean is the
empty-mask rule's); ``best`` marks the highest mean of a test set within a kind only where it
beats the runner-up as a recipe. With the paper's numbers (``read_paper``) each finetuned row
also carries the paper's Dice for the same (training regime, model, test set) and our
difference from it. ``table2_wide`` is the same as a readable grid, marked values in bold.

**Prompt levels** (``prompt_levels``, the data of the paper's Fig. 2): per setting, model,
training set and test set, mean Dice at every prompt level with its CI, the mean over images
whose truth is not empty, and whether the level is an oracle prompt.

**Domain shift** (``domain_shift``): per checkpoint, its in-distribution Dice (the test sets of
the data it was trained on, from the domain-shift run itself or else from its finetune run) and
its Dice on each unseen set, with the drop.

**Readable comparisons** (``readable``): the tables of ``vlsm_lib.analysis.effects`` (Fig. 3's
perturbations, the prompt-use index) and of the paired tests with what they compare in front.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vlsm_lib.analysis.stats import (
    REPLICATED,
    comparison_row,
    holm,
    of_kind,
    per_image,
    with_config,
)
from vlsm_lib.data.oracle import is_oracle
from vlsm_lib.data.pooled import members
from vlsm_lib.results import PROMPT_TOKEN

# The paper's names -> the registry's and the datasets' folder names.
PAPER_MODELS = {
    "CLIPSeg": "clipseg",
    "CRIS": "cris",
    "BiomedCLIPSeg": "biomedclipseg",
    "BiomedCLIPSeg-D": "biomedclipseg_d",
    "UNet": "unet",
    "UNet++": "unetpp",
    "DeepLabv3+": "deeplabv3plus",
}
PAPER_SETS = {
    "kvasir": "kvasir_polyp",
    "clinicdb": "clinicdb_polyp",
    "bkai": "bkai_polyp",
    "cvc300": "cvc300_polyp",
    "colondb": "colondb_polyp",
    "etis": "etis_polyp",
}
PAPER_TRAINING = {"Pooled all": "pooled_all", "Endoscopy pooled": "pooled_polyp"}
INDIVIDUAL = "Individual"  # trained on the test set's own training split


def read_paper(path: str | Path) -> pd.DataFrame:
    """The paper's Dice as fractions, keyed by (regime, model, test_set) in our names."""
    paper = pd.read_csv(path)
    paper = paper[paper["model"].isin(PAPER_MODELS)]
    return pd.DataFrame(
        {
            "regime": paper["finetuned_on"],
            "model": paper["model"].map(PAPER_MODELS),
            "test_set": paper["tested_on"].map(lambda s: PAPER_SETS.get(s, s)),
            "paper_dice": paper["dice_percent"] / 100,
            "paper_source": paper["source"],
        }
    ).drop_duplicates(["regime", "model", "test_set"])


def _regime(trained_on: str, test_set: str) -> str:
    if trained_on == test_set:
        return INDIVIDUAL
    return {v: k for k, v in PAPER_TRAINING.items()}.get(trained_on, trained_on)


def table2(
    summary: pd.DataFrame,
    metric: str = "dice",
    paper=None,
    table: pd.DataFrame | None = None,
    alpha: float = 0.05,
    margin: float = 0.01,
) -> pd.DataFrame:
    """Long Table 2 (see the module docstring) from ``stats.summary_table``'s rows: one row per
    zero-shot or finetuned configuration and test set, with the mean over non-empty truths and
    how it treats empty masks beside the mean. ``paper``: ``read_paper``'s table, or the path of
    a paper_results.csv ("" or None: none).

    ``best`` marks a column's best only where it differs from the runner-up at the level of a
    recipe (``stats.claims``: "replicated across seeds", three seeds for every side that
    trains); ``table`` (the gathered rows) is what that test needs: without it, with fewer
    seeds or with models that train nothing, nothing is marked."""
    if isinstance(paper, str | Path):
        paper = read_paper(paper) if str(paper) else None
    summary = summary[of_kind(summary, "zero_shot", "finetune")]
    keep = ["study", "dataset", "model", "prompt", "test_set", "seeds", "images", "clusters"]
    numbers = [metric, "ci_low", "ci_high", "seed_sd", f"{metric}_gt_nonempty"]
    numbers += ["empty_truths", "empty_kept_empty", "missed_as_empty", "predicts_empty"]
    out = summary[[c for c in keep + numbers if c in summary]].copy()
    tuned = of_kind(summary, "finetune")
    out.insert(1, "trained_on", out["dataset"].where(tuned, "-"))
    out = out.drop(columns="dataset")
    # the best within a kind (finetuned or zero-shot) and test set, whatever the studies' names
    kind = summary["kind" if "kind" in summary else "study"]
    out["best"] = False
    if table is not None:
        best = _replicated_best(summary, table, kind, metric, alpha, margin)
        out.loc[best, "best"] = True
    if paper is not None:
        regime = [_regime(t, s) for t, s in zip(out["trained_on"], out["test_set"])]
        out = out.assign(regime=regime).merge(paper, on=["regime", "model", "test_set"], how="left")
        out.loc[out["trained_on"] == "-", ["paper_dice", "paper_source"]] = None
        out["diff_vs_paper"] = out[metric] - out["paper_dice"]
    return out


def _replicated_best(summary, table, kind, metric, alpha, margin) -> list:
    """The index of each (kind, test set) column's best row that beats the runner-up at the
    level of a recipe (``stats.claims``)."""
    raw = with_config(table)
    images = per_image(raw, metric)
    marked = []
    for _, column in summary.groupby([kind, "test_set"], dropna=False, sort=False):
        if len(column) < 2 or "config" not in column:
            continue
        first, second = column.nlargest(2, metric).index
        sides = [
            images[
                (images.config == column.at[i, "config"])
                & (images.test_set == column.at[i, "test_set"])
            ]
            for i in (second, first)
        ]
        row = comparison_row({}, sides[0], sides[1], metric, raw)
        if holm(pd.DataFrame([row]), alpha, margin)["claim"].iloc[0] == REPLICATED:
            marked.append(first)
    return marked


def _cell(row: pd.Series, metric: str) -> str:
    """ "mean [low, high]" (bold: the column's best, replicated), the seeds' spread when there
    are several, the mean over non-empty truths when the set has empty ones, and a flag for a
    configuration that predicts empty masks (its mean is the empty-mask rule's)."""
    text = ("**{:.3f}**" if row["best"] else "{:.3f}").format(row[metric])
    text += f" [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
    if row.get("seeds", 1) > 1:
        text += f" sd {row['seed_sd']:.3f} ({int(row['seeds'])} seeds)"
    if row.get("empty_truths", 0) > 0:
        text += f"; non-empty {row[f'{metric}_gt_nonempty']:.3f}"
    if row.get("predicts_empty", False):
        text += "; predicts empty masks"
    return text


def table2_wide(long: pd.DataFrame, metric: str = "dice") -> pd.DataFrame:
    """Table 2 as a grid: rows (study, trained on, model, prompt), one column per test set,
    cells "mean [low, high]" (``_cell``), a column's replicated best in bold."""
    cell = long.apply(_cell, axis=1, metric=metric)
    rows = ["study", "trained_on", "model", "prompt"]
    grid = long.assign(cell=cell).pivot_table(
        index=rows, columns="test_set", values="cell", aggfunc="first"
    )
    return grid.reset_index().rename_axis(columns=None).fillna("")


def domain_shift(summary: pd.DataFrame, metric: str = "dice") -> pd.DataFrame:
    """Per domain-shift configuration of ``stats.summary_table``'s rows: in-distribution Dice,
    Dice on each unseen test set, the drop (in-distribution minus unseen)."""
    rows = []
    for (model, dataset, prompt), shift in summary[of_kind(summary, "domain_shift")].groupby(
        ["model", "dataset", "prompt"], sort=False
    ):
        own = members(dataset)
        seen = shift[shift.test_set.isin(own)]
        if seen.empty:  # the finetune run of the same checkpoint scored its own test sets
            tuned = summary[of_kind(summary, "finetune") & (summary.model == model)]
            seen = tuned[(tuned.dataset == dataset) & (tuned.prompt == prompt)]
            seen = seen[seen.test_set.isin(own)]
        in_dist = seen[metric].mean() if len(seen) else float("nan")
        for row in shift[~shift.test_set.isin(own)].itertuples():
            dice = getattr(row, metric)
            rows.append(
                {
                    "model": model,
                    "trained_on": dataset,
                    "prompt": prompt,
                    "in_distribution": in_dist,
                    "unseen_set": row.test_set,
                    metric: dice,
                    "ci_low": row.ci_low,
                    "ci_high": row.ci_high,
                    "drop": in_dist - dice,
                }
            )
    return pd.DataFrame(rows)


def _levels_of(summary: pd.DataFrame) -> pd.DataFrame:
    """Zero-shot and finetune rows whose configuration (its run id without prompt and seed)
    was run at two or more prompt levels: trained (finetune) and tested at each level."""
    runs = summary[
        of_kind(summary, "zero_shot", "finetune") & summary.prompt.str.fullmatch(r"p\d+")
    ]
    if runs.empty or "config" not in runs:
        return pd.DataFrame()
    family = runs["config"].str.replace(rf"__({PROMPT_TOKEN})(?=__|$)", "", regex=True)
    runs = runs.assign(_family=family)
    several = runs.groupby(["_family", "test_set"])["prompt"].transform("nunique") > 1
    runs = runs[several]
    setting = of_kind(runs, "finetune").map({False: "zero-shot", True: "finetuned"})
    # one line across the levels: "trained with" is the level itself
    runs = runs.assign(prompt_key=runs.prompt, prompt="each level", setting=setting)
    return runs.assign(curve="at each level").drop(columns="_family")


def prompt_levels(summary: pd.DataFrame, metric: str = "dice") -> pd.DataFrame:
    """The data of the paper's Fig. 2 from ``stats.summary_table``'s rows: per setting
    (zero-shot / finetuned), model, training set and test set, mean Dice at each prompt level
    with its CI and the mean over non-empty truths. Two kinds of curve (column ``curve``):
    "at each level", one run per level (finetuned runs trained and tested with it), and
    "sweep of <prompt>", one run (a prompt-ablation run of a checkpoint trained with
    <prompt>, or zero-shot weights) tested at every level. ``oracle`` says whether the level's
    words come from the test mask (``prompts.is_oracle``; None for an unknown dataset)."""
    frames = [_levels_of(summary)]
    if "prompt_key" in summary:
        sweep = summary[summary["prompt_key"].notna()]
        if "sweep" in sweep:
            sweep = sweep[sweep["sweep"].fillna("level") == "level"]
        if "setting" not in sweep:  # a run from before settings were recorded
            sweep = sweep.assign(setting="unknown")
        frames.append(sweep.assign(curve="sweep of " + sweep["prompt"].astype(str)))
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    out = out.assign(oracle=[is_oracle(t, k) for t, k in zip(out["test_set"], out["prompt_key"])])
    keep = ["setting", "curve", "model", "dataset", "prompt", "test_set", "prompt_key", "oracle"]
    keep += ["seeds", "images", metric, "ci_low", "ci_high", f"{metric}_gt_nonempty", "seed_sd"]
    out = out[[c for c in keep if c in out]]
    out = out.assign(_level=out["prompt_key"].str[1:].astype(int)).sort_values(
        ["setting", "curve", "model", "dataset", "test_set", "_level"], kind="stable"
    )
    return out.drop(columns="_level").rename(
        columns={"dataset": "trained_on", "prompt": "trained_with"}
    )


# Columns that say what an effect row compares, in reading order, and the numbers after them.
_EFFECT_IDENTITY = ["setting", "model", "dataset", "prompt", "test_set"]


def readable(effect: pd.DataFrame) -> pd.DataFrame:
    """A comparison table (``effects``' perturbations and prompt-use index, ``stats``' paired
    tests) with what is compared first, then the numbers. Paths and run ids are dropped, and
    size and policy when all rows share them (``summary`` keeps them), as are empty columns."""
    if effect.empty:
        return effect
    same = {c for c in ("size", "train", "train_fraction") if c in effect}
    drop = {"study", "kind", "weights", "config"} | {c for c in same if effect[c].nunique() < 2}
    front = [c for c in _EFFECT_IDENTITY if c in effect]
    rest = [c for c in effect if c not in front and c not in drop]
    effect = effect[front + rest].dropna(axis=1, how="all")
    return effect.rename(columns={"dataset": "trained_on", "prompt": "trained_with"})
