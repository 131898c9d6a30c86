"""``vlsm bench``: what a row says, that its training step is fit's, and the sub-command.

Timings are only checked to be positive, never compared (the machine is shared).
"""

import math

import pytest
import torch

from vlsm_lib import cli
from vlsm_lib.engine import bench, runtime
from vlsm_lib.engine.config import TrainConfig
from vlsm_lib.models import create_model

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
    "cpu_tuning",
    "flush_denormal",
    "memory_measure",
    *(f"{phase}_{key}" for phase in bench.PHASES for key in ("img_s", "step_ms", "peak_mb")),
}


def _row(name="unet", **kw):
    return bench.bench_model(name, size="tiny", batch=2, steps=1, warmup=0, device="cpu", **kw)


@pytest.mark.parametrize("name", ["clipseg", "unet"])
def test_bench_model_on_tiny_models(name):
    row = _row(name)
    assert KEYS <= set(row)
    assert row["model"] == name and row["device"] == "cpu" and row["batch"] == 2
    assert row["fwd_img_s"] > 0 and row["train_img_s"] > 0
    assert 0 < row["trainable_params"] <= row["params"]
    # CLIPSeg trains its decoder by default: its encoders are frozen, so the cached step runs
    cached = row["cached_img_s"]
    assert (cached > 0) if name == "clipseg" else math.isnan(cached)
    if row["memory_measure"] != "unavailable":
        assert row["train_peak_mb"] > 0 and row["train_extra_mb"] >= 0


@pytest.mark.parametrize("fast_bf16, applied", [(False, "highest"), (True, "medium")])
def test_medium_precision_is_recorded_as_applied_and_restored(monkeypatch, fast_bf16, applied):
    """As in fit: "medium" runs as "highest" on a CPU without bf16 instructions."""
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: fast_bf16)
    before = torch.get_float32_matmul_precision()
    row = _row(matmul_precision="medium")
    assert row["matmul_precision"] == applied
    assert torch.get_float32_matmul_precision() == before


def test_rows_record_the_cpu_settings_applied(monkeypatch):
    monkeypatch.setenv("VLSM_CPU_TUNING", "0")
    off = _row()
    monkeypatch.delenv("VLSM_CPU_TUNING")
    on = _row()  # leaves the default settings applied for the tests that follow
    assert off["cpu_tuning"] is False and off["flush_denormal"] is False
    assert on["cpu_tuning"] is True and runtime.state()["applied"]
    assert on["flush_denormal"] == runtime.state()["flush_denormal"]


def test_measure_trains_exactly_the_trainable_parameters():
    torch.manual_seed(0)
    model = create_model("clipseg", size="tiny", train="decoder")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    bench.measure(model, batch=2, steps=1, warmup=0)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and changed == trainable


def test_measure_clips_gradients_as_fit_does():
    """Without clip_grad_norm_ (bench once skipped it) the last step's gradients keep their
    norm, orders of magnitude above this clip."""
    torch.manual_seed(0)
    model = create_model("unet", size="tiny")
    bench.measure(model, batch=2, steps=1, warmup=0, cfg=TrainConfig(lr=1e-4, grad_clip=1e-6))
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and float(torch.nn.utils.get_total_norm(grads)) <= 1e-6 * 1.001


def test_bench_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch and steps"):
        bench.bench_model("unet", batch=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA device"):
        bench.bench_model("unet", device="cuda")


def test_vlsm_bench_command(capsys, tmp_path):
    out = tmp_path / "bench.csv"
    args = ["bench", "--models", "unet", "--size", "tiny", "--steps", "1", "--batch", "2"]
    assert cli.main(args + ["--warmup", "0", "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "unet" in printed and "train_img_s" in printed
    assert out.is_file() and "fwd_img_s" in out.read_text()


def test_run_records_a_policy_error_and_continues():
    df = bench.run(["unet", "unetpp"], size="tiny", batch=1, steps=1, warmup=0, train="nope")
    assert list(df["model"]) == ["unet", "unetpp"]
    assert df["error"].str.contains("unknown train policy").all()
    assert "unknown train policy" in bench.format_table(df)


def test_the_gpu_check_says_what_it_would_measure_without_a_gpu(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
    out = subprocess.run(
        [sys.executable, str(script), "--dry-run", "--out", str(tmp_path / "gpu")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    text = out.stdout
    for step in (
        "bench_b8:",
        "medshapes:",
        "finetune:",
        "rehearsal:",
        "estimate:",
        "largest batch:",
    ):
        assert step in text
    assert "--device cuda --batch 8" in text and "--runs-per-gpu 2" in text
    assert "rehearse --slice --data" in text
    assert not (tmp_path / "gpu").exists()  # a dry run writes nothing
