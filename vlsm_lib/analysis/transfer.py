"""Transfer modes, data efficiency and what the reference's faults cost: tables and tests.

- ``run_facts``: each run's trainable and total parameters and training images (run.json).
- ``transfer_table``: the runs of a transfer-mode study (``train`` policies x ``train_fraction``)
  beside the zero-shot run of the same model, weights and prompt, with their trainable counts:
  the data of the Dice-against-parameters and Dice-against-fraction figures. A policy the
  finetune study already trained on the same data, prompt and weights is taken from there
  (``with_finetune``) rather than run twice.
- ``policy_tests``: the paired tests of models, applied to policies: every configuration of the
  study against the zero-shot run of the same weights, and against the paper's policy
  (``decoder``) with the same model, data, prompt, weights and fraction.
- ``fault_costs``: each declared fault, one run with the reference's behaviour against the run
  it differs from, on the images both scored: the Dice difference with its 95 % bootstrap CI.

Every side of every comparison is one configuration (``stats.configuration``), seeds averaged
per image; a fault compares two named runs, so a seed is never mixed with another.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from vlsm_lib.analysis.stats import (
    BASELINE_MATCH,
    compare,
    comparison_row,
    configuration,
    holm,
    of_kind,
    per_image,
    rows_where,
    with_config,
    zero_shot_baselines,
)
from vlsm_lib.results import TRAINS, complete_runs, kind_of, read_run

ZERO_SHOT = "zero-shot"
# what a finetune-study run shares with the transfer-mode runs it stands beside
SAME_RUN = ("model", "dataset", "prompt", "size", "weights", "train_fraction", "test_set")
POLICIES = (
    ZERO_SHOT,
    "decoder",
    "text_prompt",
    "visual_prompt",
    "lora",
    "shallow_adapter",
    "adapter",
    "all",
)


def run_facts(folder: str | Path) -> pd.DataFrame:
    """run_id, trainable_params, params of every complete run under ``folder`` (zero-shot runs
    train nothing: 0)."""
    rows = []
    for run in complete_runs(folder):
        info = read_run(run)
        model = info.get("model") or {}
        trains = kind_of(info) in TRAINS
        rows.append(
            {
                "run_id": info.get("run_id", run.name),
                "trainable_params": model.get("trainable_params", np.nan) if trains else 0,
                "params": model.get("params", np.nan),
            }
        )
    return pd.DataFrame(rows, columns=["run_id", "trainable_params", "params"])


def with_finetune(frame: pd.DataFrame, kind: str = "transfer_modes") -> pd.DataFrame:
    """The rows of runs of ``kind`` and the rows of finetune runs that train a policy those do
    not run for the same model, data, prompt, size, weights, fraction and test set: a
    transfer-mode params file need not repeat the finetune study's runs (the paper's decoder
    runs, the demo's end-to-end CLIPSeg). Each row keeps its own configuration."""
    runs = frame[of_kind(frame, kind)]
    finetune = frame[of_kind(frame, "finetune")]
    if runs.empty or finetune.empty:
        return runs
    keys = [k for k in SAME_RUN if k in runs and k in finetune]
    runs_keys, finetune = _whole_split_is_one(runs), _whole_split_is_one(finetune)
    wanted = runs_keys[keys].drop_duplicates()
    have = runs_keys[keys + ["train"]].drop_duplicates()
    extra = finetune.merge(wanted, on=keys).merge(
        have, on=keys + ["train"], how="left", indicator=True
    )
    extra = extra[extra["_merge"] == "left_only"].drop(columns="_merge")
    return pd.concat([runs, extra], ignore_index=True)


