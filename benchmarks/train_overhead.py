#!/usr/bin/env python
"""Overhead of ``fit``'s training loop, and the speed-up of the feature cache, as ratios.

Every claim is a ratio against a baseline measured in the same run, with the compared variants
interleaved (A B B A A B ...: each round alternates the order) and medians taken, so that noise
from other processes on a shared machine hits both sides alike.

(a) Loop overhead: ``vlsm_lib.train.fit`` against a bare loop (forward, Dice+BCE, zero_grad,
    backward, clip_grad_norm_, AdamW step) of the same model on the same batches, for tiny
    CLIPSeg (train="all", batch 16, 128 px) and paper-size CLIPSeg (train="decoder", batch 8,
    352 px, built from reproducible weights so that checkpoints hold only the decoder,
    feature_cache="off" so that both loops run the encoders).

    Per step, variants (each one epoch over the whole training set):
      fit          fit(max_epochs=1); the time of its ``_train_epoch`` call / steps (DataLoader
                   creation and batch loading, tqdm, isfinite, GradScaler calls, loss.item)
      fit_no_tqdm  the same with TrainConfig(progress=False)                     (tiny only)
      bare_loader  the bare loop fed by the same DataLoader (``train.loader``)   (tiny only)
      bare         the bare loop over batches loaded before timing
    Whole run: fit(max_epochs=E) (tiny 10, paper 3) timed end to end on datasets built afresh,
    so its first epoch decodes every image (optimiser set-up, per epoch: DataLoader + training
    steps, validation through a DataLoader, scheduler step, the copies of the checkpoint and of
    the train state (``train_state.pt`` at fit's default ``state_every_s``)) against
    the bare loop for the same E epochs, each epoch followed by a bare validation pass (no-grad
    forward, loss, per-image Dice); no files written, no scheduler. Two bare baselines: ``bare``
    on batches loaded before timing, and (tiny) ``bare_loader``, reading the same files through
    the same DataLoader from datasets built afresh, as fit does. Per step, the datasets' sample
    caches are warm (the state of every epoch after a run's first): the first epoch's decoding
    is counted in the whole run only.

(b) Feature cache: decoder-only training of paper CLIPSeg (batch 8, 352 px), seconds per step
    with feature_cache="memory" (epochs after the first, which fills the cache) against
    feature_cache="off", at matmul precision "medium" (the reference's; fit runs it as
    "highest" on a CPU without bf16 instructions), "highest", and "medium_forced" (torch's own
    "medium" even there).

``--quick`` runs tiny models only, with few steps (a smoke test, a minute or two).
Results: JSON at ``--out`` and a Markdown summary beside it (same name, ``.md``), printed too.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import datetime
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub lookup hangs offline

import numpy as np  # noqa: E402
import torch  # noqa: E402

import vlsm_lib.train as T  # noqa: E402
from vlsm_lib import runtime  # noqa: E402
from vlsm_lib.config import TrainConfig  # noqa: E402
from vlsm_lib.data.dataset import load_dataset  # noqa: E402
from vlsm_lib.data.synthetic import write_dataset  # noqa: E402
from vlsm_lib.losses import make_loss  # noqa: E402
from vlsm_lib.metrics import confusion, dice_from_counts  # noqa: E402
from vlsm_lib.models import create_model  # noqa: E402

TARGET, GOAL = 1.10, 1.05  # fit / bare per-step ratio: acceptable, aimed at
CACHE_TARGET = 10.0  # off / memory seconds per step
PROMPT = "p6"  # "one tiny pink oval polyp, located in top of the image": a real-length prompt
# Functions of fit's loop whose share of a profiled epoch is reported: (label, file part, name);
# file "~" is cProfile's for C functions, whose name is then matched by a part.
PROFILED = (
    ("DataLoader next batch (all data loading)", "torch/utils/data/dataloader.py", "__next__"),
    (
        "  dataset __getitem__ (read, decode, resize, tokenise)",
        "vlsm_lib/data/dataset.py",
        "__getitem__",
    ),
    ("    PNG open + decode (_open)", "vlsm_lib/data/dataset.py", "_open"),
    ("    Preprocess.image (resize, normalise)", "vlsm_lib/data/transforms.py", "image"),
    ("    Preprocess.text (tokenise)", "vlsm_lib/data/transforms.py", "text"),
    ("  default_collate", "torch/utils/data/_utils/collate.py", "default_collate"),
    ("DataLoader creation (train.loader)", "vlsm_lib/train.py", "loader"),
    ("to_device", "vlsm_lib/train.py", "to_device"),
    ("model forward (model_forward)", "vlsm_lib/train.py", "model_forward"),
    ("cached forward (FeatureCache.forward)", "vlsm_lib/features.py", "forward"),
    ("  cache lookup (FeatureCache.image + .text)", "vlsm_lib/features.py", ("image", "text")),
    ("  decoder + head (CLIPSeg.decode)", "vlsm_lib/models/clipseg.py", "decode"),
    ("  scaled_dot_product_attention forward", "~", "scaled_dot_product_attention"),
    ("loss (dice_bce_loss)", "vlsm_lib/losses.py", "dice_bce_loss"),
    ("torch.isfinite(loss) check", "~", "torch.isfinite"),
    ("backward", "torch/_tensor.py", "backward"),
    ("clip_grad_norm_", "torch/nn/utils/clip_grad.py", "clip_grad_norm_"),
    ("optimizer step (GradScaler.step)", "torch/amp/grad_scaler.py", "step"),
    (
        "GradScaler scale/unscale_/update",
        "torch/amp/grad_scaler.py",
        ("scale", "unscale_", "update"),
    ),
    ("zero_grad", "torch/optim/optimizer.py", "zero_grad"),
    ("Tensor.item() (every caller; loss.item() once a step)", "~", "method 'item' of"),
    ("tqdm: bar creation", "tqdm/std.py", "__init__"),
    ("tqdm: set_postfix (redraws the bar every step)", "tqdm/std.py", "set_postfix"),
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def med(xs) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


# ---------------------------------------------------------------------------- instrumentation


class FitProbe(contextlib.AbstractContextManager):
    """Times fit's internal calls by wrapping them in ``vlsm_lib.train`` (fit looks them up
    there at call time); with ``profile``, runs each ``_train_epoch`` under its own cProfile."""

    NAMES = ("_train_epoch", "validate", "save_checkpoint", "_save_state")

    def __init__(self, profile: bool = False):
        self.times: dict[str, list[float]] = defaultdict(list)
        self.profile = profile
        self.profiles: list[cProfile.Profile] = []  # one per _train_epoch call
        self.saved: dict[str, Callable] = {}

    def _wrap(self, name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            profile = None
            if self.profile and name == "_train_epoch":
                profile = cProfile.Profile()
                self.profiles.append(profile)
            t0 = time.perf_counter()
            if profile:
                profile.enable()
            try:
                return fn(*args, **kwargs)
            finally:
                if profile:
                    profile.disable()
                self.times[name].append(time.perf_counter() - t0)

        return wrapper

    def __enter__(self) -> FitProbe:
        for name in self.NAMES:
            self.saved[name] = getattr(T, name)  # AttributeError: train.py changed, update here
            setattr(T, name, self._wrap(name, self.saved[name]))
        return self

    def __exit__(self, *exc) -> None:
        for name, fn in self.saved.items():
            setattr(T, name, fn)


# ---------------------------------------------------------------------------- set-ups


@dataclasses.dataclass
class Setup:
    """One model + data + config of the overhead benchmark."""

    label: str
    model: torch.nn.Module
    train_set: object
    val_set: object
    cfg: TrainConfig
    variants: tuple[str, ...]
    rounds: int
    whole_rounds: int
    epochs: int
    whole_train: int | None = None  # training images of the whole run (None: all)
    notes: dict = dataclasses.field(default_factory=dict)

    @property
    def steps(self) -> int:
        return -(-len(self.train_set) // self.cfg.batch_size)

    @property
    def val_small(self):
        """One validation image: fit needs a validation set; per-step runs do not time it."""
        return torch.utils.data.Subset(self.val_set, [0])

    def params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]


def write_data(root: Path, size: int, n_train: int, n_val: int) -> Path:
    """MedShapes synth_polyp with the given split sizes (no test split)."""
    log(f"writing synth_polyp ({n_train} train, {n_val} val, {size} px) to {root}")
    with contextlib.redirect_stderr(open(os.devnull, "w")):  # the generator's tqdm bars
        write_dataset(
            "synth_polyp",
            root,
            seed=0,
            size=size,
            counts={"train": n_train, "val": n_val, "test": 0},
        )
    return root


def paper_clipseg(tmp: Path, train: str = "decoder"):
    """Paper CLIPSeg built like a real run: from reproducible weights (here saved random ones,
    offline), so that checkpoints store the trainable part only."""
    log("building paper CLIPSeg (random weights), saving it, rebuilding from the folder")
    net = create_model("clipseg", size="paper", weights=None).net
    net.save_pretrained(tmp / "clipseg_weights")
    del net
    return create_model("clipseg", size="paper", weights=str(tmp / "clipseg_weights"), train=train)


def datasets(root: Path, model):
    train = load_dataset(root, "synth_polyp", "train", model.preprocess, prompt=PROMPT)
    val = load_dataset(root, "synth_polyp", "val", model.preprocess, prompt=PROMPT)
    return train, val


# ---------------------------------------------------------------------------- loops


def preload(setup: Setup, dataset, epoch: int, shuffle: bool) -> list[dict]:
    """The batches ``fit`` draws at ``epoch`` (same seed, same order), loaded now."""
    return list(T.loader(dataset, setup.cfg, shuffle=shuffle, epoch=epoch))


def bare_steps(setup: Setup, batches, opt, loss_fn, limit: int | None = None) -> float:
    """The bare training loop over ``batches``; returns its wall time."""
    model, params, clip = setup.model, setup.params(), setup.cfg.grad_clip
    model.train()
    t0 = time.perf_counter()
    for step, batch in enumerate(batches):
        if limit is not None and step >= limit:
            break
        logits = T.model_forward(model, batch)
        loss = loss_fn(logits.float(), batch["mask"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
    return time.perf_counter() - t0


def make_opt(setup: Setup) -> torch.optim.Optimizer:
    return T.make_optimizer(setup.params(), setup.cfg)  # the same AdamW as fit's


@torch.no_grad()
def bare_validate(setup: Setup, batches, loss_fn) -> tuple[float, float]:
    """What ``validate`` computes, over preloaded batches."""
    model = setup.model
    model.eval()
    total, n, dices = 0.0, 0, []
    for batch in batches:
        logits = T.model_forward(model, batch).float()
        total += float(loss_fn(logits, batch["mask"])) * len(logits)
        n += len(logits)
        pred = (torch.sigmoid(logits) > model.threshold)[:, 0].numpy()
        tp, fp, fn, _ = confusion(pred, batch["mask"][:, 0].numpy() > 0.5)
        dices.extend(np.atleast_1d(dice_from_counts(tp, fp, fn)).tolist())
    return total / max(n, 1), float(np.mean(dices))


def fit_epoch(setup: Setup, progress: bool = True, probe: FitProbe | None = None) -> float:
    """Seconds per step of one fit epoch over the whole training set (its _train_epoch)."""
    cfg = dataclasses.replace(setup.cfg, max_epochs=1, progress=progress)
    probe = probe or FitProbe()
    with probe, tempfile.TemporaryDirectory() as run_dir:
        T.fit(setup.model, setup.train_set, setup.val_small, cfg, run_dir, resume=False)
    return probe.times["_train_epoch"][0] / setup.steps


def per_step(setup: Setup) -> dict:
    """Interleaved per-step timings of the variants; medians and ratios."""
    loss_fn = make_loss(setup.cfg.loss)
    batches = preload(setup, setup.train_set, epoch=0, shuffle=True)
    torch.set_float32_matmul_precision(setup.cfg.matmul_precision)
    run = {
        "fit": lambda: fit_epoch(setup, progress=setup.cfg.progress),
        "fit_no_tqdm": lambda: fit_epoch(setup, progress=False),
        "bare": lambda: bare_steps(setup, batches, make_opt(setup), loss_fn) / setup.steps,
        "bare_loader": lambda: (
            bare_steps(
                setup,
                T.loader(setup.train_set, setup.cfg, shuffle=True, epoch=0),
                make_opt(setup),
                loss_fn,
            )
            / setup.steps
        ),
    }
    names = list(setup.variants)
    log(f"[{setup.label}] warm-up")
    bare_steps(setup, batches[:1], make_opt(setup), loss_fn)
    if setup.notes.get("warmup_round"):
        for name in names:
            run[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(setup.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(run[name]())
        log(
            f"[{setup.label}] per-step round {r + 1}/{setup.rounds}: "
            + ", ".join(f"{n} {times[n][-1] * 1e3:.0f} ms" for n in names)
        )
    out = {"seconds_per_step": times, "median_s": {n: med(t) for n, t in times.items()}}
    m = out["median_s"]
    paired = [f / b for f, b in zip(times["fit"], times["bare"])]
    out["ratio_fit_vs_bare"] = m["fit"] / m["bare"]
    out["paired_ratio_median"] = med(paired)
    if "bare_loader" in m:
        out["ratio_bare_loader_vs_bare"] = m["bare_loader"] / m["bare"]
        out["ratio_fit_vs_bare_loader"] = m["fit"] / m["bare_loader"]
    if "fit_no_tqdm" in m:
        out["ratio_fit_vs_fit_no_tqdm"] = m["fit"] / m["fit_no_tqdm"]
    return out


def cold(dataset):
    """A new dataset over the same files: its sample cache empty, as at the start of a run."""
    if isinstance(dataset, torch.utils.data.Subset):
        return torch.utils.data.Subset(cold(dataset.dataset), dataset.indices)
    d = dataset
    return type(d)(d.root, d.name, d.split, d.preprocess, d.prompt, d.seed)


def whole_fit(setup: Setup) -> dict:
    cfg = dataclasses.replace(setup.cfg, max_epochs=setup.epochs, min_epochs=setup.epochs)
    train_set, val_set = cold(setup.train_set), cold(setup.val_set)
    with FitProbe() as probe, tempfile.TemporaryDirectory() as run_dir:
        t0 = time.perf_counter()
        result = T.fit(setup.model, train_set, val_set, cfg, run_dir, resume=False)
        total = time.perf_counter() - t0
        sizes = {p.name: p.stat().st_size for p in Path(run_dir).iterdir() if p.is_file()}
    parts = {name: sum(ts) for name, ts in probe.times.items()}
    # the writer thread's time overlaps training: reported, not subtracted
    parts["other"] = total - sum(parts.values())
    return {
        "total_s": total,
        "parts_s": parts,
        "calls": {name: len(ts) for name, ts in probe.times.items()},
        "files_bytes": sizes,
        "epochs": result.epochs_run,
    }


def whole_bare(setup: Setup, train_batches: Callable, val_batches: Callable) -> dict:
    """The bare loop for ``setup.epochs`` epochs, each followed by a bare validation pass;
    ``train_batches(epoch)`` and ``val_batches()`` give the batches (preloaded or a DataLoader)."""
    loss_fn = make_loss(setup.cfg.loss)
    t0 = time.perf_counter()
    opt = make_opt(setup)
    train_s = val_s = 0.0
    for epoch in range(setup.epochs):
        train_s += bare_steps(setup, train_batches(epoch), opt, loss_fn)
        t1 = time.perf_counter()
        bare_validate(setup, val_batches(), loss_fn)
        val_s += time.perf_counter() - t1
    total = time.perf_counter() - t0
    return {
        "total_s": total,
        "parts_s": {"train": train_s, "validate": val_s, "other": total - train_s - val_s},
    }


def whole_bare_loader(setup: Setup) -> dict:
    """The bare loop reading its data as fit does: datasets built afresh (the first epoch
    decodes every image; building them only lists the files), batches through ``train.loader``."""
    train_set, val_set = cold(setup.train_set), cold(setup.val_set)
    return whole_bare(
        setup,
        lambda epoch: T.loader(train_set, setup.cfg, shuffle=True, epoch=epoch),
        lambda: T.loader(val_set, setup.cfg, shuffle=False),
    )


def whole_run(setup: Setup) -> dict:
    if setup.whole_train:
        subset = torch.utils.data.Subset(setup.train_set, range(setup.whole_train))
        setup = dataclasses.replace(setup, train_set=subset)
    epoch_batches = [preload(setup, setup.train_set, e, True) for e in range(setup.epochs)]
    val_batches = preload(setup, setup.val_set, 0, False)
    names = (
        ("fit", "bare", "bare_loader") if setup.notes.get("whole_bare_loader") else ("fit", "bare")
    )
    runs = {name: [] for name in names}
    bare_validate(setup, val_batches, make_loss(setup.cfg.loss))  # warm-up: first eval pass
    for r in range(setup.whole_rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            if name == "fit":
                runs[name].append(whole_fit(setup))
            elif name == "bare":
                runs[name].append(whole_bare(setup, epoch_batches.__getitem__, lambda: val_batches))
            else:
                runs[name].append(whole_bare_loader(setup))
        log(
            f"[{setup.label}] whole run {r + 1}/{setup.whole_rounds}: "
            + ", ".join(f"{n} {runs[n][-1]['total_s']:.1f} s" for n in names)
        )
    fit_t = [x["total_s"] for x in runs["fit"]]
    out = {"runs": runs, "train_images": len(setup.train_set), "steps_per_epoch": setup.steps}
    out["fit_median_s"] = med(fit_t)
    for name in names[1:]:
        base = [x["total_s"] for x in runs[name]]
        suffix = "" if name == "bare" else f"_{name}"
        out[f"{name}_median_s"] = med(base)
        out[f"ratio{suffix}"] = med(fit_t) / med(base)
        out[f"paired_ratio_median{suffix}"] = med([f / b for f, b in zip(fit_t, base)])
    return out


def profile_epoch(setup: Setup) -> dict:
    """cProfile of one fit epoch (inside _train_epoch): the listed functions' cumulative time.

    cProfile slows Python-heavy code (data loading, tqdm) more than the C++ kernels, so shares
    here overstate them somewhat; the unprofiled ablations (bare_loader, fit_no_tqdm) do not."""
    probe = FitProbe(profile=True)
    per_step_s = fit_epoch(setup, progress=setup.cfg.progress, probe=probe)
    return summarise_profile(probe.profiles[0], per_step_s, setup.steps)


def summarise_profile(prof: cProfile.Profile, per_step_s: float, steps: int) -> dict:
    """Cumulative time per step of the ``PROFILED`` functions (those called at all)."""
    stats = pstats.Stats(prof).stats
    epoch = per_step_s * steps
    rows = []
    for label, file_part, names in PROFILED:
        names = (names,) if isinstance(names, str) else names
        calls, cum = 0, 0.0
        for (filename, _, func), (_, ncalls, _, ct, _) in stats.items():
            if file_part == "~":  # a C function: match a part of its name
                hit = filename == "~" and any(n in func for n in names)
            else:
                hit = file_part in filename and func in names
            if hit:
                calls, cum = calls + ncalls, cum + ct
        if not calls:
            continue
        rows.append(
            {
                "what": label,
                "calls": calls,
                "ms_per_step": cum / steps * 1e3,
                "share": cum / epoch if epoch else float("nan"),
            }
        )
    return {"profiled_s_per_step": per_step_s, "rows": rows}


# ---------------------------------------------------------------------------- feature cache


def decoder_steps(model, feats, text, mask, params, opt, loss_fn, clip, steps) -> float:
    """Seconds per step of the bare decoder-only step on precomputed features: decode, loss,
    backward, clip, AdamW. The floor of a cached step (no data loading, no cache lookup)."""
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        logits = model.decode(feats, text, tuple(mask.shape[-2:]))
        loss = loss_fn(logits.float(), mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
    return (time.perf_counter() - t0) / steps


def op_table(fn, top: int = 8) -> list[dict]:
    """torch.profiler: the ``top`` operators by self CPU time over ``fn()``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [
        {
            "op": e.key,
            "calls": e.count,
            "self_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total,
        }
        for e in events[:top]
    ]


