"""``fit``: a plain PyTorch training loop with the reference's recipe.

AdamW, ReduceLROnPlateau on validation loss, early stopping on validation Dice (not before
``min_epochs``), gradient clipping, fp16 autocast on CUDA, a tqdm bar per epoch. The best
validation-Dice weights are written to ``run_dir`` (``checkpoint.safetensors`` + ``model.json``)
and ``train_state.pt`` holds what an interrupted run needs to resume exactly where it stopped:
trained weights, optimiser, scheduler, scaler, RNG state, counters, history. Data order is a
function of (seed, epoch), so a resumed run sees the batches it would have seen.

Files are written after an epoch when ``TrainConfig.state_every_s`` seconds have passed since the
last write (default 30; 0 = after every epoch) and when the run ends: first the best checkpoint,
if a better epoch came since (its weights wait in RAM), then the state; a run that stops on an
error still writes its waiting checkpoint. A tiny model's half-second epochs would otherwise
spend ~20 % of the run writing files (benchmarks/README.md). A run killed between writes replays
the epochs after the last state and ends with the same weights and best checkpoint (tested).

``step`` is the one training step (forward, loss, backward, clipping, optimiser): ``fit``,
``vlsm bench`` and the benchmarks call it, so what they time is what ``fit`` trains with.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vlsm_lib.data.augment import Augmenter
from vlsm_lib.data.transforms import to_device
from vlsm_lib.engine import feature_store, runtime
from vlsm_lib.engine.config import TrainConfig
from vlsm_lib.engine.feature_cache import FeatureCache
from vlsm_lib.engine.losses import make_loss
from vlsm_lib.engine.metrics import confusion, dice_from_counts
from vlsm_lib.files import atomic_write
from vlsm_lib.models import SegModel
from vlsm_lib.models.weights import load_trained_state, save_checkpoint, trained_state

RESUME_STATE = "train_state.pt"  # what an interrupted finetune resumes from; the runner deletes it
STATE = RESUME_STATE  # once the run is complete


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or infinite (``step``); ``fit`` keeps the best checkpoint so far."""


@dataclass
class FitResult:
    best_epoch: int = -1
    best_val_dice: float = -math.inf
    epochs_run: int = 0
    stopped: str = ""  # "early_stopping" | "max_epochs"
    history: list[dict] = field(default_factory=list)
    cache: str = "off"
    matmul_precision: str = ""  # applied; "highest" for "medium" on CPUs without bf16 (runtime.py)
    resumed_at: int = 0  # the epoch an interrupted run resumed at (0: it started afresh)


@dataclass
class StepSetup:
    """What ``step`` needs besides the forward and the batch; ``make_step_setup`` builds fit's."""

    params: list[torch.nn.Parameter]  # the trainable ones: clipped and updated
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler  # a no-op unless enabled (CUDA + amp)
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, mask) -> 0-dim
    grad_clip: float  # max total gradient norm (clip_grad_norm_)
    amp: bool  # fp16 autocast around the forward (CUDA only)


def make_step_setup(params, cfg: TrainConfig, device: torch.device) -> StepSetup:
    """fit's AdamW, GradScaler, loss and clipping for ``params`` under ``cfg``; fp16 autocast and
    loss scaling only on CUDA with ``cfg.amp``. AdamW runs its multi-tensor ("foreach") code on
    every device: PyTorch's CPU default, one tensor at a time, gives the same results much more
    slowly on small models (benchmarks/README.md)."""
    params = list(params)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    amp = device.type == "cuda" and cfg.amp
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    return StepSetup(params, opt, scaler, make_loss(cfg.loss), cfg.grad_clip, amp)


def autocast(enabled: bool):
    """fp16 autocast of CUDA operations (fit's mixed precision); not enabled: does nothing."""
    return torch.autocast("cuda", dtype=torch.float16, enabled=enabled)


