"""The grid estimate: hand-computed seconds per run, the feature store, packing, errors, CLI."""

import json
from pathlib import Path

import pandas as pd
import pytest

from vlsm_lib import paths
from vlsm_lib.cli import main
from vlsm_lib.grid.estimate import as_text, estimate
from vlsm_lib.grid.runner import plan

REPO = paths.REPO_ROOT
# images/s and peak MiB, made up to keep the arithmetic by hand simple
BENCH = [
    dict(model="clipseg", size="paper", train="decoder", batch=8, fwd_img_s=4.0,
         train_img_s=2.0, cached_img_s=20.0, fwd_peak_mb=500, train_peak_mb=3000, error=""),
    dict(model="unet", size="paper", train="all", batch=8, fwd_img_s=20.0, train_img_s=10.0,
         cached_img_s=None, fwd_peak_mb=300, train_peak_mb=1000, error=""),
]  # fmt: skip


def _bench(rows=BENCH) -> pd.DataFrame:
    return pd.DataFrame(rows)


@pytest.fixture
def suite(tmp_path, monkeypatch):
    """A data root holding one dataset ``toy`` (40 train, 10 val, 8 test records, prompt keys
    p0 and p1) and a folder for params files; outputs in tmp_path."""
    data = tmp_path / "data"
    for split, n in (("train", 40), ("val", 10), ("test", 8)):
        anns = data / "toy" / "anns" / f"{split}.json"
        anns.parent.mkdir(parents=True, exist_ok=True)
        records = [
            {"img_name": f"{split}{i}.png", "mask_name": f"{split}{i}.png",
             "prompts": {"p0": "", "p1": "polyp"}}
            for i in range(n)
        ]  # fmt: skip
        anns.write_text(json.dumps(records))
    monkeypatch.setenv("VLSM_DATA", str(data))
    monkeypatch.setenv("VLSM_OUTPUTS", str(tmp_path / "outputs"))
    folder = tmp_path / "suite"
    folder.mkdir()
    return folder


