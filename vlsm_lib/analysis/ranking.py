"""Models against each other: pairwise Wilcoxon per test set (the one post-hoc procedure),
Friedman as the omnibus test and for the mean ranks.

Contestants are the configurations of one *setting*: runs of one study trained on the same data
with the same prompt, policy and size (``SETTING``), which differ in the model (and therefore in
its weights). A setting in which one model has two configurations (say two learning rates)
names its contestants by configuration, so they are never merged. Seeds are averaged per image
first (``stats.per_image``).

- ``pairwise_models``: per setting and test set, every pair of contestants on the images both
  scored: Wilcoxon signed-rank, matched-pairs rank-biserial, Holm across the table
  (``stats.compare``, ``stats.holm``).
- ``friedman_ranks``: per setting, the contestants ranked on blocks that every contestant
  scored: images (``block="image"``, the default, usable with one test set) or test sets
  (``block="test_set"``, each contestant's mean Dice per set, as in Demsar 2006). Friedman's
  test (scipy) is the omnibus; the pairs it may separate are those the pairwise Wilcoxon-Holm
  table separates (``separated``): the critical-difference diagram (``figures.cd_diagrams``)
  joins the models that table does not tell apart, as Benavoli, Corani and Mangili (JMLR 2016)
  recommend over mean-rank post-hoc tests such as Nemenyi's, whose verdict on two models
  depends on which others are in the comparison.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats as sps

from vlsm_lib.analysis import stats

SETTING = ("study", "dataset", "prompt", "train", "size")


def contestants(table: pd.DataFrame, metric: str = "dice") -> pd.DataFrame:
    """Seed-averaged per-image rows with ``setting`` and ``contestant`` labels (finetune and
    zero-shot studies)."""
    images = stats.per_image(table, metric)
    images = images[stats.of_kind(images, "finetune", "zero_shot")]
    setting = [c for c in SETTING if c in images]
    named = images[setting].astype(object).where(images[setting].notna(), "-").astype(str)
    images = images.assign(setting=named.agg(" / ".join, axis=1))
    config = "config" if "config" in images else "model"
    per_model = images.groupby(["setting", "model"])[config].transform("nunique")
    label = images["model"].where(per_model == 1, images["model"] + " [" + images[config] + "]")
    return images.assign(contestant=label)


def pairwise_models(table: pd.DataFrame, metric: str = "dice", alpha: float = 0.05, margin=None):
    """Every pair of contestants per setting and test set (see the module docstring); with
    ``margin``, each row's claim (``stats.claims``: models with fewer than three seeds are
    compared as the trained models they are)."""
    rows = []
    raw = stats.with_config(table)
    images = contestants(table, metric)
    for (setting, test_set), group in images.groupby(["setting", "test_set"], sort=False):
        names = list(dict.fromkeys(group["contestant"]))
        for a, b in itertools.combinations(names, 2):
            side_a, side_b = group[group.contestant == a], group[group.contestant == b]
            label = {"setting": setting, "test_set": test_set, "model_a": a, "model_b": b}
            rows.append(stats.comparison_row(label, side_a, side_b, metric, raw))
    return stats.holm(pd.DataFrame(rows), alpha, margin) if rows else pd.DataFrame()


def rank_blocks(group: pd.DataFrame, metric: str, block: str) -> pd.DataFrame:
    """(blocks x contestants) ``metric``, complete blocks only."""
    if block == "image":
        index = ["test_set", "image_id"]
        wide = group.pivot_table(index=index, columns="contestant", values=metric)
    elif block == "test_set":
        wide = group.pivot_table(index="test_set", columns="contestant", values=metric)
    else:
        raise ValueError(f"block must be 'image' or 'test_set', got {block!r}")
    return wide.dropna()


def friedman_ranks(
    table: pd.DataFrame, pairwise: pd.DataFrame, metric: str = "dice", block: str = "image"
) -> dict:
    """{setting: {"friedman": {statistic, p, blocks, contestants}, "mean_rank": Series (1 =
    best), "separated": DataFrame of Holm p-values of ``pairwise``, ``pairwise_models``'s
    table}} for settings with at least 3 contestants and 2 complete blocks (Friedman's test
    needs them). A pair tested on several test sets takes its largest p (told apart only where
    every test set tells it apart); a pair without a test (no difference) takes 1."""
    out = {}
    for setting, group in contestants(table, metric).groupby("setting", sort=False):
        wide = rank_blocks(group, metric, block)
        if wide.shape[1] < 3 or wide.shape[0] < 2:
            continue
        statistic, p = sps.friedmanchisquare(*(wide[c] for c in wide.columns))
        ranks = wide.rank(axis=1, ascending=False).mean()  # higher Dice, better (lower) rank
        out[setting] = {
            "friedman": {
                "statistic": float(statistic),
                "p": float(p),
                "blocks": len(wide),
                "contestants": wide.shape[1],
            },
            "mean_rank": ranks.sort_values(),
            "separated": _pairwise_p(pairwise, setting, list(wide.columns)),
        }
    return out


def _pairwise_p(pairwise: pd.DataFrame, setting: str, names: list[str]) -> pd.DataFrame:
    """The symmetric matrix of ``pairwise``'s Holm p-values among ``names`` in ``setting``."""
    matrix = pd.DataFrame(np.ones((len(names), len(names))), index=names, columns=names)
    if pairwise.empty:
        return matrix
    rows = pairwise[pairwise.setting == setting]
    for (a, b), p in rows.groupby(["model_a", "model_b"])["p_holm"].max().items():
        if a in matrix and b in matrix and pd.notna(p):
            matrix.loc[a, b] = matrix.loc[b, a] = p
    return matrix


def friedman_table(results: dict) -> pd.DataFrame:
    """One row per setting and contestant: Friedman's statistic and p, the mean rank."""
    rows = [
        {"setting": s, **r["friedman"], "contestant": name, "mean_rank": rank}
        for s, r in results.items()
        for name, rank in r["mean_rank"].items()
    ]
    return pd.DataFrame(rows)
