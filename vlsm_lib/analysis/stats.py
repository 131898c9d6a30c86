"""Statistics over gathered per-image tables: summaries with bootstrap CIs, paired tests,
the effect of perturbed prompts.

**What is compared.** A run's identity is its study, model, training set (``dataset``), prompt,
train policy, weights, size, data fraction and seed (``IDENTITY``, the columns of a gathered
table that are present), and every other parameter its study varies: its run id, which names
them all. A *configuration* is an identity without the seed (``config``: the run id without its
seed token, so runs of one params file that differ in any grid key, a learning rate included,
are different configurations). Every summary row
and every side of a paired test is exactly one configuration on one test set: runs that differ
in any identity column are never merged. The seeds of one configuration are averaged per image
first (``per_image``), and their spread is reported beside the mean (``seed_sd``); a row with
``seeds`` 1 rests on one seed.

Paired tests pair the images both configurations scored (``test_set`` + ``image_id``, unique on
each side, checked): Wilcoxon signed-rank on per-image differences (scipy) with the
matched-pairs rank-biserial correlation as effect size, Holm correction across the family of
tests reported in one table (statsmodels). Bootstrap 95 % confidence intervals of means (scipy).

HD95 is undefined (NaN) on an image where exactly one of truth and prediction is empty. Means
skip those images, so summaries also report how many there were (``hd95_undefined``, counted
per scored image of each seed: 3 seeds x 60 images can give up to 180) and a
penalised HD95 that counts each as the image diagonal (``hd95_penalised``): a model that misses
more lesions cannot look better for it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from vlsm_lib.results import PROMPT_TOKEN, SEED_TOKEN, token_part

IDENTITY = (
    "study",
    "kind",
    "model",
    "dataset",
    "prompt",
    "train",
    "weights",
    "setting",
    "size",
    "train_fraction",
    "seed",
)
KEYS = ["test_set", "image_id"]
# what a zero-shot baseline shares with the configuration it stands beside
BASELINE_MATCH = ("model", "prompt", "size", "weights", "test_set")
# conditions inside one run (a wording sweep's base level can differ between seeds: kept apart)
SWEEPS = ("sweep", "prompt_key", "attribute", "mode", "condition", "variant", "base_level")
# A difference smaller than this (in Dice or IoU) is a tie: float rounding between two runs of
# the same arithmetic, not an effect (a zero-shot CLIPSeg's controls differ by ~1e-6).
TIE_TOLERANCE = 1e-4


def of_kind(frame: pd.DataFrame, *kinds: str) -> pd.Series:
    """Which rows belong to runs of these kinds (``results.KINDS``): the ``kind`` column that
    ``gather`` adds from run.json, or the study's name in a table made without one."""
    return frame["kind" if "kind" in frame else "study"].isin(kinds)


def configuration(table: pd.DataFrame) -> list[str]:
    """The columns that name one configuration: the identity columns without the seed, and
    ``config`` (added by ``with_config``) when the table has run ids."""
    cols = [c for c in IDENTITY if c in table and c != "seed"]
    return cols + (["config"] if "config" in table else [])


