"""vlsm_lib.analysis.stats on hand-made gathered tables: what is compared with what, and the
numbers."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from vlsm_lib.analysis import stats


def runs(study, model, dataset, prompt, test_set, dice, seed=42, run_id=None, **extra):
    """A gathered table's rows for one run: one row per test image, ids img0, img1, ..."""
    run_id = run_id or f"{study}__{model}__{dataset}__{prompt}__s{seed}"
    n = len(dice)
    return pd.DataFrame(
        {
            "run_id": run_id,
            "study": study,
            "model": model,
            "dataset": dataset,
            "prompt": prompt,
            "seed": seed,
            "test_set": test_set,
            "image_id": [f"img{i}" for i in range(n)],
            "dice": dice,
            **extra,
        }
    )


RNG = np.random.default_rng(0)
A = RNG.uniform(0.0, 0.5, 20)  # zero-shot
B = RNG.uniform(0.4, 1.0, 20)  # finetuned on kvasir
C = RNG.uniform(0.3, 0.9, 20)  # finetuned on the pooled set


def test_two_training_sets_on_one_test_set_are_two_comparisons():
    table = pd.concat(
        [
            runs("zero_shot", "clipseg", "kvasir", "p6", "kvasir", A),
            # the zero-shot grid also runs the pooled name: same images, same weights
            runs("zero_shot", "clipseg", "pooled_polyp", "p6", "kvasir", A),
            runs("finetune", "clipseg", "kvasir", "p6", "kvasir", B),
            runs("finetune", "clipseg", "pooled_polyp", "p6", "kvasir", C),
        ]
    )
    got = stats.finetune_vs_zero_shot(table)
    assert sorted(got["dataset"]) == ["kvasir", "pooled_polyp"]
    assert list(got["n_clusters"]) == [20, 20]  # not the 400-pair cross product
    assert set(got["baseline"]) == {"zero_shot on kvasir"}  # the run on the test set itself
    row = got.set_index("dataset").loc["pooled_polyp"]
    assert row["mean_b"] == pytest.approx(C.mean()) and row["mean_a"] == pytest.approx(A.mean())
    assert row["p"] == pytest.approx(sps.wilcoxon(C - A).pvalue)


def test_prompt_effect_never_pairs_other_training_data():
    table = pd.concat(
        [
            runs("finetune", "clipseg", "pooled_all", "random", "kvasir", B),
            runs("finetune", "clipseg", "kvasir", "p0", "kvasir", A),
        ]
    )
    assert stats.prompt_effect(table).empty  # a training-set shift is not a prompt effect
    table = pd.concat([table, runs("finetune", "clipseg", "kvasir", "p6", "kvasir", C)])
    got = stats.prompt_effect(table)
    assert len(got) == 1 and got.iloc[0]["prompt"] == "p6" and got.iloc[0]["n_clusters"] == 20


def test_seeds_are_averaged_per_image_and_their_spread_reported():
    s1, s2 = B, B * 0.5
    table = pd.concat(
        [
            runs("finetune", "cris", "kvasir", "p6", "kvasir", s1, seed=1),
            runs("finetune", "cris", "kvasir", "p6", "kvasir", s2, seed=2),
            runs("zero_shot", "cris", "kvasir", "p6", "kvasir", A),
        ]
    )
    images = stats.per_image(table)
    tuned = images[images.study == "finetune"]
    assert len(tuned) == 20 and set(tuned["seeds"]) == {2}
    np.testing.assert_allclose(tuned["dice"], (s1 + s2) / 2)
    summary = stats.summary_table(table).set_index("study").loc["finetune"]
    assert summary["seeds"] == 2 and summary["runs"] == 2 and summary["images"] == 20
    assert summary["seed_sd"] == pytest.approx(np.std([s1.mean(), s2.mean()], ddof=1))
    got = stats.finetune_vs_zero_shot(table)
    assert got.iloc[0]["seeds_b"] == 2 and got.iloc[0]["n_clusters"] == 20
    assert got.iloc[0]["p"] == pytest.approx(sps.wilcoxon((s1 + s2) / 2 - A).pvalue)


def test_summary_keeps_prompts_and_hyperparameters_apart():
    table = pd.concat(
        [
            runs("finetune", "cris", "ref", "p6", "ref", B),
            runs("finetune", "cris", "ref", "p0", "ref", A),
            # same model, data and prompt, another learning rate: the run id says so
            runs(
                "finetune",
                "cris",
                "ref",
                "p6",
                "ref",
                C,
                run_id="finetune__cris__ref__p6__lr-0.1__s42",
            ),
        ]
    )
    summary = stats.summary_table(table)
    assert len(summary) == 3
    assert sorted(summary["dice"].round(6)) == sorted(np.round([A.mean(), B.mean(), C.mean()], 6))


