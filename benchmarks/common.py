"""What the benchmark scripts share: data, models, bare loops on ``train.step``, interleaving.

Every claim of a benchmark is a ratio against a baseline measured in the same run, with the
compared variants interleaved (A B C, C B A, A B C, ...: each round reverses the order) and
medians taken, so that noise from other processes on a shared machine hits all sides alike.
Only the public API of ``vlsm_lib`` is used: the bare loops call ``train.step``, the step
``fit`` takes, so "fit against bare" measures the loop around the step (data loading,
validation, bookkeeping, file writes), and the parts of a fit epoch come from its history rows
(``steps``, ``train_seconds``, ``val_seconds``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub lookup hangs offline

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vlsm_lib.data.dataset import load_dataset  # noqa: E402
from vlsm_lib.data.medshapes.synthetic import write_dataset  # noqa: E402
from vlsm_lib.engine import runtime, train  # noqa: E402
from vlsm_lib.engine.config import TrainConfig  # noqa: E402
from vlsm_lib.engine.metrics import confusion, dice_from_counts  # noqa: E402
from vlsm_lib.files import write_json, write_text  # noqa: E402
from vlsm_lib.models import create_model  # noqa: E402

PROMPT = "p6"  # "one tiny pink oval polyp, located in top of the image": a real-length prompt


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def med(xs: Iterable[float]) -> float:
    xs = list(xs)
    return float(statistics.median(xs)) if xs else float("nan")


def interleave(variants: dict[str, Callable[[], object]], rounds: int, label: str) -> dict:
    """Run each variant once per round, the order reversed every other round; {name: [results]}.

    A result is seconds (a float) or a dict with ``total_s``; each round is logged."""
    names = list(variants)
    got: dict[str, list] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            got[name].append(variants[name]())
        shown = [(n, got[n][-1]) for n in names]
        shown = [(n, v["total_s"] if isinstance(v, dict) else v) for n, v in shown]
        log(f"[{label}] round {r + 1}/{rounds}: " + ", ".join(f"{n} {v:.3f} s" for n, v in shown))
    return got


def ratios(times: dict[str, list[float]], pairs: Iterable[tuple[str, str]]) -> dict:
    """Medians of ``times``; for each (a, b) of ``pairs`` whose variants both ran, the ratio of
    medians ``"a/b"`` and the median of same-round ratios ``"a/b paired"``."""
    m = {n: med(t) for n, t in times.items()}
    out: dict = {"median_s": m}
    for a, b in pairs:
        if a in times and b in times:
            out[f"{a}/{b}"] = m[a] / m[b]
            out[f"{a}/{b} paired"] = med(x / y for x, y in zip(times[a], times[b]))
    return out


def machine() -> dict:
    """Facts to name with any number: CPU, threads, torch, the CPU settings applied, load."""
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": runtime.device_name("cpu"),
        "cpu_has_fast_bf16": runtime.cpu_has_fast_bf16(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_tuning": runtime.state(),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def parser(doc: str, out: str) -> argparse.ArgumentParser:
    """The options every script takes: --quick, --out, --threads, --rounds."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny models, few rounds: a smoke run")
    p.add_argument("--out", default=out, help=f"JSON results, Markdown beside it (default {out})")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default: per script)")
    return p


def start(args: argparse.Namespace) -> dict:
    """Apply the settings ``fit`` applies (the bare loops run under them too); the result's
    header."""
    if args.threads:
        torch.set_num_threads(args.threads)
    runtime.apply()
    command = " ".join([Path(sys.executable).name, *sys.argv])
    return {"quick": args.quick, "command": command, "t0": time.perf_counter(), **machine()}


def header(res: dict) -> str:
    """The Markdown lines that name the machine, the load and the command of a run."""
    return (
        f"{res['date']}, {res['device']}, torch {res['torch']}; denormals flushed "
        f"{res['cpu_tuning']['flush_denormal']}, malloc {res['cpu_tuning']['malloc']}; load "
        f"average at start {res['loadavg_start']}, at end {res['loadavg_end']}. Other "
        "processes may have run concurrently: compare ratios (interleaved, medians), not "
        f"absolute times. Command: `{res['command']}`, {res['wall_s']:.0f} s in all.\n"
    )


