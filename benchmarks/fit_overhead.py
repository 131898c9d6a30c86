#!/usr/bin/env python
"""Overhead of ``fit``'s loop: fit against a bare loop of ``train.step``, as ratios.

Both loops take the same step (``train.step``: forward, Dice+BCE, finiteness check, zero_grad,
backward, clip_grad_norm_, AdamW), so the ratio is the cost of the loop around it. Setups: tiny
CLIPSeg (train="all", batch 16, 128 px) and paper CLIPSeg (train="decoder", batch 8, 352 px,
built from reproducible weights so that checkpoints hold only the decoder; feature_cache="off"
so that both loops run the encoders). Variants are interleaved (common.py), medians taken.

Per step, variants (each one epoch over the whole training set):
  fit          fit(max_epochs=1): its history row's train_seconds / steps (DataLoader creation
               and batch loading, tqdm, loss.item; validation, one image, is not counted)
  fit_no_tqdm  the same with TrainConfig(progress=False)                   (tiny only)
  bare_loader  the bare loop fed by the same DataLoader (train.loader)     (tiny only)
  bare         the bare loop over batches loaded before timing
The datasets' sample caches are warm (the state of every epoch after a run's first). fit's own
history rows also say how long its steps took (step_seconds): train_seconds - step_seconds is
the loop's cost measured inside one run, free of the drift between rounds that the ratio of
two separately timed loops carries (at paper size the frozen encoder's forward, seconds long,
varies by 10-20 % between rounds on a shared VM).

Whole run: fit(max_epochs=E) (tiny 10, paper 3 on 16 training images) end to end on datasets
built afresh, so that its first epoch decodes every image (optimiser set-up; per epoch the
DataLoader and steps, validation through a DataLoader, scheduler step; RAM copies of improving
weights; checkpoint and train state written at fit's default state_every_s and at the end),
against E bare epochs each followed by a bare validation pass (no-grad forward, loss, per-image
Dice), no scheduler, no files: ``bare`` on batches loaded before timing, and (tiny)
``bare_loader`` reading the same files through the same DataLoader from datasets built afresh.
fit's parts come from its history rows: train (train_seconds), validate (val_seconds), other
(the rest: set-up, scheduler, weight copies, file writes).

--quick: tiny CLIPSeg only, 32 images, 2 rounds, 2-epoch runs (a minute or two).
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import common
import torch
from common import log, med

from vlsm_lib.engine import runtime, train
from vlsm_lib.engine.config import TrainConfig
from vlsm_lib.engine.losses import make_loss
from vlsm_lib.models import create_model

TARGET, GOAL = 1.10, 1.05  # fit / bare per step: acceptable, aimed at
PAIRS = (("fit", "bare"), ("bare_loader", "bare"), ("fit", "bare_loader"), ("fit", "fit_no_tqdm"))


@dataclasses.dataclass
class Setup:
    """One model + data + config of the benchmark."""

    label: str
    model: torch.nn.Module
    train_set: object
    val_set: object
    cfg: TrainConfig
    variants: tuple[str, ...]  # per-step variants
    rounds: int
    whole_rounds: int
    epochs: int  # of the whole run
    whole_train: int | None = None  # training images of the whole run (None: all)
    tiny: bool = False  # a warm-up round first; whole run also against bare_loader

    @property
    def steps(self) -> int:
        return -(-len(self.train_set) // self.cfg.batch_size)


def fit_epoch(setup: Setup, progress: bool, loops: list[float] | None = None) -> float:
    """Seconds per step of one fit epoch over the whole training set (one validation image);
    appends to ``loops`` the seconds per step fit spent outside ``train.step``."""
    cfg = dataclasses.replace(setup.cfg, max_epochs=1, progress=progress)
    val_small = torch.utils.data.Subset(setup.val_set, [0])
    result, _, _ = common.run_fit(setup.model, setup.train_set, val_small, cfg)
    row = result.history[0]
    if loops is not None:
        loops.append((row["train_seconds"] - row["step_seconds"]) / row["steps"])
    return common.per_step_s(result)[0]


def per_step(setup: Setup) -> dict:
    """Interleaved per-step timings of the variants; medians and ratios."""
    batches = common.preload(setup.train_set, setup.cfg)
    model, cfg = setup.model, setup.cfg
    torch.set_float32_matmul_precision(runtime.matmul_precision(cfg.matmul_precision, "cpu"))

    def bare(loaded: bool = True) -> float:
        source = batches if loaded else train.loader(setup.train_set, cfg, shuffle=True)
        return common.bare_steps(model, source, common.step_setup(model, cfg)) / setup.steps

    loops: list[float] = []  # fit's seconds per step outside train.step, each round
    run: dict[str, Callable[[], float]] = {
        "fit": lambda: fit_epoch(setup, cfg.progress, loops),
        "fit_no_tqdm": lambda: fit_epoch(setup, False),
        "bare": bare,
        "bare_loader": lambda: bare(False),
    }
    variants = {name: run[name] for name in setup.variants}
    log(f"[{setup.label}] warm-up")
    common.bare_steps(model, batches[:1], common.step_setup(model, cfg))
    if setup.tiny:
        for fn in variants.values():
            fn()
    times = common.interleave(variants, setup.rounds, f"{setup.label}, s/step")
    loop = med(loops[-setup.rounds :])  # the rounds' own (the tiny warm-up round ran fit too)
    share = med(x / f for x, f in zip(loops[-setup.rounds :], times["fit"]))
    out = {"seconds_per_step": times, "loop_s": loop, "loop_share": share}
    return {**out, **common.ratios(times, PAIRS)}


def whole_fit(setup: Setup) -> dict:
    cfg = dataclasses.replace(setup.cfg, max_epochs=setup.epochs, min_epochs=setup.epochs)
    train_set, val_set = common.cold(setup.train_set), common.cold(setup.val_set)
    result, total, files = common.run_fit(setup.model, train_set, val_set, cfg)
    parts = {
        "train": sum(row["train_seconds"] for row in result.history),
        "validate": sum(row["val_seconds"] for row in result.history),
    }
    parts["other"] = total - parts["train"] - parts["validate"]
    return {"total_s": total, "parts_s": parts, "files_bytes": files, "epochs": result.epochs_run}


def whole_bare(setup: Setup, train_batches: Callable, val_batches: Callable) -> dict:
    """The bare loop for ``setup.epochs`` epochs, each followed by a bare validation pass;
    ``train_batches(epoch)`` and ``val_batches()`` give the batches (preloaded or a DataLoader)."""
    loss_fn = make_loss(setup.cfg.loss)
    t0 = time.perf_counter()
    step_setup = common.step_setup(setup.model, setup.cfg)
    train_s = val_s = 0.0
    for epoch in range(setup.epochs):
        train_s += common.bare_steps(setup.model, train_batches(epoch), step_setup)
        t1 = time.perf_counter()
        common.bare_validate(setup.model, val_batches(), loss_fn)
        val_s += time.perf_counter() - t1
    total = time.perf_counter() - t0
    parts = {"train": train_s, "validate": val_s, "other": total - train_s - val_s}
    return {"total_s": total, "parts_s": parts}


def whole_bare_loader(setup: Setup) -> dict:
    """The bare loop reading its data as fit does: datasets built afresh (the first epoch
    decodes every image), batches through ``train.loader``."""
    train_set, val_set = common.cold(setup.train_set), common.cold(setup.val_set)
    return whole_bare(
        setup,
        lambda epoch: train.loader(train_set, setup.cfg, shuffle=True, epoch=epoch),
        lambda: train.loader(val_set, setup.cfg, shuffle=False),
    )


def whole_run(setup: Setup) -> dict:
    if setup.whole_train:
        subset = torch.utils.data.Subset(setup.train_set, range(setup.whole_train))
        setup = dataclasses.replace(setup, train_set=subset)
    epochs = [common.preload(setup.train_set, setup.cfg, e) for e in range(setup.epochs)]
    val_batches = common.preload(setup.val_set, setup.cfg, shuffle=False)
    variants = {
        "fit": lambda: whole_fit(setup),
        "bare": lambda: whole_bare(setup, epochs.__getitem__, lambda: val_batches),
    }
    if setup.tiny:
        variants["bare_loader"] = lambda: whole_bare_loader(setup)
    common.bare_validate(setup.model, val_batches, make_loss(setup.cfg.loss))  # warm-up
    runs = common.interleave(variants, setup.whole_rounds, f"{setup.label}, whole run")
    totals = {name: [r["total_s"] for r in rs] for name, rs in runs.items()}
    out = {"runs": runs, "train_images": len(setup.train_set), "epochs": setup.epochs}
    return {**out, **common.ratios(totals, PAIRS)}


def setups(tmp: Path, quick: bool, rounds: int | None):
    """The tiny setup, then (not quick) the paper one, built when the tiny one is done."""
    common.write_data(tmp / "d128", 128, 32 if quick else 64, 8)
    tiny = create_model("clipseg", size="tiny", train="all")
    sets = common.datasets(tmp / "d128", tiny)
    cfg = TrainConfig(batch_size=16, feature_cache="off")
    variants = ("fit", "bare", "bare_loader", "fit_no_tqdm")
    per_step_rounds, whole_rounds, epochs = (2, 1, 2) if quick else (7, 3, 10)
    label = "tiny CLIPSeg, all, b16, 128px"
    counts = (rounds or per_step_rounds, whole_rounds, epochs)
    yield Setup(label, tiny, *sets, cfg, variants, *counts, tiny=True)
    if quick:
        return
    common.write_data(tmp / "d352", 352, 24, 8)
    paper = common.paper_clipseg(tmp)
    sets = common.datasets(tmp / "d352", paper)
    cfg = TrainConfig(batch_size=8, feature_cache="off")
    label = "paper CLIPSeg, decoder, b8, 352px, cache off"
    yield Setup(label, paper, *sets, cfg, ("fit", "bare"), rounds or 3, 2, 3, whole_train=16)


def verdict(ratio: float) -> str:
    if ratio <= GOAL:
        return f"meets the goal (<= {GOAL})"
    if ratio <= TARGET:
        return f"within the target (<= {TARGET}), above the goal ({GOAL})"
    return f"ABOVE the target ({TARGET})"


def _s(values: dict, key: str, digits: int = 4) -> str:
    return f"{values[key]:.{digits}f}" if key in values else "-"


def markdown(res: dict) -> str:
    lines = [
        f"# fit loop overhead ({'quick' if res['quick'] else 'full'} run)",
        "",
        common.header(res),
        "## per step: fit's loop against a bare loop of train.step (median s/step)",
        "",
        "| setup | steps/epoch x rounds | fit | bare | **fit / bare** | paired median | "
        "bare_loader | fit_no_tqdm | **fit outside train.step** (share of fit) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, o in res["setups"].items():
        s, m = o["per_step"], o["per_step"]["median_s"]
        lines.append(
            f"| {label} | {o['steps_per_epoch']} x {len(s['seconds_per_step']['fit'])} | "
            f"{m['fit']:.4f} | {m['bare']:.4f} | **{s['fit/bare']:.3f}** | "
            f"{s['fit/bare paired']:.3f} | {_s(m, 'bare_loader')} | {_s(m, 'fit_no_tqdm')} | "
            f"**{s['loop_s']:.4f}** ({s['loop_share']:.1%}) | {verdict(s['fit/bare'])} |"
        )
    for label, o in res["setups"].items():
        s = o["per_step"]
        if "bare_loader/bare" in s:
            lines.append(
                f"\n{label}: data loading (bare_loader / bare) **{s['bare_loader/bare']:.3f}**; "
                f"the rest of fit's loop (fit / bare_loader) **{s['fit/bare_loader']:.3f}**; "
                f"tqdm (fit / fit_no_tqdm) **{s['fit/fit_no_tqdm']:.3f}**."
            )
    lines += [
        "",
        "## whole run: fit(max_epochs=E) against E bare epochs + bare validation (median s)",
        "",
        "bare: batches loaded before timing; bare_loader (tiny): the bare loop reading the same "
        "files through the same DataLoader from datasets built afresh, as fit does.",
        "",
        "| setup | train images x epochs | fit | bare | **fit / bare** | paired median | "
        "bare_loader | **fit / bare_loader** (paired) | fit: train / validate / other | "
        "bare: train / validate | files written by fit |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, o in res["setups"].items():
        w, m = o["whole_run"], o["whole_run"]["median_s"]
        fit_parts = {
            k: med(r["parts_s"][k] for r in w["runs"]["fit"])
            for k in ("train", "validate", "other")
        }
        bare_parts = {
            k: med(r["parts_s"][k] for r in w["runs"]["bare"]) for k in ("train", "validate")
        }
        files = w["runs"]["fit"][0]["files_bytes"]
        files = ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sorted(files.items()))
        loader = (
            f"{m['bare_loader']:.2f} | **{w['fit/bare_loader']:.3f}** "
            f"({w['fit/bare_loader paired']:.3f})"
            if "bare_loader" in m
            else "- | -"
        )
        lines.append(
            f"| {label} | {w['train_images']} x {w['epochs']} | {m['fit']:.2f} | "
            f"{m['bare']:.2f} | **{w['fit/bare']:.3f}** | {w['fit/bare paired']:.3f} | {loader} | "
            + " / ".join(f"{v:.3f}" for v in fit_parts.values())
            + " | "
            + " / ".join(f"{v:.2f}" for v in bare_parts.values())
            + f" | {files} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__, "outputs/benchmarks/fit_overhead.json").parse_args(argv)
    res = {**common.start(args), "setups": {}}
    with tempfile.TemporaryDirectory(prefix="fit_overhead_") as tmp:
        for setup in setups(Path(tmp), args.quick, args.rounds):
            res["setups"][setup.label] = {
                "model": setup.model.describe(),
                "config": setup.cfg.to_dict(),
                "train_images": len(setup.train_set),
                "val_images": len(setup.val_set),
                "steps_per_epoch": setup.steps,
                "per_step": per_step(setup),
                "whole_run": whole_run(setup),
            }
    common.finish(res, args.out, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