def with_config(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``config`` column: each row's run id without its seed token. A
    ``weights`` path naming a run of some seed (``.../finetune__cris__ref__p6__s43``) loses
    that token too: the runs of seeds 42, 43, 44 that each use their own seed's checkpoint
    are the seeds of one configuration, not three configurations."""
    if "run_id" not in table or "config" in table:
        return table
    table = table.assign(config=_without_token(table["run_id"], SEED_TOKEN))
    if "weights" in table and not pd.api.types.is_numeric_dtype(table["weights"]):
        seeded = rf"__({SEED_TOKEN})(?=__|/|$)"
        table = table.assign(weights=table["weights"].str.replace(seeded, "", regex=True))
    return table


def _without_token(run_ids: pd.Series, token: str) -> pd.Series:
    """Run ids with the token matching ``token`` (a results.run_id token pattern) removed."""
    return run_ids.str.replace(token_part(token), "", regex=True)


def per_image(table: pd.DataFrame, metric: str = "dice") -> pd.DataFrame:
    """One row per configuration, sweep condition and test image: ``metric`` averaged over the
    configuration's seeds, and ``seeds``, how many scored the image.

    An image scored twice by one run (two rows with the same keys and seed) is an error: it
    would be counted twice.
    """
    table = with_config(table)
    cols = configuration(table) + [c for c in SWEEPS if c in table] + KEYS
    seeded = cols + (["seed"] if "seed" in table else [])
    twice = table.duplicated(seeded, keep=False)
    if twice.any():
        first = table.loc[twice, seeded].iloc[0].to_dict()
        raise ValueError(f"{int(twice.sum())} rows score an image twice within one run: {first}")
    grouped = table.groupby(cols, dropna=False, sort=False)
    out = grouped[metric].mean().reset_index()
    out["seeds"] = grouped["seed"].nunique().to_numpy() if "seed" in table else 1
    for col in ("cluster", "gt_empty"):  # facts of the image, the same in every seed
        if col in table:
            out[col] = grouped[col].first().to_numpy()
    return out


def bootstrap_ci(values, level=0.95, seed=0, clusters=None) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (scipy); the mean twice for fewer than two distinct
    values, NaN for none. ``clusters`` (one label per value): records that belong together (a
    patient's frames, an image's several masks) are resampled together, and the statistic is
    the mean over the records of the drawn clusters."""
    values = np.asarray(values, float)
    keep = ~np.isnan(values)
    values = values[keep]
    if len(values) < 2 or np.all(values == values[0]):
        m = float(values.mean()) if len(values) else float("nan")
        return m, m
    options = dict(confidence_level=level, n_resamples=2000, random_state=seed, method="percentile")
    if clusters is None:
        res = sps.bootstrap((values,), np.mean, **options)
    else:
        frame = pd.DataFrame({"v": values, "c": np.asarray(clusters)[keep]}).groupby("c")["v"]
        sums, counts = frame.sum().to_numpy(), frame.size().to_numpy(dtype=float)
        if len(sums) < 2:
            return float(values.mean()), float(values.mean())

        def pooled_mean(s, c, axis=-1):
            return s.sum(axis=axis) / c.sum(axis=axis)

        res = sps.bootstrap((sums, counts), pooled_mean, paired=True, **options)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _without_empty(images: pd.DataFrame, metric: str) -> dict:
    """The mean over images whose truth is not empty, beside the mean over all: empty truths
    score 1 or 0 by the empty-mask rule, and prompts written from the mask (BUSI's "No tumor")
    tell the model which they are."""
    if "gt_empty" not in images:
        return {}
    kept = images.loc[~images["gt_empty"].astype(bool), metric]
    return {f"{metric}_gt_nonempty": float(kept.mean()) if len(kept) else float("nan")}


PREDICTS_EMPTY = 0.95  # a configuration predicting empty masks on this share of images is flagged


def _empty_masks(group: pd.DataFrame) -> dict:
    """How a configuration treats empty masks, over its seeds' records: the share of truths
    that are empty, the share of empty truths it predicted empty (each scores 1 by the
    empty-mask rule), the share of non-empty truths it predicted empty (each scores 0), and
    ``predicts_empty``: it predicted an empty mask on at least ``PREDICTS_EMPTY`` of them (its
    mean is then the empty-mask rule's, not segmentation)."""
    if "gt_empty" not in group or "pred_empty" not in group:
        return {}
    truth, pred = group["gt_empty"].astype(bool), group["pred_empty"].astype(bool)
    return {
        "empty_truths": float(truth.mean()),
        "empty_kept_empty": float(pred[truth].mean()) if truth.any() else float("nan"),
        "missed_as_empty": float(pred[~truth].mean()) if (~truth).any() else float("nan"),
        "predicts_empty": bool(pred.mean() >= PREDICTS_EMPTY),
    }


def _hd95(group: pd.DataFrame) -> dict:
    """HD95 mean over the images where it is defined, their count, and the penalised mean."""
    if "hd95" not in group or group["hd95"].isna().all():
        return {}
    undefined = group["hd95"].isna() & ~(group["gt_empty"] & group["pred_empty"])
    diagonal = np.hypot(group["height"], group["width"])
    return {
        "hd95": group["hd95"].mean(),
        "hd95_undefined": int(undefined.sum()),
        "hd95_penalised": group["hd95"].where(~undefined, diagonal).mean(),
    }


def summary_table(table: pd.DataFrame, metric: str = "dice") -> pd.DataFrame:
    """Per configuration, sweep condition and test set: mean ``metric`` over images (seeds
    averaged per image first) with a 95 % bootstrap CI, the number of runs, seeds and images,
    the spread of the per-seed means, and HD95 with its undefined count and penalised mean."""
    table = with_config(table)
    cols = configuration(table) + [c for c in SWEEPS if c in table] + ["test_set"]
    rows = []
    for key, group in table.groupby(cols, dropna=False, sort=False):
        ident = dict(zip(cols, key if isinstance(key, tuple) else (key,)))
        images = per_image(group, metric)
        clusters = images["cluster"] if "cluster" in images else None
        low, high = bootstrap_ci(images[metric], clusters=clusters)
        seed_means = group.groupby("seed")[metric].mean() if "seed" in group else group[metric]
        rows.append(
            {
                **ident,
                "runs": group["run_id"].nunique() if "run_id" in group else 1,
                "seeds": len(seed_means) if "seed" in group else 1,
                "images": len(images),
                "clusters": images["cluster"].nunique() if clusters is not None else len(images),
                metric: float(images[metric].mean()),
                "ci_low": low,
                "ci_high": high,
                "seed_sd": float(seed_means.std()) if len(seed_means) > 1 else float("nan"),
                **_without_empty(images, metric),
                **_empty_masks(group),
                **(_hd95(group) if metric == "dice" else {}),
            }
        )
    return pd.DataFrame(rows)


def compare(
    a: pd.DataFrame,
    b: pd.DataFrame,
    metric: str = "dice",
    a_seeds: pd.DataFrame | None = None,
    b_seeds: pd.DataFrame | None = None,
    same_models: bool = False,
) -> dict:
    """The one paired comparison every table makes: ``b`` - ``a`` over the images both scored.

    ``a`` and ``b`` hold one configuration each, seeds averaged per image (``per_image`` rows;
    at most one row per test image, checked). The unit of the test is the cluster (records that
    belong together: an image's several masks, a patient's frames; column ``cluster``, else each
    record is its own): each cluster's mean difference enters the Wilcoxon signed-rank test
    (scipy) and the matched-pairs rank-biserial correlation (Kerby 2014); a cluster difference
    smaller than ``TIE_TOLERANCE`` is a tie (rounding, not an effect), and ties are left out of
    both, so a comparison with no difference left has no p and no effect size. The mean
    difference is over records (as the summaries' means), with its 95 % bootstrap CI over
    clusters (``bootstrap_ci``).

    ``a_seeds`` / ``b_seeds``: the same sides with one row per seed and image (the gathered
    rows); with them, ``seed_bootstrap`` adds the recipe-level CI and p, whose unit is the seed
    and the cluster together. Returns n_records, n_clusters, n_nonzero (the clusters the test
    used), both means, mean_diff, diff_ci_low/high, rank_biserial, p (and recipe_*).
    """
    for side, frame in (("a", a), ("b", b)):
        if frame.duplicated(KEYS).any():
            raise ValueError(
                f"side {side} holds an image more than once: it mixes configurations (or "
                "seeds not averaged); pass one configuration's per_image rows"
            )
    joined = a[KEYS + [metric] + (["cluster"] if "cluster" in a else [])].merge(
        b[KEYS + [metric]], on=KEYS, suffixes=("_a", "_b")
    )
    joined = joined.dropna(subset=[f"{metric}_a", f"{metric}_b"])
    diff = (joined[f"{metric}_b"] - joined[f"{metric}_a"]).to_numpy()
    clusters = _cluster_of(joined)
    per_cluster = pd.Series(diff).groupby(clusters.to_numpy(), sort=False).mean().to_numpy()
    nonzero = per_cluster[np.abs(per_cluster) >= TIE_TOLERANCE]
    low, high = bootstrap_ci(diff, clusters=clusters.to_numpy())
    out = {
        "n_records": len(diff),
        "n_clusters": len(per_cluster),
        "n_nonzero": len(nonzero),
        "mean_a": joined[f"{metric}_a"].mean(),
        "mean_b": joined[f"{metric}_b"].mean(),
        "mean_diff": float(np.mean(diff)) if len(diff) else float("nan"),
        "diff_ci_low": low,
        "diff_ci_high": high,
        "rank_biserial": float("nan"),
        "p": float("nan"),
    }
    if len(nonzero):
        ranks = sps.rankdata(np.abs(nonzero))
        out["rank_biserial"] = float(
            (ranks[nonzero > 0].sum() - ranks[nonzero < 0].sum()) / ranks.sum()
        )
        out["p"] = float(sps.wilcoxon(nonzero).pvalue)
    if a_seeds is not None and b_seeds is not None:
        out.update(seed_bootstrap(a_seeds, b_seeds, metric, same_models))
    return out


def seed_bootstrap(
    a: pd.DataFrame,
    b: pd.DataFrame,
    metric: str = "dice",
    same_models: bool = False,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """The recipe-level comparison of two configurations: ``b`` - ``a`` with the seed and the
    cluster as units together (a hierarchical bootstrap). ``a``, ``b``: one row per seed and image.
    Each resample draws clusters with replacement (the same ones for both sides: the images are
    paired) and, on each side, seeds with replacement (a side's trained models are independent of
    the other's; ``same_models``: the two sides are conditions of the same runs, a prompt sweep's,
    and draw the same seeds); a side's mean is the mean over its drawn seeds of the record mean over
    the drawn clusters. Returns the 95 % percentile CI of the difference and the two-sided bootstrap
    p (twice the smaller tail at 0, at least 1 / n_resamples). Two recipes whose seeds' means
    interleave stay apart from significance however many images there are: drawing among their few
    seeds keeps the spread between seeds in every resample."""
    sums_a, sums_b, counts = _seed_matrices(a, b, metric)
    if counts is None:
        return {"recipe_ci_low": np.nan, "recipe_ci_high": np.nan, "recipe_p": np.nan}
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(counts), size=(n_resamples, len(counts)))
    weight = np.zeros((n_resamples, len(counts)))  # (R, C): how often each cluster is drawn
    np.add.at(weight, (np.arange(n_resamples)[:, None], drawn), 1)
    records = weight @ counts  # (R,)
    sides, pick = [], None
    for sums in (sums_a, sums_b):
        per_seed = (weight @ sums.T) / records[:, None]  # (R, seeds)
        if pick is None or not same_models or pick.shape[1] != sums.shape[0]:
            pick = rng.integers(0, sums.shape[0], size=(n_resamples, sums.shape[0]))
        sides.append(np.take_along_axis(per_seed, pick, axis=1).mean(axis=1))
    delta = sides[1] - sides[0]
    tail = min(np.mean(delta <= 0), np.mean(delta >= 0))
    return {
        "recipe_ci_low": float(np.percentile(delta, 2.5)),
        "recipe_ci_high": float(np.percentile(delta, 97.5)),
        "recipe_p": float(min(1.0, max(2 * tail, 1 / n_resamples))),
    }


def _seed_matrices(a: pd.DataFrame, b: pd.DataFrame, metric: str):
    """(sums_a (seeds x clusters), sums_b, records per cluster) over the clusters every seed of
    both sides scored whole; (None, None, None) when there are none."""

    def matrix(frame):
        frame = frame.assign(_c=_cluster_of(frame), seed=frame.get("seed", 0))
        return frame.pivot_table(
            index="seed", columns="_c", values=metric, aggfunc=["sum", "count"]
        )

    ma, mb = matrix(a), matrix(b)
    shared = ma["sum"].columns.intersection(mb["sum"].columns)
    counts = ma["count"][shared]
    complete = (counts.nunique() == 1) & (mb["count"][shared].nunique() == 1)
    complete &= (counts.iloc[0] == mb["count"][shared].iloc[0]) & counts.notna().all()
    complete &= ma["sum"][shared].notna().all() & mb["sum"][shared].notna().all()
    shared = shared[complete.to_numpy()]
    if not len(shared):
        return None, None, None
    n = ma["count"][shared].iloc[0].to_numpy(float)
    return ma["sum"][shared].to_numpy(float), mb["sum"][shared].to_numpy(float), n


def _cluster_of(frame: pd.DataFrame) -> pd.Series:
    if "cluster" in frame:
        return frame["cluster"].astype(str)
    return frame["test_set"].astype(str) + "/" + frame["image_id"].astype(str)


def holm(table: pd.DataFrame, alpha: float, margin: float | None = None) -> pd.DataFrame:
    """Add Holm-adjusted p-values and a significance flag over the rows' ``p`` (and over their
    ``recipe_p``, when the table has it: ``recipe_p_holm``); with ``margin``, each row's
    ``claim`` (``claims``)."""
    table = table.copy()
    for p, adjusted_p, flag in (("p", "p_holm", "significant"), ("recipe_p", "recipe_p_holm", "")):
        if p not in table:
            continue
        ok = table[p].notna()
        table[adjusted_p] = np.nan
        if flag:
            table[flag] = False
        if ok.any():
            reject, adjusted, _, _ = multipletests(table.loc[ok, p], alpha=alpha, method="holm")
            table.loc[ok, adjusted_p] = adjusted
            if flag:
                table.loc[ok, flag] = reject
    return claims(table, alpha, margin) if margin is not None else table


# What a row of a table of tests may claim (``claims``).
REPLICATED, FIXED = "replicated across seeds", "fixed models only"
NO_PRACTICAL, INCONCLUSIVE = "no practical difference", "inconclusive"
MIN_SEEDS = 3  # trained models per side before a difference is a property of the recipe


def claims(table: pd.DataFrame, alpha: float, margin: float) -> pd.DataFrame:
    """Add ``claim`` to a table of tests (Holm applied): what each row may say, and what it
    rests on (``claim_ci_low``, ``claim_ci_high``, ``claim_p``, ``claim_test``).

    A comparison is *replicated* when a side trains and every side that trains holds at least
    ``MIN_SEEDS`` trained models (``trains_a`` / ``trains_b`` False: a zero-shot model is one
    fixed model, not a draw of a recipe); then the recipe-level CI and Holm p
    (``seed_bootstrap``) decide. Otherwise the comparison is of these models on these images:
    "fixed models only (k seeds)", or "(no training)" when neither side trains. Then: a CI inside
    (-``margin``, ``margin``), or no difference beyond the tie tolerance, is "no practical
    difference"; a CI wholly beyond the margin with Holm p below ``alpha`` is a difference,
    "replicated across seeds" or "fixed models only (k seeds)"; anything else is
    "inconclusive"."""
    if table.empty:
        return table
    out, evidence = [], []
    for row in table.to_dict("records"):
        trained = [s for s in ("a", "b") if row.get(f"trains_{s}", True)]
        seeds = min((row.get(f"seeds_{s}", 1) for s in trained), default=0)
        replicated = bool(trained) and seeds >= MIN_SEEDS
        recipe = replicated and pd.notna(row.get("recipe_p_holm"))
        low, high = (
            (row["recipe_ci_low"], row["recipe_ci_high"])
            if recipe
            else (row["diff_ci_low"], row["diff_ci_high"])
        )
        p = row["recipe_p_holm"] if recipe else row.get("p_holm")
        test = "seeds x clusters (bootstrap)" if recipe else "clusters (Wilcoxon)"
        evidence.append(
            {"claim_ci_low": low, "claim_ci_high": high, "claim_p": p, "claim_test": test}
        )
        if row.get("n_nonzero", 1) == 0 or (-margin < low and high < margin):
            out.append(NO_PRACTICAL)
        elif pd.notna(p) and p < alpha and (low > margin or high < -margin):
            runs = f"{seeds} seed{'s' * (seeds > 1)}" if trained else "no training"
            out.append(REPLICATED if recipe else f"{FIXED} ({runs})")
        else:
            out.append(INCONCLUSIVE)
    return table.assign(claim=out, **pd.DataFrame(evidence, index=table.index))


def rows_where(frame: pd.DataFrame, **values) -> pd.DataFrame:
    """Rows of ``frame`` whose columns equal ``values`` (NaN equals NaN; absent columns pass)."""
    keep = pd.Series(True, index=frame.index)
    for col, value in values.items():
        if col in frame:
            keep &= frame[col].isna() if pd.isna(value) else frame[col] == value
    return frame[keep]


def comparison_row(
    label: dict,
    a: pd.DataFrame,
    b: pd.DataFrame,
    metric: str,
    raw: pd.DataFrame | None = None,
    same_models: bool = False,
) -> dict:
    """A row of a table of tests: ``label``, how many seeds each side averages and whether it
    trains (a zero-shot side does not), ``compare``. ``raw``: the gathered rows (with
    ``config``), from which each side's rows per seed are taken for the recipe-level test."""
    seeds = {"seeds_a": int(a["seeds"].max()), "seeds_b": int(b["seeds"].max())}
    trains = {
        f"trains_{k}": not of_kind(side, "zero_shot").all() for k, side in (("a", a), ("b", b))
    }
    by_seed = {}
    if raw is not None:
        by_seed = {"a_seeds": seed_rows(raw, a), "b_seeds": seed_rows(raw, b)}
    return {**label, **seeds, **trains, **compare(a, b, metric, **by_seed, same_models=same_models)}


def seed_rows(raw: pd.DataFrame, side: pd.DataFrame) -> pd.DataFrame:
    """The gathered rows (one per seed and image) behind one side's seed-averaged rows: the
    same configuration (``_config`` where a table renamed it), test set and sweep condition."""
    side = side.assign(config=side["_config"]) if "_config" in side else side
    keys = [c for c in ("config", "test_set", *SWEEPS) if c in side and c in raw]
    return raw.merge(side[keys].drop_duplicates(), on=keys)


def zero_shot_baselines(zero_shot: pd.DataFrame, ident: dict):
    """The zero-shot configurations a configuration ``ident`` (its identity columns and
    ``test_set``) stands beside: (label, per-image rows) for each zero-shot run of the same
    model, prompt, size and starting weights that scored its test set (``BASELINE_MATCH``). A
    zero-shot run made on the test set itself is preferred; otherwise each zero-shot
    configuration that scored the set (one run on a pooled name, say) is its own baseline,
    never merged with another."""
    base = rows_where(zero_shot, **{k: ident[k] for k in BASELINE_MATCH if k in ident})
    if (base.dataset == ident["test_set"]).any():
        base = base[base.dataset == ident["test_set"]]
    for (name,), frame in base.groupby(["dataset"], sort=False):
        yield f"zero_shot on {name}", frame


def finetune_vs_zero_shot(
    table: pd.DataFrame, metric="dice", alpha=0.05, margin=None
) -> pd.DataFrame:
    """Each finetuned configuration, per test set, against the zero-shot run of the same model,
    prompt, size and starting weights on that test set. A zero-shot run made on the test set
    itself is preferred; otherwise each zero-shot configuration that scored the set (e.g. one
    run on a pooled name) is its own comparison, never merged with another."""
    table = with_config(table)
    images = per_image(table, metric)
    cols = configuration(table)
    ft, zs = images[of_kind(images, "finetune")], images[of_kind(images, "zero_shot")]
    rows = []
    for key, tuned in ft.groupby(cols + ["test_set"], dropna=False, sort=False):
        ident = dict(zip(cols + ["test_set"], key))
        for baseline, zero in zero_shot_baselines(zs, ident):
            label = {**ident, "baseline": baseline}
            rows.append(comparison_row(label, zero, tuned, metric, table))
    return holm(pd.DataFrame(rows), alpha, margin) if rows else pd.DataFrame()


def prompt_effect(
    table: pd.DataFrame, metric="dice", alpha=0.05, empty="p0", margin=None
) -> pd.DataFrame:
    """Each finetuned configuration against the same configuration (model, training set,
    policy, weights, seeds...) finetuned with the ``empty`` prompt, on each test set."""
    table = with_config(table)
    images = per_image(table, metric)
    ft = images[of_kind(images, "finetune")]
    # the same configuration but for the prompt: its run id without the prompt token either
    if "config" in ft:
        ft = ft.assign(_config=ft["config"], config=_without_token(ft["config"], PROMPT_TOKEN))
    cols = [c for c in configuration(ft) if c != "prompt"] + ["test_set"]
    rows = []
    for key, group in ft.groupby(cols, dropna=False, sort=False):
        base = group[group.prompt == empty]
        if not len(base):
            continue
        for prompt, other in group[group.prompt != empty].groupby("prompt", sort=False):
            label = {**dict(zip(cols, key)), "prompt": prompt, "baseline": f"prompt {empty}"}
            rows.append(comparison_row(label, base, other, metric, table))
    return holm(pd.DataFrame(rows), alpha, margin) if rows else pd.DataFrame()


def save_tables(folder, **tables: pd.DataFrame) -> list[str]:
    """Write each table as ``<folder>/<name>.csv``, ``.md`` and ``.tex`` (atomically, floats
    with 4 significant digits in the Markdown and LaTeX); returns the CSV file names."""
    from pathlib import Path

    from vlsm_lib.files import write_text

    folder = Path(folder)
    for name, table in tables.items():
        write_text(folder / f"{name}.csv", table.to_csv(index=False))
        write_text(folder / f"{name}.md", table.to_markdown(index=False, floatfmt=".4g") + "\n")
        write_text(folder / f"{name}.tex", table.to_latex(index=False, float_format="%.4g"))
    return [f"{name}.csv" for name in tables]
