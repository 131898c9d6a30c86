"""Effects inside a run: how Dice changes when only the prompt changes.

A prompt-ablation run scores one model on the same test images under several prompt conditions
(column ``sweep``: ``perturbation`` rows carry ``attribute`` and ``mode``, ``use`` rows carry
``condition``, ``wording`` rows ``variant``). Each effect pairs a condition with the baseline
condition of the same configuration on the same images (``stats.per_image``: seeds averaged
per image first), with a bootstrap CI that resamples clusters, the Wilcoxon signed-rank
p-value, the matched-pairs rank-biserial effect size and Holm's correction over the rows of one
table (``stats``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vlsm_lib.analysis.stats import (
    claims,
    compare,
    configuration,
    holm,
    per_image,
    rows_where,
    seed_rows,
    with_config,
)


def changed_rows(table: pd.DataFrame, baseline: dict) -> pd.DataFrame:
    """The rows of the ``baseline`` condition and those whose prompt their condition changed
    (column ``changed``; a table without it is returned whole)."""
    if "changed" not in table:
        return table
    is_base = np.logical_and.reduce([table[k] == v for k, v in baseline.items()])
    return table[is_base | table["changed"].astype(bool)]


def perturbation_rows(table: pd.DataFrame) -> pd.DataFrame:
    """A ``perturbation_sweep`` table's unperturbed rows and the rows whose prompt the
    perturbation changed: what Fig. 3 compares."""
    return changed_rows(table, {"attribute": "none"})


def sweep_effect(
    table: pd.DataFrame,
    sweep: str,
    condition: list[str],
    baseline: dict,
    metric: str = "dice",
    changed_only: bool = False,
    alpha: float = 0.05,
    margin: float | None = None,
    within: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Per configuration, test set and condition of one within-run ``sweep`` (rows with that
    ``sweep`` value; all rows when the table has no ``sweep`` column): the per-image change of
    ``metric`` against the ``baseline`` condition of the same configuration on the same images
    (``delta`` = condition - baseline, seeds averaged per image first) with a clustered
    bootstrap CI, Wilcoxon p over clusters, rank-biserial and Holm over the table, and the
    recipe-level CI and p over the same seeds (``stats.compare``); with ``margin``, each row's
    claim (``stats.claims``: a finetuned model's seeds are its replicates; a zero-shot model is
    one fixed model). ``changed_only``: only images whose prompt the condition changed (column
    ``changed``). ``within``: columns that split a configuration further (a wording sweep's
    ``base_level``: seeds whose runs reworded different levels are never paired or pooled)."""
    if "sweep" in table:
        table = table[table["sweep"] == sweep]
    if table.empty:
        return pd.DataFrame()
    table = with_config(table)
    if changed_only:
        table = changed_rows(table, baseline)
    images = per_image(table, metric)
    cols = configuration(images) + ["test_set"] + [c for c in within if c in images]
    rows = []
    for key, group in images.groupby(cols, dropna=False, sort=False):
        ident = dict(zip(cols, key))
        base = rows_where(group, **baseline)
        for cond, other in group.groupby(condition, dropna=False, sort=False):
            cond = dict(zip(condition, cond if isinstance(cond, tuple) else (cond,)))
            if all(cond.get(k) == v for k, v in baseline.items()):
                continue
            seeds = {"a_seeds": seed_rows(table, base), "b_seeds": seed_rows(table, other)}
            test = compare(base, other, metric, **seeds, same_models=True)
            trains = ident.get("setting", "finetuned") != "zero-shot"
            rows.append(
                {
                    **ident,
                    **cond,
                    "seeds": int(other["seeds"].max()),
                    "seeds_a": int(base["seeds"].max()),
                    "seeds_b": int(other["seeds"].max()),
                    "trains_a": trains,
                    "trains_b": trains,
                    "n_records": test["n_records"],
                    "n_clusters": test["n_clusters"],
                    "n_nonzero": test["n_nonzero"],
                    f"{metric}_baseline": test["mean_a"],
                    metric: test["mean_b"],
                    "delta": test["mean_diff"],
                    "ci_low": test["diff_ci_low"],
                    "ci_high": test["diff_ci_high"],
                    "rank_biserial": test["rank_biserial"],
                    "p": test["p"],
                    "recipe_ci_low": test.get("recipe_ci_low", np.nan),
                    "recipe_ci_high": test.get("recipe_ci_high", np.nan),
                    "recipe_p": test.get("recipe_p", np.nan),
                }
            )
    if not rows:
        return pd.DataFrame()
    out = holm(pd.DataFrame(rows), alpha)
    if margin is None:
        return out
    named = out.assign(diff_ci_low=out["ci_low"], diff_ci_high=out["ci_high"])
    labelled = claims(named, alpha, margin)
    return out.assign(**{c: labelled[c] for c in labelled if c.startswith("claim")})


def perturbation_effect(table: pd.DataFrame, metric="dice", alpha=0.05, margin=None):
    """The paper's Fig. 3 as numbers: per attribute and mode of a ``perturbation_sweep``
    table, the change of ``metric`` against the unperturbed prompt over the images whose
    prompt changed (``sweep_effect``)."""
    return sweep_effect(
        table,
        "perturbation",
        ["attribute", "mode"],
        {"attribute": "none"},
        metric,
        True,
        alpha,
        margin,
    )


def wording_effect(table: pd.DataFrame, metric="dice", alpha=0.05, margin=None):
    """Robustness of wording: per variant of a ``wording_sweep`` table (synonyms, word order,
    typos, ...), the change of ``metric`` against the prompt as written, over the images whose
    prompt the variant changed (``sweep_effect``), separately for each level reworded (a run
    rewords its best level; two seeds may pick two). Near zero: the model reads past the way
    the words are written (or does not read them: compare the prompt-use index)."""
    return sweep_effect(
        table,
        "wording",
        ["variant"],
        {"variant": "original"},
        metric,
        True,
        alpha,
        margin,
        within=("base_level",),
    )


def prompt_use_index(table: pd.DataFrame, metric="dice", alpha=0.05, margin=None):
    """Per configuration and test set of a ``prompt_use_sweep`` table: ``use_index`` = ``metric``
    with the right prompt minus with each control (empty, shuffled, other class), with its CI.
    Near zero: the model does not use its prompt; the paper's "barely uses the text" as a
    number. (``sweep_effect`` with the sign turned: control - right becomes right - control.)"""
    effect = sweep_effect(
        table, "use", ["condition"], {"condition": "right"}, metric, False, alpha, margin
    )
    if effect.empty:
        return effect
    effect = effect.rename(
        columns={f"{metric}_baseline": f"{metric}_right", metric: f"{metric}_control"}
    )
    effect = effect.rename(columns={"condition": "control"})
    index, low, high = -effect["delta"], -effect["ci_high"], -effect["ci_low"]
    for ci in ("recipe_ci", "claim_ci"):
        if f"{ci}_low" in effect:
            effect[f"{ci}_low"], effect[f"{ci}_high"] = -effect[f"{ci}_high"], -effect[f"{ci}_low"]
    effect = effect.drop(columns=["delta", "ci_low", "ci_high"])
    effect.insert(effect.columns.get_loc(f"{metric}_control") + 1, "use_index", index)
    effect.insert(effect.columns.get_loc("use_index") + 1, "ci_low", low)
    effect.insert(effect.columns.get_loc("ci_low") + 1, "ci_high", high)
    effect["rank_biserial"] = -effect["rank_biserial"]
    return effect
