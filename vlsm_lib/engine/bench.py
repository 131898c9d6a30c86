"""``vlsm bench``: throughput and peak memory of each model before launching a training grid.

Each model, with random weights (offline: pretrained shapes, not their values), runs on random
inputs at its input size with tokenised prompts, one step at a time, in phases: ``fwd``
(``eval()``, ``no_grad``), ``train`` (``train.step``, the step ``fit`` takes; fp16 autocast and
GradScaler on CUDA with ``amp``) and, for frozen encoders (``model.cacheable()``), ``cached``
(the same step from precomputed encoder outputs, as ``fit`` with its feature cache filled).
Throughput: ``batch / median step time`` over ``steps`` steps after ``warmup`` untimed ones.
Peak memory covers the whole phase, warm-up (optimiser state) included: on CUDA
``max_memory_allocated``; on a Linux CPU the process's peak RSS (``VmHWM``, reset through
``/proc/self/clear_refs``: exact, Python and libraries included); elsewhere NaN, method
"unavailable". ``*_extra_mb``: the peak above the memory in use when the phase began. Data
loading is not measured (see ``benchmarks/``). The command line is in ``cli.py``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import pandas as pd
import torch

from vlsm_lib.engine import runtime
from vlsm_lib.engine.config import TrainConfig
from vlsm_lib.engine.train import autocast, make_step_setup, step
from vlsm_lib.models import create_model, list_models

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
TABLE = (  # the printed columns (the DataFrame and the CSV hold every key)
    "model size train batch image_size trainable_m params_m fwd_img_s train_img_s cached_img_s "
    "fwd_peak_mb train_peak_mb train_extra_mb cached_peak_mb error"
).split()


def _status_bytes(key: str) -> int | None:
    """Linux: a ``Vm...`` line of /proc/self/status (kB there) in bytes; None elsewhere."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    return None


def _release_freed_memory() -> None:
    """Collect garbage and hand freed heap memory back to the OS (glibc only; else a no-op)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # OSError: no glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextlib.contextmanager
def peak_memory(device: torch.device):
    """Peak memory over a ``with`` block (see the module docstring): yields a dict that holds,
    after the block, ``peak`` (bytes, absolute), ``extra`` (bytes above the start), NaN where
    unmeasurable, and ``method``."""
    got = {"peak": math.nan, "extra": math.nan, "method": "unavailable"}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start, got["method"] = torch.cuda.memory_allocated(device), "cuda max_memory_allocated"
    else:
        _release_freed_memory()
        start = _status_bytes("VmRSS") or 0
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the kernel resets VmHWM to the current RSS
            f.flush()
            got["method"] = "cpu rss (VmHWM)" if _status_bytes("VmHWM") else "unavailable"
    yield got
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        got["peak"] = torch.cuda.max_memory_allocated(device)
    elif got["method"] != "unavailable":
        got["peak"] = _status_bytes("VmHWM") or math.nan
    if not math.isnan(got["peak"]):
        got["extra"] = max(got["peak"] - start, 0)


def make_inputs(model, batch: int, device: torch.device, seed: int = 0) -> dict:
    """A random batch for ``model``: pixel_values (B, 3, H, W) normal, mask (B, 1, H, W) in
    {0, 1}, input_ids / attention_mask (B, L) of tokenised prompts (None for image-only models)."""
    g = torch.Generator().manual_seed(seed)
    h, w = model.preprocess.image_size
    inputs = {"pixel_values": torch.randn(batch, 3, h, w, generator=g), "input_ids": None}
    inputs["mask"] = (torch.rand(batch, 1, h, w, generator=g) < 0.3).float()
    inputs["attention_mask"] = None
    if model.preprocess.tokenizer is not None:
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
        inputs["input_ids"], inputs["attention_mask"] = model.preprocess.text(prompts)
    return {k: v.to(device) if v is not None else None for k, v in inputs.items()}


def _phase(fn: Callable[[], object], steps: int, warmup: int, batch: int, device) -> dict:
    """Warm up, time ``steps`` calls of ``fn`` (CUDA synchronised around each), and measure the
    peak memory over both."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda _: None
    times = []
    with peak_memory(device) as mem:
        for i in range(warmup + steps):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    out = {"step_ms": median * 1e3, "img_s": batch / median, "memory_measure": mem["method"]}
    return {**out, "peak_mb": mem["peak"] / 2**20, "extra_mb": mem["extra"] / 2**20}