def _params(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


ZERO_SHOT = """
notebook: notebooks/zero_shot.ipynb
defaults: {size: paper, weights: pretrained}
grid: {model: [clipseg], dataset: [toy], prompt: [p1]}
"""
FINETUNE = """
notebook: notebooks/finetune.ipynb
defaults: {size: paper, weights: pretrained, max_epochs: 50, min_epochs: 3, patience: 2}
grid:
  - {model: [clipseg], dataset: [toy], prompt: [p1], fixed: {train: decoder}}
  - {model: [unet], dataset: [toy], prompt: [p0]}
"""
ABLATION = """
notebook: notebooks/prompt_ablation.ipynb
needs: [finetune]
defaults: {size: paper, levels: all, attributes: "size,location"}
grid:
  model: [clipseg]
  dataset: [toy]
  prompt: [p1]
  fixed: {weights: "{suite_dir}/finetune/finetune__clipseg__toy__p1"}
"""


def _grid(suite, *texts) -> list:
    files = [_params(suite, name, text) for name, text in texts]
    return plan(files)


def _seconds(table, run_id) -> float:
    return float(table.set_index("run_id").loc[run_id, "seconds"])


def test_zero_shot_and_finetune_seconds_by_hand(suite):
    planned = _grid(suite, ("zero_shot", ZERO_SHOT), ("finetune", FINETUNE))
    table = estimate(planned, _bench(), fixed_seconds=2.0, store=False)
    rows = table.set_index("run_id")
    # zero-shot: F + P x n_test / r_fwd = 2 + 1 x 8 / 4
    assert _seconds(table, "zero_shot__clipseg__toy__p1") == pytest.approx(4.0)
    # decoder finetune, cached: E = min(50, 3 + 2) = 5; 2 + 5 x (40/20 + 10/4) + 8/4
    run = "finetune__clipseg__toy__p1"
    assert rows.loc[run, ["n_train", "n_val", "n_test", "epochs", "passes"]].tolist() == [
        40, 10, 8, 5, 1,
    ]  # fmt: skip
    assert bool(rows.loc[run, "cached"]) and rows.loc[run, "policy"] == "decoder"
    assert _seconds(table, run) == pytest.approx(2 + 5 * (2 + 2.5) + 2)
    # a CNN never caches: r_train = train_img_s; 2 + 5 x (40/10 + 10/20) + 8/20
    assert not bool(rows.loc["finetune__unet__toy__p0", "cached"])
    assert _seconds(table, "finetune__unet__toy__p0") == pytest.approx(2 + 5 * 4.5 + 0.4)
    # --epochs: the expected epochs under early stopping replace min_epochs + patience
    longer = estimate(planned, _bench(), fixed_seconds=2.0, epochs=8, store=False)
    assert _seconds(longer, run) == pytest.approx(2 + 8 * 4.5 + 2)


def test_the_store_decodes_what_an_earlier_run_encoded(suite):
    planned = _grid(suite, ("zero_shot", ZERO_SHOT), ("finetune", FINETUNE))
    table = estimate(planned, _bench(), fixed_seconds=2.0, store=True)
    cached_fwd = 3 * 20.0  # r_cached_fwd = 3 x cached_img_s
    # the zero-shot run comes first: it encodes the test split at r_fwd, as without the store
    assert _seconds(table, "zero_shot__clipseg__toy__p1") == pytest.approx(4.0)
    # the finetune: its first validation pass encodes (10/4), the 4 others decode; the test
    # split was encoded by the zero-shot run (same model, same pretrained weights)
    expected = 2 + 5 * 2 + 10 / 4 + 4 * 10 / cached_fwd + 8 / cached_fwd
    assert _seconds(table, "finetune__clipseg__toy__p1") == pytest.approx(expected)
    # a model that trains its encoder (UNet here) is untouched by the store
    assert _seconds(table, "finetune__unet__toy__p0") == pytest.approx(2 + 5 * 4.5 + 0.4)
    # a bench without the cached phase: the decoder finetune counts at train_img_s, no store
    uncached = _bench([{**BENCH[0], "cached_img_s": None}, BENCH[1]])
    table = estimate(planned, uncached, fixed_seconds=2.0, store=True)
    assert _seconds(table, "finetune__clipseg__toy__p1") == pytest.approx(2 + 5 * (20 + 2.5) + 2)
    assert table.attrs["notes"] == ["clipseg"]


def test_prompt_ablation_passes_and_its_checkpoint_reading_the_store(suite):
    planned = _grid(suite, ("finetune", FINETUNE), ("prompt_ablation", ABLATION))
    off = estimate(planned, _bench(), fixed_seconds=2.0, store=False)
    on = estimate(planned, _bench(), fixed_seconds=2.0, store=True)
    run = "prompt_ablation__clipseg__toy__p1"
    # 2 prompt levels on disk + (1 + 2 attributes x 2 modes) + 4 prompt-use conditions
    assert off.set_index("run_id").loc[run, "passes"] == 2 + 5 + 4
    assert _seconds(off, run) == pytest.approx(2 + 11 * 8 / 4)
    # the decoder finetune kept CLIPSeg's pretrained image tower and encoded the test split
    assert _seconds(on, run) == pytest.approx(2 + 11 * 8 / 60)


def test_paper_counts_without_data_and_unknown_datasets(suite, monkeypatch, capsys):
    monkeypatch.setenv("VLSM_DATA", str(suite.parent / "empty"))  # nothing on disk
    text = ZERO_SHOT.replace("dataset: [toy]", "dataset: [kvasir_polyp, nowhere]")
    planned = _grid(suite, ("zero_shot", text))
    table = estimate(planned, _bench(), fixed_seconds=2.0).set_index("run_id")
    assert table.loc["zero_shot__clipseg__kvasir_polyp__p1", "n_test"] == 100  # the paper's
    unknown = table.loc["zero_shot__clipseg__nowhere__p1"]
    assert unknown["unknown"] == "nowhere (test)" and unknown["seconds"] == 2.0
    lines = as_text(planned, _bench()).splitlines()
    assert any(line.startswith("WARNING: unknown image counts") and "nowhere" in line
               for line in lines)  # fmt: skip


def test_packing_divides_the_total_and_checks_memory(suite):
    planned = _grid(suite, ("zero_shot", ZERO_SHOT), ("finetune", FINETUNE))
    hours = estimate(planned, _bench(), fixed_seconds=3600)["seconds"].sum() / 3600
    text = as_text(planned, _bench(), runs_per_gpu=2, gpus=1, fixed_seconds=3600)
    assert f"serial: {hours:.2f} GPU-hours for 3 runs" in text
    assert f"packed: 2 run(s) per GPU on 1 GPU(s): {hours / 2:.2f} hours wall" in text
    assert "WARNING" not in text  # no card memory given: nothing to check
    # CLIPSeg trains here: 2 x 3000 MiB > 90 % of 5 GB (4292 MiB); one run fits
    small = as_text(planned, _bench(), runs_per_gpu=2, memory_gb=5)
    assert "2 runs x 3000 MiB exceed 90 % of 5 GB; the most that fit: --runs-per-gpu 1" in small
    assert "WARNING" not in as_text(planned, _bench(), runs_per_gpu=2, memory_gb=80)


def test_a_model_missing_from_the_bench_file_is_named_with_the_command(suite, tmp_path, capsys):
    planned = _grid(suite, ("finetune", FINETUNE))
    with pytest.raises(ValueError, match="no usable row for model.s. unet"):
        estimate(planned, _bench(BENCH[:1]))
    csv = tmp_path / "bench.csv"
    _bench(BENCH[:1]).to_csv(csv, index=False)
    args = ["run", str(suite / "finetune.yaml"), "--dry-run", "--estimate", "--bench", str(csv)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "vlsm bench --models unet --size paper --device cuda --out FILE" in err


def test_the_paper_suite_estimate_needs_no_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VLSM_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("VLSM_OUTPUTS", str(tmp_path / "outputs"))
    names = ["clipseg", "biomedclipseg", "biomedclipseg_d", "cris", "unet", "unetpp"]
    rows = [{**BENCH[0], "model": m} for m in names] + [{**BENCH[1], "model": "deeplabv3plus"}]
    csv = tmp_path / "bench.csv"
    _bench(rows).to_csv(csv, index=False)
    paper = str(REPO / "params" / "paper")
    assert main(["run", paper, "--dry-run", "--estimate", "--bench", str(csv), "--gpu", "H"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("estimate for H from")
    serial = next(line for line in out.splitlines() if line.startswith("serial:"))
    assert float(serial.split()[1]) > 0 and "GPU-hours for 1093 runs" in serial
    assert "paper/finetune" in out and "packed: 1 run(s) per GPU" in out


def test_without_a_bench_file_the_plans_models_are_benched_now(suite, capsys):
    """No --bench: bench.run measures the plan's models at the plan's size on this device."""
    path = _params(suite, "zero_shot", ZERO_SHOT.replace("size: paper", "size: tiny"))
    assert main(["run", str(path), "--dry-run", "--estimate"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    # said before it starts, with the quick alternative
    assert "no --bench file: measuring clipseg at tiny size" in captured.err
    assert "benchmarks/bench_paper_cpu.csv" in captured.err
    assert "from measured now (" in out and "serial: 0.00 GPU-hours for 1 runs" in out
    assert "\nclipseg " in out  # its row in the per-model table


def test_estimate_and_runs_per_gpu_are_refused_where_they_mean_nothing(capsys):
    paper = str(REPO / "params" / "paper" / "zero_shot.yaml")
    assert main(["run", paper, "--estimate"]) == 2
    assert main(["run", paper, "--runs-per-gpu", "2"]) == 2
    err = capsys.readouterr().err
    assert "--estimate goes with --dry-run" in err
    assert "--runs-per-gpu needs --executor dask" in err