def step(forward, batch: dict, setup: StepSetup, context: str = "") -> torch.Tensor:
    """One training step; returns the loss (0-dim float32 tensor, graph already freed).

    ``forward(batch) -> logits (B, 1, H, W)``: the model's ``forward_batch``, a feature
    cache's ``forward``, or any function of the batch. ``batch["mask"]``: (B, 1, H, W) float
    in {0, 1}, on the logits' device. Order: forward under autocast, loss on float32 logits,
    finiteness check (``NonFiniteLoss``, its message ending in ``context``; the gradients of
    the previous step are left as they were), zero_grad, scaled backward, unscale_, clipping
    of the total gradient norm of ``setup.params`` to ``setup.grad_clip``, optimiser step
    (skipped by the scaler on inf/NaN fp16 gradients), scaler update.
    """
    with autocast(setup.amp):
        logits = forward(batch)
    loss = setup.loss_fn(logits.float(), batch["mask"])
    if not torch.isfinite(loss):
        raise NonFiniteLoss(
            f"loss is {loss.item()}{' ' + context if context else ''}. "
            "Lower the learning rate or check the inputs (masks in {0, 1})."
        )
    setup.opt.zero_grad(set_to_none=True)
    setup.scaler.scale(loss).backward()
    setup.scaler.unscale_(setup.opt)  # clip the true gradients, not the scaled ones
    torch.nn.utils.clip_grad_norm_(setup.params, setup.grad_clip)
    setup.scaler.step(setup.opt)
    setup.scaler.update()
    return loss


def loader(dataset, cfg: TrainConfig, shuffle: bool, epoch: int = 0) -> DataLoader:
    """Batches whose order depends only on (seed, epoch): resuming replays the same order.

    A training epoch whose last batch would hold one image drops it (another image each epoch,
    the order being shuffled): BatchNorm cannot train on one sample, and DeepLabv3+'s
    image-pooling branch sees it as a 1x1 map, which fails outright."""
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    lone = shuffle and len(dataset) > 1 and len(dataset) % cfg.batch_size == 1
    return DataLoader(
        dataset,
        cfg.batch_size,
        shuffle,
        generator=generator,
        num_workers=cfg.num_workers,
        drop_last=lone,
    )


@torch.no_grad()
def validate(model, dataset, cfg, loss_fn, forward=None, device=None) -> tuple[float, float]:
    """(mean loss, mean per-image Dice at network resolution) over ``dataset``."""
    model.eval()
    forward = forward or model.forward_batch
    device = device or model.device
    total_loss, dices = 0.0, []
    for batch in loader(dataset, cfg, shuffle=False):
        batch = to_device(batch, device)
        with autocast(device.type == "cuda" and cfg.amp):
            logits = forward(batch)
        total_loss += float(loss_fn(logits.float(), batch["mask"])) * len(logits)
        pred = model.binarize(logits)[:, 0].cpu().numpy()
        tp, fp, fn, _ = confusion(pred, batch["mask"][:, 0].cpu().numpy() > 0.5)
        dices.extend(np.atleast_1d(dice_from_counts(tp, fp, fn)).tolist())
    return total_loss / len(dataset), float(np.mean(dices))


def _make_cache(model, train_set, val_set, cfg, run_dir) -> FeatureCache | None:
    """A feature cache when the encoders are frozen and inputs never change (no augmentation)."""
    if cfg.feature_cache == "off" or cfg.augment or not model.cacheable_parts():
        return None
    return FeatureCache(
        model,
        len(train_set) + len(val_set),
        mode=cfg.feature_cache,
        folder=Path(run_dir) / "feature_cache",
        max_bytes=cfg.cache_max_gb * 1e9,
        store=feature_store.active(),  # the suite's shared store, when steps.setup activated one
    )


