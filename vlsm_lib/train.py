"""``fit``: a plain PyTorch training loop with the reference's recipe (spec §4).

AdamW, ReduceLROnPlateau on validation loss, early stopping on validation Dice (not before
``min_epochs``), gradient clipping, fp16 autocast on CUDA, a tqdm bar per epoch. The best
validation-Dice weights are written to ``run_dir`` (``checkpoint.safetensors`` + ``model.json``)
and ``train_state.pt`` holds what an interrupted run needs to resume exactly where it stopped:
trained weights, optimiser, scheduler, scaler, RNG state, counters, history. Data order is a
function of (seed, epoch), so a resumed run sees the batches it would have seen.

Files are written after an epoch when ``TrainConfig.state_every_s`` seconds have passed since the
last write (default 30; 0 = after every epoch) and when the run ends (last epoch, early stopping):
first the best checkpoint, if a better epoch came since the last write (its weights wait in RAM
until then), then the state. A run that stops on an error (NaN loss, an exception, Ctrl-C) still
writes its waiting best checkpoint on the way out. Paper-size epochs take minutes, so each is
saved; a tiny model's half-second epochs would otherwise spend ~20 % of the run writing its 21 MB
state and 7 MB checkpoint (measured, benchmarks/README.md). A run killed between writes resumes
from the last written state, replays the epochs after it and ends with the same weights and best
checkpoint as an uninterrupted run (tested).
"""

from __future__ import annotations

import itertools
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vlsm_lib import runtime
from vlsm_lib.checkpoint import load_state, save_checkpoint, trained_state
from vlsm_lib.config import TrainConfig
from vlsm_lib.features import FeatureCache
from vlsm_lib.losses import make_loss
from vlsm_lib.metrics import confusion, dice_from_counts
from vlsm_lib.models import SegModel

STATE = "train_state.pt"


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or infinite; the best checkpoint so far is kept."""


@dataclass
class FitResult:
    best_epoch: int = -1
    best_val_dice: float = -math.inf
    epochs_run: int = 0
    stopped: str = ""  # "early_stopping" | "max_epochs"
    history: list[dict] = field(default_factory=list)
    cache: str = "off"
    matmul_precision: str = ""  # applied; "highest" for "medium" on CPUs without bf16 (runtime.py)


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with the multi-tensor ("foreach") implementation on every device: PyTorch's CPU
    default, one tensor at a time, took 42 of a 115 ms tiny-CLIPSeg step (same results)."""
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_device(batch: dict, device: torch.device) -> dict:
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }


def model_forward(model: SegModel, batch: dict) -> torch.Tensor:
    """(B, 1, H, W) logits of a collated batch."""
    return model(batch["pixel_values"], batch.get("input_ids"), batch.get("attention_mask"))


def loader(dataset, cfg: TrainConfig, shuffle: bool, epoch: int = 0) -> DataLoader:
    """Batches whose order depends only on (seed, epoch): resuming replays the same order."""
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=cfg.num_workers,
        persistent_workers=False,
    )


@torch.no_grad()
def validate(model, dataset, cfg, loss_fn, forward=None, device=None) -> tuple[float, float]:
    """(mean loss, mean per-image Dice at network resolution) over ``dataset``."""
    model.eval()
    forward = forward or (lambda b: model_forward(model, b))
    device = device or next(model.parameters()).device
    total_loss, dices = 0.0, []
    for batch in loader(dataset, cfg, shuffle=False):
        batch = to_device(batch, device)
        with _autocast(device, cfg):
            logits = forward(batch)
        total_loss += float(loss_fn(logits.float(), batch["mask"])) * len(logits)
        pred = (torch.sigmoid(logits.float()) > model.threshold)[:, 0].cpu().numpy()
        tp, fp, fn, _ = confusion(pred, batch["mask"][:, 0].cpu().numpy() > 0.5)
        dices.extend(np.atleast_1d(dice_from_counts(tp, fp, fn)).tolist())
    return total_loss / len(dataset), float(np.mean(dices))


def _autocast(device: torch.device, cfg: TrainConfig):
    return torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda" and cfg.amp)


