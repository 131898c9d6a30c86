"""One call on a GPU machine measures what no CPU can show, into one folder.

    .venv/bin/python benchmarks/gpu_check.py --out gpu_check/          # on a machine with CUDA
    .venv/bin/python benchmarks/gpu_check.py --out gpu_check/ --dry-run  # what it would do

Steps (each a ``vlsm`` command; its output kept in ``OUT/<step>.log``):

1. ``vlsm bench --size paper --device cuda`` for every model at batch 8 (``bench_b8.csv``):
   images/s of the forward and of the training step, peak memory.
2. The largest batch that fits, per model: batch 16, 32, ... until the step fails (the
   ``max_batch`` column of ``mfu.csv``: the last batch that ran).
3. The training step's share of the GPU's peak bf16 FLOP/s (MFU, ``mfu.csv``): FLOPs of one
   image's forward and backward counted by ``torch.utils.flop_counter`` at paper size, times
   the measured images/s, over ``--peak-tflops`` (default: the card's dense bf16 peak where
   known, H100 and H200 989).
4. A 2-epoch paper-size finetune of CLIPSeg and of CRIS (random weights, as their architecture
   and memory are what is checked) on MedShapes' synth_polyp at the paper's resolution, through
   ``vlsm run --executor dask --runs-per-gpu 2`` (``outputs/``).
5. The rehearsal's slice on the GPU (``vlsm rehearse --slice --executor dask --runs-per-gpu
   2``): every notebook kind of the paper suite on fakes of its 11 datasets, the statistics
   run, and one paper-size finetune of each VLSM (``rehearsal.log``, ``outputs/``).
6. ``vlsm run params/paper --dry-run --estimate`` from the measured bench file: the paper grid's
   hours on this card, serial and packed (``estimate.log``).

Needs about 8 minutes on one H100. Nothing is downloaded: random weights, MedShapes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VLSM = [sys.executable, "-m", "vlsm_lib.cli"]
MODELS = ("clipseg", "biomedclipseg", "biomedclipseg_d", "cris", "unet", "unetpp", "deeplabv3plus")
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, per the vendor
FINETUNE = """notebook: notebooks/finetune.ipynb
defaults:
  size: paper
  weights: ""
  max_epochs: 2
  min_epochs: 2
  surface_metrics: false
grid:
  model: [clipseg, cris]
  dataset: [synth_polyp]
  prompt: [p6]
"""


def steps(out: Path) -> list[tuple[str, list[str]]]:
    """(name, command) of every step but the batch search and MFU (computed here)."""
    params = out / "params" / "gpu_check" / "finetune.yaml"
    return [
        (
            "bench_b8",
            [
                *VLSM,
                "bench",
                "--size",
                "paper",
                "--device",
                "cuda",
                "--batch",
                "8",
                "--out",
                str(out / "bench_b8.csv"),
            ],
        ),  # fmt: skip
        (
            "medshapes",
            [
                *VLSM,
                "data",
                "synth",
                "--only",
                "synth_polyp",
                "--size",
                "416",
                "--out",
                str(out / "data"),
            ],
        ),  # fmt: skip
        ("finetune", [*VLSM, "run", str(params), "--executor", "dask", "--runs-per-gpu", "2"]),
        (
            "rehearsal",
            [
                *VLSM,
                "rehearse",
                "--slice",
                "--data",
                str(out / "rehearsal_data"),
                "--executor",
                "dask",
                "--runs-per-gpu",
                "2",
            ],
        ),  # fmt: skip
        (
            "estimate",
            [
                *VLSM,
                "run",
                str(REPO / "params" / "paper"),
                "--dry-run",
                "--estimate",
                "--bench",
                str(out / "bench_b8.csv"),
                "--runs-per-gpu",
                "2",
            ],
        ),  # fmt: skip
    ]


def run(name: str, command: list[str], out: Path, env: dict) -> int:
    with open(out / f"{name}.log", "w") as log:
        return subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
        ).returncode


def largest_batch(model: str, out: Path, env: dict, cap: int = 512) -> int:
    """The largest power-of-two batch (from 8) whose training step ran."""
    best, batch = 8, 16
    while batch <= cap:
        command = [*VLSM, "bench", "--size", "paper", "--device", "cuda", "--models", model,
                   "--batch", str(batch), "--steps", "3"]  # fmt: skip
        if run(f"max_{model}_b{batch}", command, out, env) != 0:
            break
        best, batch = batch, batch * 2
    return best


def flops_per_image(model: str) -> float:
    """FLOPs of one image's forward and backward at paper size (torch's flop counter)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vlsm_lib.engine.bench import make_inputs
    from vlsm_lib.models import create_model

    seg = create_model(model, size="paper", weights=None).cuda()
    x = make_inputs(seg, 1, torch.device("cuda"))
    with FlopCounterMode(display=False) as counter:
        seg(x["pixel_values"], x["input_ids"], x["attention_mask"]).float().mean().backward()
    return float(counter.get_total_flops())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for every result")
    parser.add_argument("--dry-run", action="store_true", help="say what it would measure")
    parser.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLSM_OUTPUTS": str(out / "outputs"),
           "VLSM_DATA": str(out / "data")}  # fmt: skip
    if args.dry_run:
        print(__doc__.split("Steps")[1].split("Needs")[0].strip())
        for name, command in steps(out):
            print(f"{name}: {' '.join(command[2:])}")
        print(f"largest batch: vlsm bench --models M --batch 16, 32, ... for {', '.join(MODELS)}")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; --dry-run says what it would measure")
        return 2
    out.mkdir(parents=True, exist_ok=True)
    (out / "params" / "gpu_check").mkdir(parents=True, exist_ok=True)
    (out / "params" / "gpu_check" / "finetune.yaml").write_text(FINETUNE)
    name = torch.cuda.get_device_name()
    failed = [step for step, command in steps(out) if run(step, command, out, env) != 0]
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    import pandas as pd

    rows = []
    bench = pd.read_csv(out / "bench_b8.csv") if (out / "bench_b8.csv").is_file() else None
    for model in MODELS:
        row = {"gpu": name, "model": model, "max_batch": largest_batch(model, out, env)}
        if bench is not None and peak:
            rate = bench.loc[bench.model == model, "train_img_s"]
            row["flops_per_image"] = flops_per_image(model)
            row["mfu"] = float(rate.iloc[0]) * row["flops_per_image"] / (peak * 1e12)
        rows.append(row)
    pd.DataFrame(rows).to_csv(out / "mfu.csv", index=False)
    print(f"{name}: results in {out}; failed steps: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