def finish(res: dict, out: str, markdown: Callable[[dict], str]) -> None:
    """Write the JSON and ``markdown(res)`` beside it (``.md``), atomically; print the latter."""
    res["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    res["wall_s"] = time.perf_counter() - res.pop("t0")
    write_json(out, res)
    text = markdown(res)
    write_text(Path(out).with_suffix(".md"), text)
    print(text)
    log(f"written: {out}, {Path(out).with_suffix('.md')}")


# ---------------------------------------------------------------------------- data and models


def write_data(root: Path, size: int, n_train: int, n_val: int) -> Path:
    """MedShapes synth_polyp with the given split sizes (no test split)."""
    log(f"writing synth_polyp ({n_train} train, {n_val} val, {size} px) to {root}")
    with contextlib.redirect_stderr(open(os.devnull, "w")):  # the generator's tqdm bars
        counts = {"train": n_train, "val": n_val, "test": 0}
        write_dataset("synth_polyp", root, seed=0, size=size, counts=counts)
    return root


def datasets(root: Path, model) -> tuple:
    """(train, val) of synth_polyp under ``root`` for ``model``, prompt P6."""
    return tuple(
        load_dataset(root, "synth_polyp", split, model.preprocess, prompt=PROMPT)
        for split in ("train", "val")
    )


def cold(dataset):
    """A new dataset over the same files: its sample cache empty, as at the start of a run."""
    if isinstance(dataset, torch.utils.data.Subset):
        return torch.utils.data.Subset(cold(dataset.dataset), dataset.indices)
    d = dataset
    return load_dataset(d.root, d.name, d.split, d.preprocess, prompt=d.prompt, seed=d.seed)


def paper_clipseg(tmp: Path, train_policy: str = "decoder"):
    """Paper CLIPSeg built like a real run: from reproducible weights (here saved random ones,
    offline), so that checkpoints store the trainable part only."""
    log("building paper CLIPSeg (random weights), saving it, rebuilding from the folder")
    net = create_model("clipseg", size="paper", weights=None).net
    net.save_pretrained(tmp / "clipseg_weights")
    del net
    weights = str(tmp / "clipseg_weights")
    return create_model("clipseg", size="paper", weights=weights, train=train_policy)


# ---------------------------------------------------------------------------- loops


def step_setup(model, cfg: TrainConfig) -> train.StepSetup:
    """A fresh optimiser etc. as ``fit`` builds them, for the model's trainable parameters."""
    params = (p for p in model.parameters() if p.requires_grad)
    return train.make_step_setup(params, cfg, torch.device("cpu"))


def preload(dataset, cfg: TrainConfig, epoch: int = 0, shuffle: bool = True) -> list[dict]:
    """The batches ``fit`` draws at ``epoch`` (same seed, same order), loaded now."""
    return list(train.loader(dataset, cfg, shuffle=shuffle, epoch=epoch))


def bare_steps(model, batches: Iterable[dict], setup: train.StepSetup, forward=None) -> float:
    """``train.step`` over ``batches`` and nothing else; returns the wall time (s)."""
    model.train()
    forward = forward or model.forward_batch
    t0 = time.perf_counter()
    for batch in batches:
        train.step(forward, batch, setup)
    return time.perf_counter() - t0


@torch.no_grad()
def bare_validate(model, batches: Iterable[dict], loss_fn) -> tuple[float, float]:
    """What ``train.validate`` computes (mean loss, mean per-image Dice), over ``batches``."""
    model.eval()
    total, n, dices = 0.0, 0, []
    for batch in batches:
        logits = model.forward_batch(batch).float()
        total += float(loss_fn(logits, batch["mask"])) * len(logits)
        n += len(logits)
        pred = model.binarize(logits)[:, 0].numpy()
        tp, fp, fn, _ = confusion(pred, batch["mask"][:, 0].numpy() > 0.5)
        dices.extend(np.atleast_1d(dice_from_counts(tp, fp, fn)).tolist())
    return total / max(n, 1), float(np.mean(dices))


def run_fit(model, train_set, val_set, cfg: TrainConfig) -> tuple[train.FitResult, float, dict]:
    """``fit`` from scratch in a temporary folder: (result, wall seconds, {file: bytes})."""
    with tempfile.TemporaryDirectory() as run_dir:
        t0 = time.perf_counter()
        result = train.fit(model, train_set, val_set, cfg, run_dir, resume=False)
        wall = time.perf_counter() - t0
        files = {p.name: p.stat().st_size for p in Path(run_dir).iterdir() if p.is_file()}
    return result, wall, files


def per_step_s(result: train.FitResult) -> list[float]:
    """Seconds per training step of each epoch of a fit (its history rows)."""
    return [row["train_seconds"] / row["steps"] for row in result.history]
