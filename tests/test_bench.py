"""``vlsm bench``: bench_model's result on tiny models and the sub-command's wiring.

Only shapes of results are checked, never timings (the machine is shared).
"""

import argparse
import math

import pytest
import torch

from vlsm_lib import bench

KEYS = {
    "model",
    "size",
    "train",
    "batch",
    "image_size",
    "params",
    "trainable_params",
    "device",
    "device_name",
    "threads",
    "matmul_precision",
    "memory_measure",
    *(f"{phase}_{key}" for phase in bench.PHASES for key in ("img_s", "step_ms", "peak_mb")),
}


@pytest.mark.parametrize("name", ["clipseg", "unet"])
def test_bench_model_on_tiny_models(name):
    row = bench.bench_model(name, size="tiny", batch=2, steps=1, warmup=0, device="cpu")
    assert KEYS <= set(row)
    assert row["model"] == name and row["device"] == "cpu" and row["batch"] == 2
    assert row["fwd_img_s"] > 0 and row["train_img_s"] > 0
    assert 0 < row["trainable_params"] <= row["params"]
    assert row["threads"] == torch.get_num_threads()
    assert row["matmul_precision"] == torch.get_float32_matmul_precision()
    # CLIPSeg trains its decoder by default: its encoders are frozen, so the cached step runs
    cached = row["cached_img_s"]
    assert (cached > 0) if name == "clipseg" else math.isnan(cached)
    if row["memory_measure"] != "unavailable":
        assert row["train_peak_mb"] > 0


def test_bench_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch and steps"):
        bench.bench_model("unet", batch=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA device"):
        bench.resolve_device("cuda")


def test_add_parser_wiring(capsys, tmp_path):
    parser = argparse.ArgumentParser(prog="vlsm")
    bench.add_parser(parser.add_subparsers(dest="verb", required=True))
    out = tmp_path / "bench.csv"
    args = parser.parse_args(
        ["bench", "--models", "unet", "--size", "tiny", "--steps", "1", "--batch", "2"]
        + ["--warmup", "0", "--device", "cpu", "--out", str(out)]
    )
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "unet" in printed and "train_img_s" in printed
    assert out.is_file() and "fwd_img_s" in out.read_text()


def test_run_records_a_policy_error_and_continues():
    df = bench.run(["unet", "unetpp"], size="tiny", batch=1, steps=1, warmup=0, train="nope")
    assert list(df["model"]) == ["unet", "unetpp"]
    assert df["error"].str.contains("unknown train policy").all()
    assert "unknown train policy" in bench.format_table(df)