def _make_cache(model, train_set, val_set, cfg, run_dir) -> FeatureCache | None:
    """A feature cache when the encoders are frozen and inputs never change (no augmentation)."""
    if cfg.feature_cache == "off" or cfg.augment or not model.cacheable():
        return None
    return FeatureCache(
        model,
        len(train_set) + len(val_set),
        mode=cfg.feature_cache,
        folder=Path(run_dir) / "feature_cache",
        max_bytes=cfg.cache_max_gb * 1e9,
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
    runtime.apply()  # denormals flushed on this thread's torch threads too (runtime.py)
    seed_everything(cfg.seed)
    device = pick_device()
    precision = runtime.matmul_precision(cfg.matmul_precision, device)
    torch.set_float32_matmul_precision(precision)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience, threshold=1e-4
    )
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.amp)
    loss_fn = make_loss(cfg.loss)
    cache = _make_cache(model, train_set, val_set, cfg, run_dir)
    forward = cache.forward if cache else (lambda b: model_forward(model, b))
    result = FitResult(cache=cache.mode if cache else "off", matmul_precision=precision)
    bad_epochs = 0
    if resume and (run_dir / STATE).is_file():
        bad_epochs = _load_state(run_dir / STATE, model, opt, sched, scaler, result)
    augment = _augmenter(model, cfg)
    writer = _Writer(run_dir, model, opt, sched, scaler, result)
    try:
        for epoch in range(result.epochs_run, cfg.max_epochs):
            t0 = time.perf_counter()
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)
            train_loss = _train_epoch(
                model, train_set, cfg, epoch, opt, scaler, loss_fn, forward, params, device, augment
            )
            val_loss, val_dice = validate(model, val_set, cfg, loss_fn, forward, device)
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
                "lr": opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0,
                "improved": improved,
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

    def __init__(self, run_dir: Path, model, opt, sched, scaler, result: FitResult):
        self.run_dir, self.model, self.result = run_dir, model, result
        self.opt, self.sched, self.scaler = opt, sched, scaler
        self.pending: tuple[dict, dict] | None = None  # best weights not written yet, their info
        self.last = time.monotonic()

    def improved(self, epoch: int, val_dice: float) -> None:
        self.pending = (trained_state(self.model), {"epoch": epoch, "val_dice": val_dice})

    def flush_checkpoint(self) -> None:
        if self.pending is not None:
            state, info = self.pending
            save_checkpoint(self.model, self.run_dir, info, state=state)
            self.pending = None

    def after_epoch(self, bad_epochs: int, last: bool, every_s: float) -> None:
        if last or time.monotonic() - self.last >= every_s:
            self.flush_checkpoint()
            _save_state(
                self.run_dir / STATE,
                self.model,
                self.opt,
                self.sched,
                self.scaler,
                self.result,
                bad_epochs,
            )
            self.last = time.monotonic()


def _train_epoch(
    model, train_set, cfg, epoch, opt, scaler, loss_fn, forward, params, device, augment
) -> float:
    model.train()
    total, seen = 0.0, 0
    batches = loader(train_set, cfg, shuffle=True, epoch=epoch)
    steps = min(len(batches), cfg.max_steps_per_epoch or len(batches))
    bar = tqdm(
        itertools.islice(batches, steps),  # stops before loading a batch it would not use
        total=steps,
        desc=f"epoch {epoch}",
        leave=False,
        disable=not cfg.progress or bool(os.environ.get("TQDM_DISABLE")),
    )
    for step, batch in enumerate(bar):
        batch = to_device(batch, device)
        if augment:
            batch = augment(batch, epoch, step)
        with _autocast(device, cfg):
            logits = forward(batch)
        loss = loss_fn(logits.float(), batch["mask"])
        if not torch.isfinite(loss):
            raise NonFiniteLoss(
                f"loss is {loss.item()} at epoch {epoch}, step {step}; the best checkpoint so far "
                "is kept. Lower the learning rate or check the inputs (masks in {0, 1})."
            )
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        total += loss.item() * len(logits)
        seen += len(logits)
        bar.set_postfix(loss=f"{total / seen:.4f}")
    return total / max(seen, 1)


def _augmenter(model, cfg):
    if not cfg.augment:
        return None
    from vlsm_lib.augment import Augmenter

    return Augmenter(model.preprocess, seed=cfg.seed)


def _save_state(path: Path, model, opt, sched, scaler, result: FitResult, bad_epochs: int):
    state = {
        "model": trained_state(model),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "bad_epochs": bad_epochs,
        "result": {k: v for k, v in vars(result).items()},
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a half state


def _load_state(path: Path, model, opt, sched, scaler, result: FitResult) -> int:
    state = torch.load(path, map_location="cpu", weights_only=True)
    load_state(model, state["model"], str(path))
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    for key, value in state["result"].items():
        if key not in ("cache", "matmul_precision"):  # this process's own
            setattr(result, key, value)
    return int(state["bad_epochs"])