def test_paired_test_matches_scipy_and_handles_ties():
    a = runs("x", "m", "d", "p0", "t", A)
    b = runs("x", "m", "d", "p6", "t", B)
    got = stats.compare(a, b)
    assert got["n_clusters"] == 20 and got["p"] == pytest.approx(sps.wilcoxon(B - A).pvalue)
    hand = stats.compare(
        runs("x", "m", "d", "p0", "t", [0.5, 0.5, 0.5, 0.5]),
        runs("x", "m", "d", "p6", "t", [0.6, 0.3, 0.8, 0.5]),  # +0.1, -0.2, +0.3, 0 (dropped)
    )
    assert hand["rank_biserial"] == pytest.approx((1 + 3 - 2) / 6)  # ranks 1, 2, 3 of |d|
    same = stats.compare(a, a)
    assert same["n_clusters"] == 20 and np.isnan(same["p"]) and same["mean_diff"] == 0
    shifted = stats.compare(a, runs("x", "m", "d", "p6", "t", A + 0.1))
    assert shifted["rank_biserial"] == pytest.approx(1.0)  # all differences equal, all positive
    with pytest.raises(ValueError, match="more than once"):
        stats.compare(pd.concat([a, a]), b)


def test_a_missing_baseline_gives_no_row_and_a_run_scoring_twice_is_an_error():
    table = runs("finetune", "unet", "kvasir", "p6", "kvasir", B)
    assert stats.finetune_vs_zero_shot(table).empty
    summary = stats.summary_table(table)  # a single model still summarises
    assert len(summary) == 1 and summary.iloc[0]["dice"] == pytest.approx(B.mean())
    with pytest.raises(ValueError, match="twice within one run"):
        stats.per_image(pd.concat([table, table]))


def test_hd95_undefined_images_are_counted_and_penalised():
    table = runs("finetune", "cris", "d", "p6", "t", [0.8, 0.0, 1.0])
    table["hd95"] = [3.0, np.nan, 0.0]  # image 1: lesion missed; image 2: both empty
    table["gt_empty"] = [False, False, True]
    table["pred_empty"] = [False, True, True]
    table["height"], table["width"] = 30, 40
    row = stats.summary_table(table).iloc[0]
    assert row["hd95"] == pytest.approx(1.5)  # the plain mean skips the missed lesion
    assert row["hd95_undefined"] == 1
    assert row["hd95_penalised"] == pytest.approx((3.0 + 50.0 + 0.0) / 3)  # diagonal of 30x40


def test_clustered_bootstrap_resamples_records_together():
    means = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 0.2, 0.8, 0.4])
    values = np.repeat(means, 10)  # each cluster: one image's 10 masks, all alike
    clusters = np.repeat(np.arange(8), 10)
    naive = stats.bootstrap_ci(values)
    clustered = stats.bootstrap_ci(values, clusters=clusters)
    by_cluster = stats.bootstrap_ci(means)  # the same information: 8 independent units
    assert clustered[1] - clustered[0] > 2 * (naive[1] - naive[0])
    assert clustered == pytest.approx(by_cluster, abs=0.03)
    singletons = stats.bootstrap_ci(means, clusters=np.arange(8))
    assert singletons == pytest.approx(by_cluster, abs=0.03)


def test_summary_counts_clusters():
    table = runs("finetune", "cris", "xray", "p6", "xray", [0.2, 0.4, 0.6, 0.8])
    table["cluster"] = ["a.png", "a.png", "b.png", "c.png"]  # two pathologies of image a
    row = stats.summary_table(table).iloc[0]
    assert row["images"] == 4 and row["clusters"] == 3


def test_a_renamed_study_lands_in_its_tables_by_its_kind():
    """Tables select runs by kind (run.json, added by gather), never by the study's name."""
    table = pd.concat(
        [
            runs("zs_baseline", "clipseg", "kvasir", "p6", "kvasir", A).assign(kind="zero_shot"),
            runs("my_finetune", "clipseg", "kvasir", "p6", "kvasir", B).assign(kind="finetune"),
            runs("my_finetune", "clipseg", "kvasir", "p0", "kvasir", C).assign(kind="finetune"),
        ]
    )
    got = stats.finetune_vs_zero_shot(table)
    assert list(got["study"]) == ["my_finetune"] and list(got["prompt"]) == ["p6"]
    assert list(got["baseline"]) == ["zero_shot on kvasir"]
    assert list(stats.prompt_effect(table)["prompt"]) == ["p6"]
    # without the kind column a table made by hand is read by study name, and finds nothing
    assert stats.finetune_vs_zero_shot(table.drop(columns="kind")).empty


