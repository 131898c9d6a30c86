"""Statistics over gathered per-image tables: summaries with bootstrap CIs, paired tests,
the effect of perturbed prompts.

Comparisons are paired on the same test images (``test_set`` + ``image_id``): Wilcoxon
signed-rank on per-image metric values, Holm correction across the family of tests reported in
one table (statsmodels), bootstrap 95 % confidence intervals of means (scipy).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

KEYS = ["test_set", "image_id"]


def bootstrap_ci(values, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (scipy); (nan, nan) for fewer than two values."""
    values = np.asarray(values, float)
    values = values[~np.isnan(values)]
    if len(values) < 2 or np.all(values == values[0]):
        m = float(values.mean()) if len(values) else float("nan")
        return m, m
    res = sps.bootstrap(
        (values,),
        np.mean,
        confidence_level=level,
        n_resamples=2000,
        random_state=seed,
        method="percentile",
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def summary_table(table: pd.DataFrame, metric: str = "dice") -> pd.DataFrame:
    """Mean metric with a 95 % CI per study, model, test set and prompt."""
    cols = [c for c in ("study", "model", "test_set", "prompt_key", "train") if c in table]
    rows = []
    for key, group in table.groupby(cols, dropna=False):
        low, high = bootstrap_ci(group[metric])
        rows.append(
            {
                **dict(zip(cols, key if isinstance(key, tuple) else (key,))),
                "runs": group.run_id.nunique(),
                "images": len(group),
                metric: group[metric].mean(),
                "ci_low": low,
                "ci_high": high,
            }
        )
    return pd.DataFrame(rows)


def paired_test(a: pd.DataFrame, b: pd.DataFrame, metric: str = "dice") -> dict:
    """Wilcoxon signed-rank of b - a over the images both contain."""
    joined = a[KEYS + [metric]].merge(b[KEYS + [metric]], on=KEYS, suffixes=("_a", "_b"))
    diff = (joined[f"{metric}_b"] - joined[f"{metric}_a"]).dropna().to_numpy()
    out = {
        "n": len(diff),
        "mean_a": joined[f"{metric}_a"].mean(),
        "mean_b": joined[f"{metric}_b"].mean(),
        "mean_diff": float(np.mean(diff)) if len(diff) else float("nan"),
        "p": float("nan"),
    }
    if len(diff) and np.any(diff != 0):
        out["p"] = float(sps.wilcoxon(diff, zero_method="wilcox").pvalue)
    return out


def holm(table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Add Holm-adjusted p-values and a significance flag over the rows' ``p``."""
    table = table.copy()
    ok = table["p"].notna()
    table["p_holm"] = np.nan
    table["significant"] = False
    if ok.any():
        reject, adjusted, _, _ = multipletests(table.loc[ok, "p"], alpha=alpha, method="holm")
        table.loc[ok, "p_holm"] = adjusted
        table.loc[ok, "significant"] = reject
    return table


COMPARISON = ["model", "test_set", "prompt", "n", "mean_a", "mean_b", "mean_diff", "p"]


def _compare(pairs, metric: str, alpha: float) -> pd.DataFrame:
    """Paired tests of (model, test_set, prompt, baseline rows, other rows), Holm-corrected."""
    rows = [
        {"model": m, "test_set": t, "prompt": p, **paired_test(a, b, metric)}
        for m, t, p, a, b in pairs
    ]
    return holm(pd.DataFrame(rows, columns=COMPARISON), alpha)


def finetune_vs_zero_shot(table: pd.DataFrame, metric="dice", alpha=0.05) -> pd.DataFrame:
    """Each finetuned run against the zero-shot run of the same model, test set and prompt."""
    zs, ft = table[table.study == "zero_shot"], table[table.study == "finetune"]
    pairs = []
    for (model, test_set, prompt), tuned in ft.groupby(["model", "test_set", "prompt"]):
        base = zs[(zs.model == model) & (zs.test_set == test_set) & (zs.prompt == prompt)]
        if len(base):
            pairs.append((model, test_set, prompt, base, tuned))
    return _compare(pairs, metric, alpha)


def prompt_effect(table: pd.DataFrame, metric="dice", alpha=0.05, empty="p0") -> pd.DataFrame:
    """Finetuned runs with a prompt against the same model and data finetuned with P0."""
    ft = table[table.study == "finetune"]
    pairs = []
    for (model, test_set), group in ft.groupby(["model", "test_set"]):
        base = group[group.prompt == empty]
        if len(base):
            pairs += [
                (model, test_set, prompt, base, other)
                for prompt, other in group[group.prompt != empty].groupby("prompt")
            ]
    return _compare(pairs, metric, alpha)


def perturbation_effect(table: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice change against the unperturbed prompt, per attribute and mode, over the
    images whose prompt actually changed (a ``perturbation_sweep`` table)."""
    base = table[table.attribute == "none"].set_index("image_id")["dice"]
    out = []
    for (attribute, mode), group in table[table.attribute != "none"].groupby(["attribute", "mode"]):
        changed = group[group.changed]
        delta = changed["dice"].to_numpy() - base.loc[changed.image_id].to_numpy()
        out.append(
            {
                "attribute": attribute,
                "mode": mode,
                "n_changed": len(changed),
                "delta_dice": float(np.mean(delta)) if len(delta) else float("nan"),
            }
        )
    return pd.DataFrame(out)


def save_tables(folder, **tables: pd.DataFrame) -> list[str]:
    """Write each table as ``<folder>/<name>.csv`` (atomically); returns the file names."""
    from pathlib import Path

    from vlsm_lib.files import write_text

    for name, table in tables.items():
        write_text(Path(folder) / f"{name}.csv", table.to_csv(index=False))
    return [f"{name}.csv" for name in tables]
