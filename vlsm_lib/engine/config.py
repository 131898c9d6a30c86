"""Run settings as frozen dataclasses, built from a notebook's parameters.

Unknown keys are refused with the list of valid ones. The finetune notebook's parameters split
between ``FinetuneRun`` (what to train, on which data, what to report) and ``TrainConfig`` (how
to optimise): a new training knob is one ``TrainConfig`` field plus one line in the notebook's
``parameters`` cell, and a parameter that belongs to neither is an error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Build a settings dataclass, refusing keys it does not declare and missing required ones."""
    fields = dataclasses.fields(cls)
    valid = [f.name for f in fields]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise KeyError(f"unknown {cls.__name__} key(s) {names}; valid: {', '.join(valid)}")
    missing = [f.name for f in fields if f.name not in values and _required(f)]
    if missing:
        raise KeyError(f"{cls.__name__} needs the key(s) {', '.join(map(repr, missing))}")
    return cls(**values)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def split_params(values: dict[str, Any], *classes: type) -> tuple:
    """One settings object per class from a flat dict; each key goes to the first class that
    declares it, and a key no class declares is refused, naming every class's keys."""
    parts: list[dict[str, Any]] = [{} for _ in classes]
    unknown = []
    for key, value in values.items():
        owner = [i for i, cls in enumerate(classes) if key in _names(cls)]
        if owner:
            parts[owner[0]][key] = value
        else:
            unknown.append(key)
    if unknown:
        valid = "; ".join(f"{c.__name__}: {', '.join(_names(c))}" for c in classes)
        raise KeyError(f"unknown parameter(s) {', '.join(map(repr, unknown))}; valid: {valid}")
    return tuple(from_dict(cls, part) for cls, part in zip(classes, parts))


def _names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: how parameters write lists of names."""
    return [t.strip() for t in text.split(",") if t.strip()]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation as the reference implementation trains, each default with its reason.

    The reference's per-model values: CLIPSeg family lr 2e-3 (what its scripts ran), batch 128;
    CRIS lr 2e-5, batch 32; CNNs Adam lr 1e-3 (we use AdamW for all; weight decay as below).
    """

    lr: float = 2e-3
    weight_decay: float = 1e-3  # AdamW, as the reference
    batch_size: int = 16
    max_epochs: int = 1000
    min_epochs: int = 10  # early stopping cannot fire before this
    patience: int = 20  # epochs without a validation-Dice gain of min_delta
    min_delta: float = 1e-4
    plateau_factor: float = 0.1  # ReduceLROnPlateau on validation loss
    plateau_patience: int = 5
    grad_clip: float = 0.5  # max gradient norm
    loss: str = "dice_bce"  # "dice" reproduces what the reference effectively trained with
    seed: int = 42
    amp: bool = True  # fp16 autocast + GradScaler, on CUDA only
    matmul_precision: str = "highest"  # torch.set_float32_matmul_precision; the reference: medium
    num_workers: int = 0
    augment: bool = False  # the reference used none; see vlsm_lib.data.augment
    feature_cache: str = "auto"  # auto | off | memory | disk (frozen encoders only)
    cache_max_gb: float = 4.0  # RAM cap of the in-memory cache; "auto" goes to disk beyond it
    max_steps_per_epoch: int = 0  # 0 = the whole training set each epoch
    state_every_s: float = 30.0  # files at most this often (and when the run ends); see train.py
    progress: bool = True  # tqdm bars

    def __post_init__(self):
        checks = {
            "loss": (self.loss, ("dice_bce", "dice", "bce")),
            "matmul_precision": (self.matmul_precision, ("highest", "high", "medium")),
            "feature_cache": (self.feature_cache, ("auto", "off", "memory", "disk")),
        }
        for key, (value, valid) in checks.items():
            if value not in valid:
                raise ValueError(f"{key}={value!r} is not valid; choose one of {', '.join(valid)}")
        if self.batch_size < 1 or self.max_epochs < 1 or self.lr <= 0:
            raise ValueError("batch_size and max_epochs must be >= 1 and lr > 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FinetuneRun:
    """The finetune notebook's run-level parameters (its ``parameters`` cell holds the defaults
    and the comments): the model, the data, what to report. Everything else it declares is a
    ``TrainConfig`` field."""

    model: str
    size: str
    weights: str
    model_options: dict
    train: str
    dataset: str
    prompt: str
    train_fraction: float
    test_sets: str
    val_split: str
    test_split: str
    surface_metrics: bool
    save_masks: bool
    allow_leaks: bool
    data_root: str | Path
    run_dir: str | Path


def finetune_config(params: dict[str, Any]) -> TrainConfig:
    """The ``TrainConfig`` of a finetune run from the notebook's parameters; refuses a parameter
    that is neither a ``FinetuneRun`` nor a ``TrainConfig`` field, and a missing run-level one."""
    _, train = split_params(params, FinetuneRun, TrainConfig)
    return train