def _whole_split_is_one(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``train_fraction`` 1.0 where a run has none (an older run, no column)."""
    return frame.assign(train_fraction=frame.get("train_fraction", 1.0)).fillna(
        {"train_fraction": 1.0}
    )


def _policy_of(frame: pd.DataFrame) -> pd.Series:
    return frame["train"].where(~of_kind(frame, "zero_shot"), ZERO_SHOT)


def transfer_table(
    summary: pd.DataFrame, table: pd.DataFrame, facts: pd.DataFrame, kind="transfer_modes"
) -> pd.DataFrame:
    """One row per configuration of the runs of ``kind`` and test set, and one per zero-shot
    configuration of the same model, weights, prompt and test set: policy, fraction, trainable
    parameters, mean and CI. ``summary``: ``stats.summary_table``; ``table``: the gathered table
    (for run ids); ``facts``: ``run_facts``."""
    runs = with_finetune(summary, kind)
    if runs.empty:
        return pd.DataFrame()
    zs = summary[of_kind(summary, "zero_shot")]
    keys = [k for k in BASELINE_MATCH if k in runs and k in zs]
    zs = zs.merge(runs[keys].drop_duplicates(), on=keys)
    out = pd.concat([runs, zs], ignore_index=True)
    out = _whole_split_is_one(out).assign(policy=_policy_of(out))
    out["train_fraction"] = out["train_fraction"].where(~of_kind(out, "zero_shot"))
    counts = with_config(table)[["config", "run_id"]].drop_duplicates()
    counts = counts.merge(facts, on="run_id").groupby("config")["trainable_params"].first()
    out["trainable_params"] = out["config"].map(counts)
    order = {p: i for i, p in enumerate(POLICIES)}
    out["order"] = out["policy"].map(order).fillna(len(order))
    cols = ["model", "policy", "train_fraction", "dataset", "prompt", "test_set"]
    cols += ["trainable_params", "dice", "ci_low", "ci_high", "seeds", "images", "config"]
    out = out.sort_values(["model", "order", "train_fraction"], na_position="first")
    return out[[c for c in cols if c in out]].reset_index(drop=True)


def policy_tests(
    table: pd.DataFrame, metric="dice", alpha=0.05, kind="transfer_modes", margin=None
):
    """Paired Wilcoxon (Holm over the whole table) of each configuration of ``kind`` against
    the zero-shot run of the same model, prompt, size, weights and test set, and against the
    ``decoder`` policy of the same model, data, prompt, weights and fraction; with ``margin``,
    each row's claim (``stats.claims``)."""
    raw = with_config(table)
    images = per_image(raw, metric)
    runs, zs = with_finetune(images, kind), images[of_kind(images, "zero_shot")]
    cols = configuration(runs) + ["test_set"]
    rows = []
    for key, group in runs.groupby(cols, dropna=False, sort=False):
        ident = dict(zip(cols, key))
        label = {k: ident.get(k) for k in ("model", "train", "train_fraction", "dataset")}
        label |= {"prompt": ident.get("prompt"), "test_set": ident["test_set"]}
        for baseline, zero in zero_shot_baselines(zs, ident):
            label_zs = {**label, "baseline": baseline}
            rows.append(comparison_row(label_zs, zero, group, metric, raw))
        if ident.get("train") == "decoder":
            continue
        same = [c for c in cols if c not in ("train", "config", "study", "kind")]
        paper = rows_where(runs, **{c: ident[c] for c in same}, train="decoder")
        if len(paper):
            label |= {"baseline": "decoder (the paper's)"}
            rows.append(comparison_row(label, paper, group, metric, raw))
    return holm(pd.DataFrame(rows), alpha, margin) if rows else pd.DataFrame()


def fault_costs(table: pd.DataFrame, faults: list[dict], metric="dice", alpha=0.05, margin=None):
    """One row per declared fault ``{"fault": label, "run": run id with the reference's
    behaviour, "baseline": run id with the project's}``: both Dice means on the images both
    scored (per test set), the difference (fault - baseline) with a 95 % cluster-bootstrap CI,
    Wilcoxon p and Holm. A run that is not in ``table`` gives a row saying so (and a warning)."""
    rows = []
    for spec in faults:
        missing = [spec[k] for k in ("run", "baseline") if not (table.run_id == spec[k]).any()]
        if missing:
            warnings.warn(f"fault {spec['fault']!r}: no complete run {missing}", stacklevel=2)
            rows.append({"fault": spec["fault"], "missing": ", ".join(missing)})
            continue
        fault = per_image(table[table.run_id == spec["run"]], metric)
        base = per_image(table[table.run_id == spec["baseline"]], metric)
        for test_set in sorted(set(fault.test_set) & set(base.test_set)):
            a, b = base[base.test_set == test_set], fault[fault.test_set == test_set]
            model = b["model"].iloc[0] if "model" in b else ""
            label = {"fault": spec["fault"], "model": model, "test_set": test_set}
            test = compare(a, b, metric)
            rows.append({**label, **test, "run": spec["run"], "baseline": spec["baseline"]})
    out = pd.DataFrame(rows)
    if "p" not in out:
        return out
    # each side is one run: one seed, a comparison of two trained models
    out = out.assign(seeds_a=1, seeds_b=1)
    return holm(out, alpha, margin)