def fit(
    model: SegModel,
    train_set,
    val_set,
    cfg: TrainConfig,
    run_dir: str | Path,
    resume: bool = True,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``train_set``; keep the best validation-Dice checkpoint in ``run_dir``."""
    if len(val_set) == 0:
        raise ValueError("empty validation set: early stopping and the best checkpoint need one")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    runtime.apply()  # CPU settings on the thread that trains (runtime.py)
    runtime.seed_everything(cfg.seed)
    device = runtime.pick_device()
    precision = runtime.matmul_precision(cfg.matmul_precision, device)
    torch.set_float32_matmul_precision(precision)
    model.to(device)
    setup = make_step_setup((p for p in model.parameters() if p.requires_grad), cfg, device)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        setup.opt, "min", factor=cfg.plateau_factor, patience=cfg.plateau_patience, threshold=1e-4
    )
    cache = _make_cache(model, train_set, val_set, cfg, run_dir)
    forward = cache.forward if cache else model.forward_batch
    result = FitResult(cache=cache.describe() if cache else "off", matmul_precision=precision)
    writer = _Writer(run_dir, model, setup, sched, result)
    bad_epochs = writer.load_state() if resume and writer.path.is_file() else 0
    result.resumed_at = result.epochs_run
    augment = Augmenter(model.preprocess, seed=cfg.seed) if cfg.augment else None
    try:
        for epoch in range(result.epochs_run, cfg.max_epochs):
            t0 = time.perf_counter()
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)
            train_loss, steps, in_step = _train_epoch(
                model, train_set, cfg, epoch, setup, forward, augment
            )
            t_val = time.perf_counter()
            val_loss, val_dice = validate(model, val_set, cfg, setup.loss_fn, forward, device)
            t_end = time.perf_counter()
            sched.step(val_loss)
            improved = val_dice > result.best_val_dice + cfg.min_delta
            if improved:
                result.best_val_dice, result.best_epoch, bad_epochs = val_dice, epoch, 0
                writer.improved(epoch, val_dice)
            else:
                bad_epochs += 1
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_dice": val_dice,
                "lr": setup.opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0,
                "improved": improved,
                "steps": steps,
                # parts of "seconds" that benchmarks/ compares with a bare loop; the training
                # loop's own cost is train_seconds - step_seconds (data, bars, bookkeeping)
                "train_seconds": t_val - t0,
                "step_seconds": in_step,
                "val_seconds": t_end - t_val,
            }
            result.history.append(row)
            result.epochs_run = epoch + 1
            stop = result.epochs_run >= cfg.min_epochs and bad_epochs >= cfg.patience
            last = stop or result.epochs_run == cfg.max_epochs
            writer.after_epoch(bad_epochs, last, cfg.state_every_s)
            if on_epoch_end:
                on_epoch_end(row)
            if stop:
                result.stopped = "early_stopping"
                return result
        result.stopped = "max_epochs"
        return result
    finally:
        writer.flush_checkpoint()  # the best weights are never lost, however the run ends


class _Writer:
    """Writes the best checkpoint and the resumable state (see the module docstring)."""

    def __init__(self, run_dir: Path, model, setup: StepSetup, sched, result: FitResult):
        self.path, self.model, self.result = run_dir / STATE, model, result
        self.setup, self.sched = setup, sched
        self.pending: tuple[dict, dict] | None = None  # best weights not written yet, their info
        self.last = time.monotonic()

    def improved(self, epoch: int, val_dice: float) -> None:
        self.pending = (trained_state(self.model), {"epoch": epoch, "val_dice": val_dice})

    def flush_checkpoint(self) -> None:
        if self.pending is not None:
            state, info = self.pending
            save_checkpoint(self.model, self.path.parent, info, state=state)
            self.pending = None

    def after_epoch(self, bad_epochs: int, last: bool, every_s: float) -> None:
        if last or time.monotonic() - self.last >= every_s:
            self.flush_checkpoint()
            self.save_state(bad_epochs)
            self.last = time.monotonic()

    def save_state(self, bad_epochs: int) -> None:
        state = {
            "model": trained_state(self.model),
            "optimizer": self.setup.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.setup.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "bad_epochs": bad_epochs,
            "result": dict(vars(self.result)),
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        atomic_write(self.path, lambda tmp: torch.save(state, tmp))  # never a half-written state

    def load_state(self) -> int:
        """Restore what ``save_state`` wrote; returns the epochs without improvement."""
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        load_trained_state(self.model, state["model"], str(self.path))
        self.setup.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.setup.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        for key, value in state["result"].items():
            if key not in ("cache", "matmul_precision"):  # this process's own
                setattr(self.result, key, value)
        return int(state["bad_epochs"])


def _train_epoch(model, train_set, cfg, epoch, setup, forward, augment) -> tuple[float, int, float]:
    """One epoch of ``step``s; (mean training loss, steps taken, seconds inside ``step``)."""
    model.train()
    total, seen, in_step = 0.0, 0, 0.0
    batches = loader(train_set, cfg, shuffle=True, epoch=epoch)
    steps = min(len(batches), cfg.max_steps_per_epoch or len(batches))
    bar = tqdm(
        itertools.islice(batches, steps),  # stops before loading a batch it would not use
        total=steps,
        desc=f"epoch {epoch}",
        leave=False,
        disable=not cfg.progress or bool(os.environ.get("TQDM_DISABLE")),
    )
    for i, batch in enumerate(bar):
        batch = to_device(batch, model.device)
        if augment:
            batch = augment(batch, epoch, i)
        where = f"at epoch {epoch}, step {i}; the best checkpoint so far is kept"
        t0 = time.perf_counter()
        loss = step(forward, batch, setup, where)
        in_step += time.perf_counter() - t0
        total += loss.item() * len(batch["mask"])
        seen += len(batch["mask"])
        bar.set_postfix(loss=f"{total / seen:.4f}")
    return total / max(seen, 1), steps, in_step
