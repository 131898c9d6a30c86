"""``vlsm bench``: throughput and peak memory of each model before launching a training grid.

For every model, on random inputs at the model's own input size (and tokenised, real-looking
prompts when the model reads text), three phases are timed one step at a time:

- ``fwd``: inference, ``model.eval()`` under ``torch.no_grad()``;
- ``train``: one training step as ``fit`` takes it: ``model.train()``, forward, Dice + BCE loss
  (``make_loss("dice_bce")``), backward, AdamW step over the trainable parameters (fp16
  autocast and a GradScaler on CUDA when ``amp``, as ``fit`` does);
- ``cached``: only for models whose encoders are frozen (``model.cacheable()``, e.g. CLIPSeg
  with ``train="decoder"``): the same training step from precomputed encoder outputs, which is
  what ``fit`` runs once its feature cache is filled (``TrainConfig.feature_cache``).

Throughput is ``batch / median step time`` over ``steps`` steps after ``warmup`` untimed ones.
Peak memory covers each whole phase (warm-up included, so the optimiser state is counted):

- CUDA: ``torch.cuda.max_memory_allocated`` after ``torch.cuda.reset_peak_memory_stats``
  (``*_peak_mb``: absolute, weights included; ``*_extra_mb``: above what was allocated when the
  phase began). The caching allocator reserves somewhat more than this.
- CPU: the process's resident set size (RSS). On Linux the kernel's own high-water mark is reset
  (``/proc/self/clear_refs``) and read back (``VmHWM``), which is exact; elsewhere a background
  thread samples RSS with psutil every 2 ms. ``*_peak_mb`` is the process's peak RSS (Python,
  libraries and weights included), ``*_extra_mb`` its increase over the RSS at the start of the
  phase. Memory freed by an earlier phase but kept by the C allocator hides part of a later
  phase's increase; freed memory is handed back (``malloc_trim``) between phases to limit that.

Models are built with random weights (``weights=None``), offline: the same shapes and operations
as pretrained weights (speed effects that depend on the values are not covered). Data loading is
not measured (see ``benchmarks/train_overhead.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import math
import platform
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from vlsm_lib import runtime

PROMPTS = (
    "one small pink round polyp, located in top left of the image",
    "polyp",
    "a brown irregular skin lesion in the centre",
    "",
    "one medium hypoechoic mass, located in bottom right of the image",
    "pleural effusion",
    "two large red oval polyps, located in center and top right of the image",
    "lesion",
)
PHASES = ("fwd", "train", "cached")
# Columns of the printed table (the CSV and the DataFrame hold every key).
TABLE = (
    "model",
    "size",
    "train",
    "batch",
    "image_size",
    "trainable_m",
    "params_m",
    "fwd_img_s",
    "train_img_s",
    "cached_img_s",
    "fwd_peak_mb",
    "train_peak_mb",
    "train_extra_mb",
    "cached_peak_mb",
    "error",
)


# ---------------------------------------------------------------------------- memory


def _rss_bytes() -> int | None:
    """Current resident set size of this process, or None when it cannot be read."""
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:
        pass
    try:  # Linux without psutil: second field of statm, in pages
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _page_size()
    except (OSError, ValueError, IndexError):
        return None


def _page_size() -> int:
    import resource

    return resource.getpagesize()


def _hwm_bytes() -> int | None:
    """Linux: the kernel's peak RSS of this process (VmHWM), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_hwm() -> bool:
    """Linux: reset VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _hwm_bytes() is not None
    except OSError:
        return False


def _release_freed_memory() -> None:
    """Collect garbage and hand freed heap memory back to the OS (glibc only; else a no-op)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory over a ``with`` block; see the module docstring for what is measured.

    After the block: ``peak`` (bytes, absolute), ``extra`` (bytes above the start) and
    ``method`` (how it was measured); ``peak`` and ``extra`` are NaN when nothing could be read.
    """

    def __init__(self, device: torch.device, interval: float = 0.002):
        self.device, self.interval = torch.device(device), interval
        self.peak = self.extra = math.nan
        self.method = ""
        self._start = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampled = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            self.method = "cuda max_memory_allocated"
            return self
        _release_freed_memory()
        self._start = _rss_bytes() or 0
        if _reset_hwm():
            self.method = "cpu rss (VmHWM)"
            return self
        if _rss_bytes() is None:
            self.method = "unavailable"
            return self
        self.method = f"cpu rss (sampled every {self.interval * 1e3:g} ms)"
        self._sampled = self._start
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._sampled = max(self._sampled, _rss_bytes() or 0)
            self._stop.wait(self.interval)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        elif self.method == "cpu rss (VmHWM)":
            self.peak = _hwm_bytes()
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._sampled, _rss_bytes() or 0)
        if not math.isnan(self.peak):
            self.extra = max(self.peak - self._start, 0)


# ---------------------------------------------------------------------------- one model


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None: CUDA when available, else CPU. Asking for CUDA without it is an error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA device; use --device cpu")
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            models = (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
            name = next(models, "")
    return name or platform.processor() or platform.machine()


def make_inputs(model, batch: int, device: torch.device, seed: int = 0) -> dict:
    """Random normalised images, random binary masks and tokenised prompts for ``model``."""
    g = torch.Generator().manual_seed(seed)
    h, w = model.preprocess.image_size
    inputs = {
        "pixel_values": torch.randn(batch, 3, h, w, generator=g),
        "mask": (torch.rand(batch, 1, h, w, generator=g) < 0.3).float(),
        "input_ids": None,
        "attention_mask": None,
    }
    if model.preprocess.tokenizer is not None:
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
        inputs["input_ids"], inputs["attention_mask"] = model.preprocess.text(prompts)
    return {k: v.to(device) if v is not None else None for k, v in inputs.items()}


def _timed(step, n: int, device: torch.device) -> list[float]:
    """Run ``step`` n times; the wall time of each, synchronising CUDA around it."""
    times = []
    for _ in range(n):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def _phase(step, steps: int, warmup: int, batch: int, device: torch.device) -> dict:
    """Warm up, time ``steps`` steps and measure peak memory over both."""
    with PeakMemory(device) as mem:
        _timed(step, warmup, device)
        times = _timed(step, steps, device)
    median = statistics.median(times)
    return {
        "step_ms": median * 1e3,
        "img_s": batch / median,
        "peak_mb": mem.peak / 2**20,
        "extra_mb": mem.extra / 2**20,
        "memory_measure": mem.method,
    }


def bench_model(
    name: str,
    size: str = "tiny",
    batch: int = 8,
    steps: int = 5,
    warmup: int = 2,
    train: str | None = None,
    device: str | torch.device | None = None,
    amp: bool = True,
    lr: float = 1e-4,
) -> dict:
    """Throughput and peak memory of one model; see the module docstring.

    Returns a flat dict: identification (model, size, train, batch, image_size, params,
    trainable_params, params_m, trainable_m, device, device_name, torch, threads,
    matmul_precision, flush_denormal, amp, steps, warmup) and per phase ``fwd`` / ``train`` /
    ``cached``:
    ``<phase>_img_s``, ``<phase>_step_ms``, ``<phase>_peak_mb``, ``<phase>_extra_mb`` (NaN for
    ``cached`` when the model's encoders are not frozen), plus ``memory_measure``.
    """
    from vlsm_lib.config import TrainConfig
    from vlsm_lib.losses import make_loss
    from vlsm_lib.models import create_model
    from vlsm_lib.train import make_optimizer

    if batch < 1 or steps < 1 or warmup < 0:
        raise ValueError("batch and steps must be >= 1 and warmup >= 0")
    device = resolve_device(device)
    model = create_model(name, size=size, weights=None, train=train).to(device)
    facts = model.describe()
    x = make_inputs(model, batch, device)
    amp = amp and device.type == "cuda"
    autocast = lambda: torch.autocast("cuda", dtype=torch.float16, enabled=amp)  # noqa: E731
    row = {
        "model": name,
        "size": size,
        "train": model.policy,
        "batch": batch,
        "image_size": "x".join(map(str, model.preprocess.image_size)),
        "params": facts["params"],
        "trainable_params": facts["trainable_params"],
        "params_m": facts["params"] / 1e6,
        "trainable_m": facts["trainable_params"] / 1e6,
        "device": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "flush_denormal": runtime.state()["flush_denormal"],
        "amp": amp,
        "steps": steps,
        "warmup": warmup,
    }

    def forward():
        with torch.no_grad(), autocast():
            model(x["pixel_values"], x["input_ids"], x["attention_mask"])

    loss_fn = make_loss("dice_bce")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, TrainConfig(lr=lr))  # the AdamW fit builds
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    def update(logits_fn):
        with autocast():
            logits = logits_fn()
        loss = loss_fn(logits.float(), x["mask"])
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    full = lambda: model(x["pixel_values"], x["input_ids"], x["attention_mask"])  # noqa: E731
    results = {}
    model.eval()
    results["fwd"] = _phase(forward, steps, warmup, batch, device)
    model.train()
    results["train"] = _phase(lambda: update(full), steps, warmup, batch, device)
    if model.cacheable():
        with torch.no_grad(), autocast():
            feats = model.encode_image(x["pixel_values"])
            text = model.encode_text(x["input_ids"], x["attention_mask"])
        # the cache stores float32 features, as FeatureCache does
        feats, text = [f.float() for f in feats], text.float()
        size_hw = tuple(x["pixel_values"].shape[-2:])
        decode = lambda: model.decode(feats, text, size_hw)  # noqa: E731
        results["cached"] = _phase(lambda: update(decode), steps, warmup, batch, device)
    for phase in PHASES:
        got = results.get(phase, {})
        for key in ("img_s", "step_ms", "peak_mb", "extra_mb"):
            row[f"{phase}_{key}"] = got.get(key, math.nan)
    row["memory_measure"] = results["fwd"]["memory_measure"]
    return row


# ---------------------------------------------------------------------------- several models


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def run(
    models: Sequence[str] | None = None,
    size: str = "tiny",
    batch: int = 8,
    steps: int = 5,
    warmup: int = 2,
    train: str | None = None,
    device: str | None = None,
    matmul_precision: str | None = None,
    amp: bool = True,
    verbose: bool = False,
):
    """``bench_model`` over ``models`` (default: every registered model) -> a DataFrame.

    A model that fails (out of memory, a train policy it does not offer...) gets a row with its
    ``error`` and the others still run. ``matmul_precision`` is set for the run and restored.
    """
    import pandas as pd

    from vlsm_lib.models import list_models

    models = list(models or list_models())
    runtime.apply()  # the CPU settings fit uses (runtime.py), on this thread's torch threads
    previous = torch.get_float32_matmul_precision()
    if matmul_precision:  # "medium" is "highest" on CPUs without bf16 (runtime.py), as in fit
        applied = runtime.matmul_precision(matmul_precision, resolve_device(device))
        torch.set_float32_matmul_precision(applied)
    rows = []
    try:
        for name in models:
            if verbose:
                print(f"bench {name} ({size}, batch {batch})...", file=sys.stderr, flush=True)
            try:
                row = bench_model(name, size, batch, steps, warmup, train, device, amp)
                row["error"] = ""
                _release_freed_memory()
            except (RuntimeError, ValueError, KeyError) as err:
                if not _is_oom(err) and isinstance(err, KeyError):
                    raise  # an unknown model name: a usage error, not a result
                what = "out of memory" if _is_oom(err) else f"{type(err).__name__}: {err}"
                row = {"model": name, "size": size, "batch": batch, "error": what[:300]}
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            rows.append(row)
    finally:
        torch.set_float32_matmul_precision(previous)
    return pd.DataFrame(rows)


def format_table(df) -> str:
    """The readable subset of ``run``'s columns, numbers rounded, plus the run's facts."""
    cols = [c for c in TABLE if c in df.columns]
    if "error" in cols and not df["error"].astype(bool).any():
        cols.remove("error")
    shown = df[cols].copy()
    for col in shown.columns:
        if shown[col].dtype.kind == "f":
            digits = 2 if col.endswith("_m") else 1
            shown[col] = shown[col].map(lambda v, d=digits: "-" if math.isnan(v) else f"{v:.{d}f}")
        else:
            shown[col] = shown[col].fillna("-")
    if "error" in shown:
        shown["error"] = shown["error"].astype(str).str.slice(0, 70)
    ok = df[~df["error"].astype(bool)] if "error" in df else df
    facts = ""
    if len(ok) and "device_name" in ok:
        first = ok.iloc[0]
        facts = (
            f"\ndevice: {first['device']} ({first['device_name']}), torch {first['torch']}, "
            f"{int(first['threads'])} threads, matmul precision {first['matmul_precision']}, "
            f"amp {bool(first['amp'])}, median of {int(first['steps'])} steps after "
            f"{int(first['warmup'])} warm-up; memory: {first['memory_measure']}"
            "\nimg_s: images/second; fwd = no-grad inference, train = forward + Dice/BCE + "
            "backward + AdamW, cached = train step from cached frozen-encoder features; "
            "peak_mb: peak memory (MiB), train_extra_mb: increase during the train phase"
        )
    return shown.to_string(index=False) + facts


def _main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        df = run(
            args.models,
            size=args.size,
            batch=args.batch,
            steps=args.steps,
            warmup=args.warmup,
            train=args.train,
            device=args.device,
            matmul_precision=args.matmul_precision,
            amp=not args.no_amp,
            verbose=True,
        )
    except (KeyError, ValueError) as err:
        print(f"vlsm bench: {err}", file=sys.stderr)
        return 2
    print(format_table(df))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)
        print(args.out)
    return 1 if "error" in df and df["error"].astype(bool).any() else 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``bench`` to an argparse sub-parser collection; its handler is ``args.func``."""
    from vlsm_lib.models import SIZES, list_models

    p = subparsers.add_parser(
        "bench",
        help="throughput and peak memory of models (forward, training step)",
        description=(
            "Time each model's forward (no grad) and training step (forward, Dice+BCE, backward, "
            "AdamW) on random inputs at its input size, and measure peak memory. Run it on the "
            "GPU you will train on, at the batch size you will use, before launching a grid."
        ),
    )
    p.add_argument(
        "--models",
        nargs="+",
        choices=list_models(),
        metavar="NAME",
        help=f"models to time (default all): {', '.join(list_models())}",
    )
    p.add_argument("--size", choices=SIZES, default="paper", help="model size (default paper)")
    p.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per phase (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--train", metavar="POLICY", help="train policy (default: each model's own)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument(
        "--matmul-precision",
        choices=("highest", "high", "medium"),
        help="torch.set_float32_matmul_precision for the run (default: leave as is)",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-amp", action="store_true", help="no fp16 autocast on CUDA")
    p.add_argument("--out", metavar="CSV", help="also write every column to this CSV file")
    p.set_defaults(func=_main)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m vlsm_lib.bench [options]``: the same as ``vlsm bench [options]``."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models are built offline; never wait on the hub
    parser = argparse.ArgumentParser(prog="vlsm")
    add_parser(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