def measure(model, batch: int = 8, steps: int = 5, warmup: int = 2, cfg=None) -> dict:
    """{phase: {step_ms, img_s, peak_mb, extra_mb, memory_measure}} of ``model`` on its device.

    ``cfg`` (default ``TrainConfig(lr=1e-4)``) sets the step's optimiser, loss, gradient clip
    and amp, as in ``fit``. The train and cached phases really train ``model``.
    """
    cfg = cfg or TrainConfig(lr=1e-4)
    device = model.device
    x = make_inputs(model, batch, device)
    setup = make_step_setup((p for p in model.parameters() if p.requires_grad), cfg, device)

    def infer():
        with torch.no_grad(), autocast(setup.amp):
            model.forward_batch(x)

    model.eval()
    results = {"fwd": _phase(infer, steps, warmup, batch, device)}
    model.train()
    train = lambda: step(model.forward_batch, x, setup)
    results["train"] = _phase(train, steps, warmup, batch, device)
    if model.cacheable():
        with torch.no_grad(), autocast(setup.amp):
            feats = model.encode_image(x["pixel_values"])
            text = model.encode_text(x["input_ids"], x["attention_mask"])
        # the cache stores float32 features, as FeatureCache does
        feats, text = [f.float() for f in feats], text.float()
        size = tuple(x["pixel_values"].shape[-2:])
        decode = lambda _: model.decode(feats, text, size)
        results["cached"] = _phase(lambda: step(decode, x, setup), steps, warmup, batch, device)
    return results


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
    matmul_precision: str | None = None,
) -> dict:
    """Throughput and peak memory of one model (``measure``) as a flat dict: what was measured
    (model, size, train, batch, image_size, params, trainable_params, params_m, trainable_m,
    device, device_name, torch, threads, amp, steps, warmup), the settings in force (the applied
    matmul_precision; cpu_tuning, flush_denormal, malloc from ``runtime.apply``) and, per phase,
    ``<phase>_img_s``, ``_step_ms``, ``_peak_mb``, ``_extra_mb`` (NaN for a phase not run), plus
    ``memory_measure``. ``matmul_precision`` (None: as it is) is set for the call, then restored.
    """
    if batch < 1 or steps < 1 or warmup < 0:
        raise ValueError("batch and steps must be >= 1 and warmup >= 0")
    tuning = runtime.apply()  # fit's CPU settings (runtime.py), on this thread's torch threads
    device = runtime.pick_device(device)
    cuda = device.type == "cuda"
    previous = torch.get_float32_matmul_precision()
    if matmul_precision:  # "medium" runs as "highest" on CPUs without bf16, as in fit
        torch.set_float32_matmul_precision(runtime.matmul_precision(matmul_precision, device))
    try:
        model = create_model(name, size=size, weights=None, train=train).to(device)
        facts, precision = model.describe(), torch.get_float32_matmul_precision()
        row = dict(model=name, size=size, train=model.policy, batch=batch, steps=steps)
        row.update(warmup=warmup, image_size="x".join(map(str, model.preprocess.image_size)))
        row.update(params=facts["params"], trainable_params=facts["trainable_params"])
        row.update(params_m=facts["params"] / 1e6, trainable_m=facts["trainable_params"] / 1e6)
        row.update(device=device.type, device_name=runtime.device_name(device))
        row.update(torch=torch.__version__, threads=torch.get_num_threads(), amp=amp and cuda)
        row.update(matmul_precision=precision, cpu_tuning=tuning["enabled"])
        row.update(flush_denormal=tuning["flush_denormal"], malloc=tuning["malloc"])
        results = measure(model, batch, steps, warmup, TrainConfig(lr=lr, amp=amp))
    finally:
        torch.set_float32_matmul_precision(previous)
    for phase in PHASES:
        got = results.get(phase, {})
        for key in ("img_s", "step_ms", "peak_mb", "extra_mb"):
            row[f"{phase}_{key}"] = got.get(key, math.nan)
    row["memory_measure"] = results["fwd"]["memory_measure"]
    return row


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def run(models: Sequence[str] | None = None, verbose: bool = False, **kwargs):
    """``bench_model(name, **kwargs)`` over ``models`` (default: every registered one) -> a
    DataFrame, one row per model. A model that fails (out of memory, a train policy it does not
    offer...) gets a row with its ``error`` and the others still run; an unknown name raises."""
    rows = []
    for name in list(models or list_models()):
        if verbose:
            print(f"bench {name} ...", file=sys.stderr, flush=True)
        try:
            row = {**bench_model(name, **kwargs), "error": ""}
        except (RuntimeError, ValueError, KeyError) as err:
            if not _is_oom(err) and isinstance(err, KeyError):
                raise  # an unknown model name: a usage error, not a result
            what = "out of memory" if _is_oom(err) else f"{type(err).__name__}: {err}"
            row = {"model": name, "error": what[:300]}
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        rows.append(row)
    return pd.DataFrame(rows)