def test_records_of_one_cluster_are_tested_as_one():
    """Two masks per image whose differences cancel: the test is over the 30 image means."""
    rng = np.random.default_rng(1)
    swing, shift = rng.uniform(0.2, 0.4, 30), rng.uniform(-0.01, 0.03, 30)
    base = rng.uniform(0.3, 0.6, 60)
    delta = np.ravel(np.column_stack([swing + shift, -swing + shift]))  # negatively correlated
    clusters = [f"img{i // 2}" for i in range(60)]
    a = runs("x", "m", "d", "p0", "t", base, cluster=clusters)
    b = runs("x", "m", "d", "p6", "t", base + delta, cluster=clusters)
    got = stats.compare(a, b)
    means = delta.reshape(30, 2).mean(axis=1)
    assert (got["n_records"], got["n_clusters"], got["n_nonzero"]) == (60, 30, 30)
    assert got["p"] == pytest.approx(sps.wilcoxon(means).pvalue)
    assert got["p"] != pytest.approx(sps.wilcoxon(delta).pvalue)  # records as units: wrong
    low, high = stats.bootstrap_ci(delta, clusters=clusters)
    assert (got["diff_ci_low"], got["diff_ci_high"]) == pytest.approx((low, high))


def test_differences_within_the_tie_tolerance_are_no_practical_difference():
    a = runs("x", "m", "d", "p0", "t", A)
    b = runs("x", "m", "d", "p6", "t", A + 1e-6)  # rounding noise everywhere
    got = stats.compare(a, b)
    assert got["n_nonzero"] == 0 and np.isnan(got["p"]) and np.isnan(got["rank_biserial"])
    row = pd.DataFrame([{**got, "seeds_a": 1, "seeds_b": 1}])
    assert stats.holm(row, 0.05, margin=0.01)["claim"].tolist() == [stats.NO_PRACTICAL]


def _recipe(name, seed_means, n=400, noise=0.002, seed=0):
    """One configuration's gathered rows: per seed, per image Dice = the seed's mean + noise."""
    rng = np.random.default_rng(seed)
    frames = [
        runs("finetune", "m", "d", name, "t", mean + rng.normal(0, noise, n), seed=s)
        for s, mean in zip((42, 43, 44), seed_means)
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("n", [60, 3000])
def test_recipes_whose_seeds_interleave_are_not_significant_at_any_number_of_images(n):
    table = pd.concat(
        [_recipe("p0", [0.50, 0.60, 0.70], n), _recipe("p6", [0.55, 0.65, 0.75], n, seed=1)]
    )
    got = stats.prompt_effect(table, margin=0.01).iloc[0]
    assert got["seeds_a"] == got["seeds_b"] == 3 and got["n_clusters"] == n
    assert got["p_holm"] < 1e-8  # the seed-averaged models differ on every image...
    assert got["recipe_ci_low"] < 0 < got["recipe_ci_high"] and got["recipe_p_holm"] > 0.05
    assert got["claim"] == stats.INCONCLUSIVE  # ...but the recipes do not, on three seeds


def test_a_recipe_difference_is_replicated_only_with_three_seeds_a_side():
    table = pd.concat(
        [_recipe("p0", [0.50, 0.51, 0.52]), _recipe("p6", [0.80, 0.81, 0.82], seed=1)]
    )
    replicated = stats.prompt_effect(table, margin=0.01).iloc[0]
    assert replicated["claim"] == stats.REPLICATED and replicated["recipe_ci_low"] > 0.25
    one = table[table.seed == 42]
    fixed = stats.prompt_effect(one, margin=0.01).iloc[0]
    assert fixed["claim"] == "fixed models only (1 seed)"


def test_two_models_that_train_nothing_are_fixed_models_whatever_the_difference():
    a = runs("zero_shot", "clipseg", "d", "p6", "t", A)
    b = runs("zero_shot", "cris", "d", "p6", "t", A + 0.3)
    row = stats.comparison_row(
        {}, stats.per_image(a), stats.per_image(b), "dice", pd.concat([a, b])
    )
    assert not row["trains_a"] and not row["trains_b"]
    got = stats.holm(pd.DataFrame([row]), 0.05, margin=0.01).iloc[0]
    assert got["claim"] == "fixed models only (no training)"
