"""Transfer-mode tables, policy tests, fault costs and their figures, on hand-made tables."""

import json

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from vlsm_lib.analysis import figures, stats, transfer  # noqa: E402

N = 30
W = "{suite_dir}/pretrain/pretrain__clipseg__synth_shapes"


def _run(rid, study, train, dice, fraction=1.0, dataset="polyp", seed=42):
    g = np.random.default_rng(abs(hash(rid)) % 2**32)
    return pd.DataFrame(
        {
            "run_id": rid,
            "study": study,
            "model": "clipseg",
            "dataset": dataset,
            "prompt": "p6",
            "train": train,
            "train_fraction": fraction,
            "weights": W,
            "size": "tiny",
            "seed": seed,
            "test_set": "polyp",
            "image_id": [f"{i}.png" for i in range(N)],
            "cluster": [f"{i}.png" for i in range(N)],
            "dice": np.clip(dice + g.normal(0, 0.02, N), 0, 1),
        }
    )


@pytest.fixture
def table():
    runs = [
        _run("zero_shot__clipseg__polyp__p6", "zero_shot", "decoder", 0.1),
        _run("transfer_modes__clipseg__polyp__p6__train-decoder", "transfer_modes", "decoder", 0.5),
        _run("transfer_modes__clipseg__polyp__p6__train-lora", "transfer_modes", "lora", 0.6),
        _run(
            "transfer_modes__clipseg__polyp__p6__train-all__train_fraction-0.25",
            "transfer_modes",
            "all",
            0.3,
            fraction=0.25,
        ),
        _run("transfer_modes__clipseg__polyp__p6__train-all", "transfer_modes", "all", 0.7),
    ]
    return pd.concat(runs, ignore_index=True)


def test_policy_tests_pair_each_policy_with_zero_shot_and_the_papers_policy(table):
    tests = transfer.policy_tests(table, "dice", 0.05)
    lora = tests[tests.train == "lora"].set_index("baseline")
    assert set(lora.index) == {"zero_shot on polyp", "decoder (the paper's)"}
    assert lora.loc["zero_shot on polyp", "mean_diff"] == pytest.approx(0.5, abs=0.02)
    assert lora.loc["decoder (the paper's)", "mean_diff"] == pytest.approx(0.1, abs=0.02)
    assert lora.loc["zero_shot on polyp", "n_clusters"] == N and lora["significant"].all()
    decoder = tests[tests.train == "decoder"]
    assert list(decoder.baseline) == ["zero_shot on polyp"]  # never against itself
    # the fraction 0.25 run is compared with the decoder at 0.25 only: there is none
    quarter = tests[tests.train_fraction == 0.25]
    assert list(quarter.baseline) == ["zero_shot on polyp"]
    assert tests["p_holm"].notna().all() and len(tests) == 6


def test_transfer_table_sets_zero_shot_beside_and_counts_parameters(table, tmp_path):
    rid = "transfer_modes__clipseg__polyp__p6__train-lora"
    folder = tmp_path / "transfer_modes" / rid
    folder.mkdir(parents=True)
    table[table.run_id == rid].to_parquet(folder / "per_image.parquet")
    info = {"run_id": rid, "study": "transfer_modes", "status": "complete",
            "model": {"trainable_params": 22777, "params": 10**6}}  # fmt: skip
    (folder / "run.json").write_text(json.dumps(info))
    facts = transfer.run_facts(tmp_path)
    assert facts.to_dict("records") == [{"run_id": rid, "trainable_params": 22777, "params": 10**6}]
    zero = {"run_id": "zero_shot__clipseg__polyp__p6", "trainable_params": 0, "params": 10**6}
    facts = pd.concat([facts, pd.DataFrame([zero])], ignore_index=True)
    summary = stats.summary_table(table, "dice")
    out = transfer.transfer_table(summary, table, facts)
    assert out.iloc[0]["policy"] == "zero-shot" and pd.isna(out.iloc[0]["train_fraction"])
    assert out.set_index("policy").loc["lora", "trainable_params"] == 22777
    assert sorted(out.train_fraction.dropna().unique()) == [0.25, 1.0]
    assert len(out) == 5
    fig = figures.dice_vs_trainable(out)
    assert len(fig.axes) == 1 and fig.axes[0].get_xscale() == "log"
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["zero-shot", "decoder", "lora", "all"]  # the full split, policy colours
    fig = figures.dice_vs_fraction(out)
    assert len(fig.axes[0].get_lines()) >= 1  # train=all at 0.25 and 1.0
    empty = figures.dice_vs_trainable(out.iloc[0:0])
    assert "no transfer-mode" in empty.axes[0].texts[0].get_text()


def test_fault_costs_name_both_runs_and_report_missing_ones(table):
    faults = [
        {
            "fault": "worse",
            "run": "transfer_modes__clipseg__polyp__p6__train-decoder",
            "baseline": "transfer_modes__clipseg__polyp__p6__train-all",
        },
        {"fault": "gone", "run": "nope", "baseline": "zero_shot__clipseg__polyp__p6"},
    ]
    with pytest.warns(UserWarning, match="no complete run \\['nope'\\]"):
        out = transfer.fault_costs(table, faults, "dice", 0.05)
    worse = out[out.fault == "worse"].iloc[0]
    assert worse["mean_diff"] == pytest.approx(-0.2, abs=0.02)
    assert worse["diff_ci_low"] < worse["mean_diff"] < worse["diff_ci_high"] < 0
    assert worse["significant"] and worse["n_clusters"] == N
    assert out[out.fault == "gone"].iloc[0]["missing"] == "nope"
    assert transfer.fault_costs(table, [], "dice", 0.05).empty


def test_finetune_runs_stand_in_for_policies_the_study_does_not_run(table):
    """The finetune study's end-to-end run on the same data, prompt and weights is the
    transfer table's `all` point; one on other data, or of a policy the study runs, is not."""
    table = table[table.run_id != "transfer_modes__clipseg__polyp__p6__train-all"]
    finetune = [
        _run("finetune__clipseg__polyp__p6", "finetune", "all", 0.8),
        _run("finetune__clipseg__other__p6", "finetune", "all", 0.2, dataset="other"),
        _run("finetune__clipseg__polyp__p6__train-lora", "finetune", "lora", 0.2),
    ]
    table = pd.concat([table, *finetune], ignore_index=True).drop(columns="train_fraction")
    table = table.assign(train_fraction=np.where(table.run_id.str.contains("0.25"), 0.25, 1.0))
    table.loc[table.study == "finetune", "train_fraction"] = np.nan  # an older run: no column
    merged = transfer.with_finetune(stats.with_config(table))
    assert sorted(merged[merged.study == "finetune"].run_id.unique()) == [
        "finetune__clipseg__polyp__p6"
    ]
    tests = transfer.policy_tests(table, "dice", 0.05)
    full = tests[(tests.train == "all") & (tests.train_fraction == 1.0)]
    assert set(full.baseline) == {"zero_shot on polyp", "decoder (the paper's)"}
    assert full.set_index("baseline").loc["decoder (the paper's)", "mean_diff"] == pytest.approx(
        0.3, abs=0.02
    )