def format_table(df) -> str:
    """The readable subset of ``run``'s columns, numbers rounded, plus the run's facts."""
    cols = [c for c in TABLE if c in df and (c != "error" or df[c].astype(bool).any())]
    shown = df[cols].round({c: 2 if c.endswith("_m") else 1 for c in cols})
    text = shown.to_string(index=False, na_rep="-", max_colwidth=70)
    ok = df[~df["error"].astype(bool)] if "error" in df else df
    if not len(ok) or "device_name" not in ok:
        return text
    first = ok.iloc[0]
    return text + (
        f"\ndevice: {first['device']} ({first['device_name']}), torch {first['torch']}, "
        f"matmul precision {first['matmul_precision']}, amp {bool(first['amp'])}, median of "
        f"{int(first['steps'])} steps after {int(first['warmup'])} warm-up; memory: "
        f"{first['memory_measure']}\nimg_s: images/s; fwd: no-grad inference; train: train.step; "
        "cached: the step from cached frozen-encoder features; peak_mb: peak memory (MiB); "
        "train_extra_mb: its increase during the train phase"
    )


def read_csv(files) -> pd.DataFrame:
    """One table of ``vlsm bench --out`` files (a path or several), e.g. for ``estimate``."""
    files = [files] if isinstance(files, str) or hasattr(files, "suffix") else list(files)
    df = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    lacking = [c for c in ("model", "fwd_img_s", "train_img_s") if c not in df]
    if lacking:
        raise ValueError(
            f"{' '.join(map(str, files))}: no column(s) {lacking}; write bench files with "
            "`vlsm bench --out FILE.csv`"
        )
    return df


def usable(df, model: str):
    """The rows of ``model`` that hold numbers (no ``error``)."""
    ok = df["error"].isna() | (df["error"].astype(str) == "") if "error" in df else True
    return df[(df["model"] == model) & ok]


def check_models(df, models, size="paper", source="FILE.csv") -> None:
    """ValueError naming the ``models`` without a usable row and the command that measures
    them."""
    missing = [m for m in models if usable(df, m).empty]
    if missing:
        failed = [m for m in missing if (df["model"] == m).any()]
        why = f" (their rows hold an error: {', '.join(failed)})" if failed else ""
        raise ValueError(
            f"the bench file {source} has no usable row for model(s) {', '.join(missing)}{why}; "
            f"measure them on your GPU: vlsm bench --models {' '.join(missing)} --size {size} "
            f"--device cuda --out FILE, then pass both files: --bench {source} FILE"
        )


def load(files, models, size="paper") -> pd.DataFrame:
    """The bench table of ``models``: ``files`` read (``read_csv``), or, without files, ``run``
    now on this machine's device; checked (``check_models``); ``attrs["source"]``: which."""
    if files:
        df, source = read_csv(files), " ".join(map(str, files))
    else:
        df = run(models, verbose=True, size=size)
        names = df["device_name"].dropna() if "device_name" in df else []
        source = f"measured now ({names.iloc[0]})" if len(names) else "measured now"
    check_models(df, models, size, source)
    df.attrs["source"] = source
    return df
