"""vlsm_lib.analysis.tables: Table 2 with the paper's numbers beside ours, the domain-shift
table."""

import pandas as pd
import pytest

from vlsm_lib import paths
from vlsm_lib.analysis import stats, tables


def rows(study, model, dataset, test_set, dice, prompt="p6"):
    return pd.DataFrame(
        {
            "run_id": f"{study}__{model}__{dataset}__{prompt}",
            "study": study,
            "model": model,
            "dataset": dataset,
            "prompt": prompt,
            "test_set": test_set,
            "image_id": [f"i{k}" for k in range(len(dice))],
            "cluster": [f"c{k // 2}" for k in range(len(dice))],
            "dice": dice,
        }
    )


def test_table2_sets_the_papers_value_beside_ours_and_bolds_no_single_seed_model():
    table = pd.concat(
        [
            rows("finetune", "cris", "kvasir_polyp", "kvasir_polyp", [0.9, 0.8, 0.95, 0.85]),
            rows("finetune", "clipseg", "kvasir_polyp", "kvasir_polyp", [0.7, 0.6, 0.8, 0.9]),
            rows("finetune", "clipseg", "pooled_all", "kvasir_polyp", [0.5, 0.6, 0.7, 0.8]),
            rows("zero_shot", "clipseg", "kvasir_polyp", "kvasir_polyp", [0.1, 0.2, 0.3, 0.0]),
        ]
    )
    paper = tables.read_paper(paths.REPO_ROOT / "params/paper/reference/paper_results.csv")
    got = tables.table2(stats.summary_table(table), paper=paper, table=table).set_index(
        ["study", "trained_on", "model"]
    )
    cris = got.loc[("finetune", "kvasir_polyp", "cris")]
    assert cris["regime"] == "Individual" and cris["clusters"] == 2
    assert not got["best"].any()  # one seed a model: these trained models, not recipes
    assert cris["paper_dice"] == pytest.approx(0.9139)  # Table 2: CRIS, individual, Kvasir
    assert cris["diff_vs_paper"] == pytest.approx(0.875 - 0.9139)
    pooled = got.loc[("finetune", "pooled_all", "clipseg")]
    assert pooled["regime"] == "Pooled all"
    assert pd.isna(got.loc[("zero_shot", "-", "clipseg")]["paper_dice"])
    wide = tables.table2_wide(tables.table2(stats.summary_table(table)))
    assert wide.shape == (4, 5) and not wide["kvasir_polyp"].str.startswith("**").any()


def _seeds(study, model, test_set, means, n=40):
    """Three seeds of one configuration, each scoring ``n`` images at its own mean."""
    out = []
    for seed, mean in zip((42, 43, 44), means):
        frame = rows(study, model, test_set, test_set, [mean] * n)
        out.append(frame.assign(seed=seed, run_id=frame.run_id + f"__s{seed}"))
    return out


def test_table2_bolds_a_best_that_beats_the_runner_up_across_seeds_whatever_the_study_name():
    table = pd.concat(
        [
            *_seeds("finetune", "cris", "kvasir", [0.90, 0.91, 0.92]),
            *_seeds("finetune", "clipseg", "kvasir", [0.60, 0.61, 0.62]),
            # the CNNs in a study of another name are still finetuned rows, in the same contest
            *_seeds("finetune_cnn", "unet", "kvasir", [0.70, 0.71, 0.72]),
        ]
    ).assign(kind="finetune")
    got = tables.table2(stats.summary_table(table), table=table).set_index("model")
    assert got["best"].to_dict() == {"cris": True, "clipseg": False, "unet": False}
    close = pd.concat(  # seeds that interleave: no recipe beats the other
        [
            *_seeds("finetune", "cris", "kvasir", [0.70, 0.80, 0.90]),
            *_seeds("finetune", "clipseg", "kvasir", [0.65, 0.75, 0.85]),
        ]
    )
    assert not tables.table2(stats.summary_table(close), table=close)["best"].any()


def test_table2_flags_a_model_that_predicts_empty_masks_everywhere():
    truth_empty = [True] * 9 + [False] * 39
    empty = rows("finetune", "clipseg", "us", "us", [1.0] * 9 + [0.0] * 39)
    empty = empty.assign(gt_empty=truth_empty, pred_empty=True)
    works = rows("finetune", "cris", "us", "us", [1.0] * 9 + [0.7] * 39)
    works = works.assign(gt_empty=truth_empty, pred_empty=truth_empty)
    got = tables.table2(stats.summary_table(pd.concat([empty, works]))).set_index("model")
    assert got.loc["clipseg", "dice"] == pytest.approx(9 / 48)  # the empty-mask rule's mean
    assert got.loc["clipseg", "dice_gt_nonempty"] == 0 and got.loc["clipseg", "predicts_empty"]
    assert (
        got.loc["clipseg", "missed_as_empty"] == 1 and got.loc["clipseg", "empty_kept_empty"] == 1
    )
    assert not got.loc["cris", "predicts_empty"] and got.loc["cris", "missed_as_empty"] == 0
    cell = tables.table2_wide(got.reset_index()).set_index("model").loc["clipseg", "us"]
    assert "non-empty 0.000" in cell and "predicts empty masks" in cell


def test_domain_shift_takes_in_distribution_dice_from_the_finetune_run():
    table = pd.concat(
        [
            rows("finetune", "cris", "pooled_polyp", "kvasir_polyp", [0.8, 0.9]),
            rows("finetune", "cris", "pooled_polyp", "bkai_polyp", [0.6, 0.7]),
            rows("domain_shift", "cris", "pooled_polyp", "etis_polyp", [0.3, 0.5]),
        ]
    )
    got = tables.domain_shift(stats.summary_table(table)).iloc[0]
    assert got["unseen_set"] == "etis_polyp" and got["dice"] == pytest.approx(0.4)
    assert got["in_distribution"] == pytest.approx(0.75)  # mean of the two member sets
    assert got["drop"] == pytest.approx(0.35)


def test_prompt_levels_take_the_level_sweep_only_and_keep_empty_truths_apart():
    level = rows("prompt_ablation", "cris", "ref", "ref", [0.2, 0.4, 1.0, 0.0])
    level["sweep"], level["prompt_key"], level["attribute"] = "level", "p0", None
    level["gt_empty"] = [False, False, True, True]
    other = level.assign(prompt_key="p4", dice=[0.6, 0.8, 1.0, 1.0])
    perturbed = level.assign(sweep="perturbation", prompt_key=None, attribute="size")
    got = tables.prompt_levels(stats.summary_table(pd.concat([level, other, perturbed])))
    assert list(got["prompt_key"]) == ["p0", "p4"] and set(got["images"]) == {4}
    assert list(got["dice"]) == pytest.approx([0.4, 0.85])
    assert list(got["dice_gt_nonempty"]) == pytest.approx([0.3, 0.7])  # empty truths left out
    from vlsm_lib.analysis import figures

    assert len(figures.prompt_level_curves(got).axes) == 1
    assert tables.prompt_levels(
        stats.summary_table(rows("finetune", "cris", "a", "a", [0.5]))
    ).empty
