"""Checkpoints: ``checkpoint.safetensors`` + ``model.json`` beside it.

When the model was built from reproducible weights (``weights="pretrained"`` or a path), only
what training can change is stored: the trainable parameters and every buffer (BatchNorm
statistics); the frozen rest is rebuilt from ``model.json`` (registry name, size, base weights,
train policy, options), so a decoder-only finetune of paper CLIPSeg is ~5 MB, not 600 MB. A model
built with random weights (``weights=None``, all tiny models) is stored whole, since its frozen
part cannot be rebuilt.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vlsm_lib import runtime  # noqa: F401  (CPU settings; see runtime.py)
from vlsm_lib.models import SegModel, create_model

WEIGHTS = "checkpoint.safetensors"
CONFIG = "model.json"


class CheckpointMismatch(ValueError):
    """A checkpoint whose keys or shapes do not fit the model it is loaded into."""


def trained_state(model: SegModel) -> dict[str, torch.Tensor]:
    """What a checkpoint stores: trainable parameters and buffers, or everything (see above)."""
    whole = getattr(model, "build_args", {}).get("weights") is None
    trainable = model.trainable_parameter_names()
    params = dict(model.named_parameters())
    return {
        key: value.detach().to("cpu").contiguous().clone()
        for key, value in model.state_dict().items()
        if whole or key not in params or key in trainable
    }


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(
    model: SegModel,
    folder: str | Path,
    extra: dict | None = None,
    state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``checkpoint.safetensors`` and ``model.json`` into ``folder``; returns the weights.

    ``state``: the weights to write (a ``trained_state(model)`` taken earlier); default: now's.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = trained_state(model) if state is None else state
    _atomic(folder / WEIGHTS, lambda p: save_file(state, str(p)))
    meta = {
        **getattr(model, "build_args", {}),
        "describe": model.describe(),
        "stored_keys": len(state),
        **(extra or {}),
    }
    _atomic(folder / CONFIG, lambda p: p.write_text(json.dumps(meta, indent=1, default=str)))
    return folder / WEIGHTS


def load_state(model: SegModel, state: dict[str, torch.Tensor], source: str = "") -> None:
    """Load a trained-state dict; every stored key must exist with its shape, and every
    trainable parameter must be present. Errors name the first keys at fault and the fix."""
    own = model.state_dict()
    missing = sorted(model.trainable_parameter_names() - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointMismatch(
            f"checkpoint {source} does not fit model {model.name} ({model.size}, "
            f"train={model.policy}): missing {missing[:5]} ({len(missing)}), unexpected "
            f"{unexpected[:5]} ({len(unexpected)}), shape mismatch {shapes[:5]} ({len(shapes)}). "
            "Build the model with the name, size, train policy and options in its model.json."
        )
    model.load_state_dict(state, strict=False)


def load_checkpoint(folder: str | Path, device: str | torch.device = "cpu") -> SegModel:
    """Rebuild a model from ``folder/model.json`` and load ``folder/checkpoint.safetensors``."""
    folder = Path(folder)
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder / name} not found; a checkpoint folder holds {CONFIG} and {WEIGHTS} "
                "(written by fit when a validation Dice improves)"
            )
    meta = json.loads((folder / CONFIG).read_text())
    model = create_model(
        meta["name"],
        size=meta["size"],
        weights=meta["weights"],
        train=meta["train"],
        **meta.get("options", {}),
    )
    load_state(model, load_file(str(folder / WEIGHTS)), str(folder / WEIGHTS))
    return model.to(device).eval()