def cache_bench(
    model,
    train_set,
    val_set,
    cfg: TrainConfig,
    precisions,
    rounds: int,
    cached_epochs: int,
    label: str,
) -> dict:
    """Seconds per step, feature_cache off vs memory (after the filling epoch), per precision,
    interleaved with the bare decoder step on precomputed features (the floor of a cached
    step); then a cProfile of one cached fit epoch and an operator profile of the decoder step.
    """
    steps = -(-len(train_set) // cfg.batch_size)
    val_small = torch.utils.data.Subset(val_set, [0])
    loss_fn = make_loss(cfg.loss)
    params = [p for p in model.parameters() if p.requires_grad]
    batch = next(iter(T.loader(train_set, cfg, shuffle=True)))
    with torch.no_grad():
        feats = [f.float() for f in model.encode_image(batch["pixel_values"])]
        text = model.encode_text(batch["input_ids"], batch["attention_mask"]).float()

    def decoder(n=steps):
        opt = T.make_optimizer(params, cfg)
        return decoder_steps(
            model, feats, text, batch["mask"], params, opt, loss_fn, cfg.grad_clip, n
        )

    def fit_run(mode: str, epochs: int, probe: FitProbe):
        run_cfg = dataclasses.replace(cfg, feature_cache=mode, max_epochs=epochs, min_epochs=epochs)
        with probe, tempfile.TemporaryDirectory() as run_dir:
            result = T.fit(model, train_set, val_small, run_cfg, run_dir, resume=False)
        if mode == "memory" and result.cache != "memory":
            raise RuntimeError(f"feature cache not used (cache={result.cache!r})")
        return [t / steps for t in probe.times["_train_epoch"]]

    decoder(1)  # warm-up
    out = {}
    for precision in precisions:
        # "medium_forced": torch's own "medium" even where fit would apply "highest" (a CPU
        # without bf16 instructions, vlsm_lib.runtime.matmul_precision): measures that choice
        requested, forced = precision.removesuffix("_forced"), precision.endswith("_forced")
        applied = requested if forced else runtime.matmul_precision(requested, "cpu")
        cfg = dataclasses.replace(cfg, matmul_precision=requested)
        torch.set_float32_matmul_precision(applied)  # for the decoder step; fit sets its own
        as_asked = mock.patch.object(runtime, "matmul_precision", lambda asked, device: asked)
        got = {"off": [], "memory": [], "fill": [], "decoder": []}
        for r in range(rounds):
            order = ("off", "memory", "decoder")
            for name in order if r % 2 == 0 else order[::-1]:
                with as_asked if forced else contextlib.nullcontext():
                    if name == "off":
                        got["off"].append(fit_run("off", 1, FitProbe())[0])
                    elif name == "memory":
                        per = fit_run("memory", 1 + cached_epochs, FitProbe())
                        got["fill"].append(per[0])
                        got["memory"].append(med(per[1:]))
                    else:
                        got["decoder"].append(decoder())
            log(
                f"[{label}] cache, precision {precision}, round {r + 1}/{rounds}: off "
                f"{got['off'][-1]:.3f} s/step, memory {got['memory'][-1]:.3f} (fill "
                f"{got['fill'][-1]:.3f}), bare decoder step {got['decoder'][-1]:.3f}"
            )
        m = {k: med(v) for k, v in got.items()}
        out[precision] = {
            "requested": requested,
            "applied": applied,
            **{f"{k}_s_per_step": v for k, v in got.items()},
            **{f"{k}_median_s": v for k, v in m.items()},
            "speedup": m["off"] / m["memory"],
            "speedup_bound": m["off"] / m["decoder"],
            "memory_vs_decoder": m["memory"] / m["decoder"],
        }
    log(f"[{label}] profiling a cached epoch (cProfile) and the decoder step (torch.profiler)")
    probe = FitProbe(profile=True)
    per = fit_run("memory", 2, probe)
    profiles = {
        "matmul_precision": cfg.matmul_precision,
        "cached_epoch": summarise_profile(probe.profiles[1], per[1], steps),
        "decoder_ops": op_table(lambda: decoder(2)),
        "decoder_ops_steps": 2,
    }
    return {"results": out, "profiles": profiles}


# ---------------------------------------------------------------------------- report


def machine() -> dict:
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in open("/proc/cpuinfo")
                if ln.startswith("model name")
            ),
            "",
        )
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu or platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def verdict(ratio: float) -> str:
    if ratio <= GOAL:
        return f"meets the goal (<= {GOAL})"
    if ratio <= TARGET:
        return f"within the target (<= {TARGET}), above the goal ({GOAL})"
    return f"ABOVE the target ({TARGET})"


def _fmt(values: dict, key: str) -> str:
    return f"{values[key]:.4f}" if key in values else "-"


def _median_parts(runs: list[dict]) -> dict:
    keys = runs[0]["parts_s"]
    return {k: med([r["parts_s"][k] for r in runs]) for k in keys}


def _profile_table(title: str, p: dict) -> list[str]:
    lines = [
        "",
        f"### cProfile of {title}: {p['profiled_s_per_step'] * 1e3:.0f} ms/step under the "
        "profiler (indented rows are part of the row above)",
        "",
        "| function | calls | ms/step | share of epoch |",
        "|---|---|---|---|",
    ]
    for row in p["rows"]:
        what = row["what"].replace("  ", "&nbsp;&nbsp;")
        lines.append(f"| {what} | {row['calls']} | {row['ms_per_step']:.1f} | {row['share']:.1%} |")
    return lines


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        f"# fit loop overhead and feature cache ({'quick' if res['quick'] else 'full'} run)",
        "",
        f"{m['date']}, {m['cpu']} ({m['cpu_count']} cores), torch {m['torch']}, "
        f"{m['torch_threads']} threads; load average at start {m['loadavg_start']}, at end "
        f"{m.get('loadavg_end')}. Other processes may have run concurrently: compare ratios "
        "(measured interleaved, medians), not absolute times. Command: "
        f"`{res['command']}`; {res['wall_s']:.0f} s in all.",
        "",
        "## (a) per step: fit's loop against a bare loop (median s/step)",
        "",
        "| setup | steps/epoch x rounds | fit | bare | fit / bare | paired median | "
        "bare_loader | fit_no_tqdm | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, o in res["overhead"].items():
        s = o["per_step"]
        md = s["median_s"]
        lines.append(
            f"| {label} | {o['steps_per_epoch']} x {o['rounds']} | {md['fit']:.4f} | "
            f"{md['bare']:.4f} | **{s['ratio_fit_vs_bare']:.3f}** | "
            f"{s['paired_ratio_median']:.3f} | {_fmt(md, 'bare_loader')} | "
            f"{_fmt(md, 'fit_no_tqdm')} | "
            f"{verdict(s['ratio_fit_vs_bare'])} |"
        )
    lines += ["", "Decomposition (ratios of medians, same run):", ""]
    for label, o in res["overhead"].items():
        s = o["per_step"]
        if "ratio_bare_loader_vs_bare" in s:
            lines.append(
                f"- {label}: data loading (bare_loader / bare) "
                f"**{s['ratio_bare_loader_vs_bare']:.3f}**; the rest of fit's loop "
                f"(fit / bare_loader) **{s['ratio_fit_vs_bare_loader']:.3f}**; tqdm "
                f"(fit / fit_no_tqdm) **{s['ratio_fit_vs_fit_no_tqdm']:.3f}**."
            )
    lines += [
        "",
        "## (a) whole run: fit(max_epochs=E) against E bare epochs + bare validation (s, median)",
        "",
        "bare: batches loaded before timing; bare_loader (tiny): the bare loop reading the same "
        "files through the same DataLoader from datasets built afresh, as fit does.",
        "",
        "| setup | train images x epochs | fit | bare | fit / bare | paired median | bare_loader | "
        "fit / bare_loader (paired) | fit: train / validate / checkpoint / state / other | "
        "bookkeeping share | bare: train / validate | files written by fit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, o in res["overhead"].items():
        w = o["whole_run"]
        fp, bp = _median_parts(w["runs"]["fit"]), _median_parts(w["runs"]["bare"])
        # what fit does besides training and validating: checkpoint, state file, scheduler...
        book = med(
            [
                (
                    r["parts_s"].get("save_checkpoint", 0)
                    + r["parts_s"].get("_save_state", 0)
                    + r["parts_s"]["other"]
                )
                / r["total_s"]
                for r in w["runs"]["fit"]
            ]
        )
        files = ", ".join(
            f"{k} {v / 1e6:.2f} MB" for k, v in sorted(w["runs"]["fit"][0]["files_bytes"].items())
        )
        lines.append(
            f"| {label} | {w['train_images']} x {w['runs']['fit'][0]['epochs']} | "
            f"{w['fit_median_s']:.2f} | {w['bare_median_s']:.2f} | **{w['ratio']:.3f}** | "
            f"{w['paired_ratio_median']:.3f} | "
            + (
                f"{w['bare_loader_median_s']:.2f} | **{w['ratio_bare_loader']:.3f}** "
                f"({w['paired_ratio_median_bare_loader']:.3f}) | "
                if "ratio_bare_loader" in w
                else "- | - | "
            )
            + f"{fp.get('_train_epoch', 0):.2f} / "
            f"{fp.get('validate', 0):.2f} / {fp.get('save_checkpoint', 0):.3f} / "
            f"{fp.get('_save_state', 0):.3f} ({w['runs']['fit'][0]['calls'].get('_save_state', 0)}"
            f" writes) / {fp['other']:.3f} | {book:.2%} | "
            f"{bp['train']:.2f} / "
            f"{bp['validate']:.2f} | {files} |"
        )
    for label, o in res["overhead"].items():
        if "profile" in o:
            lines += _profile_table(f"one fit epoch, {label}", o["profile"])
    if res.get("cache"):
        c = res["cache"]
        lines += [
            "",
            f"## (b) feature cache: {c['label']}, {c['train_images']} training images "
            "(s/step, median)",
            "",
            "off and memory: fit's _train_epoch time / steps (memory: the epochs after the first, "
            "which fills the cache); decoder: the bare decoder-only step on precomputed features "
            "(decode, loss, backward, clip, AdamW; no data loading), the floor of a cached step.",
            "",
            "Precision: asked for (TrainConfig.matmul_precision) -> applied "
            '(vlsm_lib.runtime.matmul_precision: "highest" for reduced precisions on a CPU '
            'without bf16 instructions); medium_forced: torch\'s own "medium" regardless.',
            "",
            "| matmul precision | off | memory | fill epoch | decoder | **off / memory** | "
            "off / decoder (bound) | memory / decoder |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for precision, r in c["results"].items():
            shown = f"{precision} -> {r.get('applied', precision)}"
            lines.append(
                f"| {shown} | {r['off_median_s']:.3f} | {r['memory_median_s']:.3f} | "
                f"{r['fill_median_s']:.3f} | {r['decoder_median_s']:.3f} | "
                f"**{r['speedup']:.2f}x** | {r['speedup_bound']:.2f}x | "
                f"{r['memory_vs_decoder']:.2f} |"
            )
        prof = c["profiles"]
        lines += _profile_table(
            f"one cached fit epoch (feature_cache=memory, {prof['matmul_precision']})",
            prof["cached_epoch"],
        )
        lines += [
            "",
            f"### torch.profiler of {prof['decoder_ops_steps']} bare decoder steps: top "
            "operators by self CPU time",
            "",
            "| operator | calls | self ms | share |",
            "|---|---|---|---|",
        ]
        for op in prof["decoder_ops"]:
            lines.append(
                f"| {op['op']} | {op['calls']} | {op['self_ms']:.0f} | {op['share']:.1%} |"
            )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny models only, few steps: a smoke run of a minute or two",
    )
    parser.add_argument(
        "--out",
        default="outputs/benchmarks/train_overhead.json",
        help="JSON results (the Markdown summary goes beside it, .md)",
    )
    parser.add_argument("--rounds", type=int, help="per-step rounds (default 7 tiny, 3 paper)")
    parser.add_argument("--cache-rounds", type=int, help="feature-cache rounds (default 2)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument(
        "--skip-paper-overhead", action="store_true", help="paper size: only the feature-cache part"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    res = {
        "quick": args.quick,
        "machine": machine(),
        "overhead": {},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    with tempfile.TemporaryDirectory(prefix="train_overhead_") as tmp_name:
        tmp = Path(tmp_name)
        # ---- tiny CLIPSeg, train="all", batch 16, 128 px
        n_train = 32 if args.quick else 64
        write_data(tmp / "d128", 128, n_train, 8)
        tiny = create_model("clipseg", size="tiny", train="all")
        train_set, val_set = datasets(tmp / "d128", tiny)
        setups = [
            Setup(
                "tiny CLIPSeg, all, b16, 128px",
                tiny,
                train_set,
                val_set,
                TrainConfig(batch_size=16, feature_cache="off"),
                ("fit", "bare", "bare_loader", "fit_no_tqdm"),
                rounds=args.rounds or (2 if args.quick else 7),
                whole_rounds=1 if args.quick else 3,
                epochs=2 if args.quick else 10,
                notes={"warmup_round": True, "profile": True, "whole_bare_loader": True},
            )
        ]
        paper = None
        if not args.quick:
            write_data(tmp / "d352", 352, 24, 8)
            paper = paper_clipseg(tmp)
            p_train, p_val = datasets(tmp / "d352", paper)
            if not args.skip_paper_overhead:
                setups.append(
                    Setup(
                        "paper CLIPSeg, decoder, b8, 352px, cache off",
                        paper,
                        p_train,
                        p_val,
                        TrainConfig(batch_size=8, feature_cache="off"),
                        ("fit", "bare"),
                        rounds=args.rounds or 3,
                        whole_rounds=2,
                        epochs=3,
                        whole_train=16,
                    )
                )
        for setup in setups:
            o = {
                "model": setup.model.describe(),
                "steps_per_epoch": setup.steps,
                "batch": setup.cfg.batch_size,
                "rounds": setup.rounds,
                "train_images": len(setup.train_set),
                "val_images": len(setup.val_set),
                "config": setup.cfg.to_dict(),
            }
            o["per_step"] = per_step(setup)
            o["whole_run"] = whole_run(setup)
            if setup.notes.get("profile") or o["per_step"]["ratio_fit_vs_bare"] > TARGET:
                log(f"[{setup.label}] profiling one fit epoch")
                o["profile"] = profile_epoch(setup)
            res["overhead"][setup.label] = o
        # ---- feature cache
        if args.quick:
            model = create_model("clipseg", size="tiny", train="decoder")
            c_train, c_val = datasets(tmp / "d128", model)
            label, cfg, cached_epochs = (
                "tiny CLIPSeg, decoder, b16, 128px",
                TrainConfig(batch_size=16),
                2,
            )
        else:
            model, c_train, c_val = paper, p_train, p_val
            label, cfg, cached_epochs = (
                "paper CLIPSeg, decoder, b8, 352px",
                TrainConfig(batch_size=8),
                4,
            )
        log(f"[{label}] feature cache")
        res["cache"] = {
            "label": label,
            "train_images": len(c_train),
            "batch": cfg.batch_size,
            "cached_epochs": cached_epochs,
            **cache_bench(
                model,
                c_train,
                c_val,
                cfg,
                ("medium", "highest", "medium_forced"),
                args.cache_rounds or (1 if args.quick else 2),
                cached_epochs,
                label,
            ),
        }
    res["machine"]["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    res["wall_s"] = time.perf_counter() - t_start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str))
    text = markdown(res)
    out.with_suffix(".md").write_text(text)
    print(text)
    print(f"written: {out}, {out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
