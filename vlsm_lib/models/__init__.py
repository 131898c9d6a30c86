"""Model registry: ``create_model(name, size, weights, train)`` and ``list_models()``.

Every model follows one contract (see ``base.SegModel``)::

    logits = model(pixel_values, input_ids, attention_mask)   # (B, 1, H, W) at input size

and carries its preprocessing facts (``model.preprocess``: input size, mean/std, tokenizer,
context length) and its threshold (``model.threshold``).

- ``size="paper"`` builds the paper's architecture; ``weights="pretrained"`` loads the public
  weights (hub cache), a path loads local ones, ``None`` keeps random initialisation (offline).
- ``weights`` may also be a checkpoint of this library (a run folder with ``model.json``, or a
  ``.safetensors`` file), at either size: e.g. tiny models pretrained on MedShapes' synth_shapes.
- ``size="tiny"`` builds the same code path with small dimensions and random weights, offline.
- ``train`` names a policy (``model.train_policies``); None takes the reference's behaviour.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from vlsm_lib.models.base import SegModel, WeightsUnavailable

# name -> (module, builder, fixed keyword arguments). Modules load on demand so that importing
# the registry does not import every backend.
MODELS: dict[str, tuple[str, str, dict]] = {
    "clipseg": ("vlsm_lib.models.clipseg", "build", {}),
    "biomedclipseg": ("vlsm_lib.models.biomedclipseg", "build", {"pretrained_decoder": False}),
    "biomedclipseg_d": ("vlsm_lib.models.biomedclipseg", "build", {"pretrained_decoder": True}),
    "cris": ("vlsm_lib.models.cris", "build", {}),
    "unet": ("vlsm_lib.models.cnn", "build", {"arch": "unet"}),
    "unetpp": ("vlsm_lib.models.cnn", "build", {"arch": "unetpp"}),
    "deeplabv3plus": ("vlsm_lib.models.cnn", "build", {"arch": "deeplabv3plus"}),
}
SIZES = ("paper", "tiny")


def list_models() -> list[str]:
    return list(MODELS)


def create_model(
    name: str,
    size: str = "paper",
    weights: str | None = None,
    train: str | None = None,
    **options,
) -> SegModel:
    """Build a registered model; see the module docstring for the arguments."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")
    module, builder, fixed = MODELS[name]
    build = getattr(import_module(module), builder)
    own = _own_checkpoint(weights)
    model = build(size=size, weights=None if own else weights, **fixed, **options)
    model.name = name
    if own:
        # A decoder chosen explicitly (BiomedCLIPSeg-D's decoder_weights) wins over the one
        # stored in the base checkpoint.
        _load_own(model, own, keep=("decoder.",) if options.get("decoder_weights") else ())
    model.set_train_policy(train or model.default_policy)
    # How to rebuild it: checkpoints store only what trained and rebuild the rest from these.
    model.build_args = {
        "name": name,
        "size": size,
        "weights": weights,
        "train": model.policy,
        "options": options,
    }
    return model


def _own_checkpoint(weights) -> Path | None:
    """A checkpoint written by this library: a folder with model.json, or a .safetensors file."""
    if weights is None or weights == "pretrained":
        return None
    path = Path(weights)
    if (path / "model.json").is_file() or path.suffix == ".safetensors":
        return path
    return None


def _load_own(model: SegModel, path: Path, keep: tuple[str, ...] = ()) -> None:
    """Start from a checkpoint of ours, e.g. a tiny model pretrained on synth_shapes."""
    from safetensors.torch import load_file

    from vlsm_lib.checkpoint import load_checkpoint

    if path.suffix == ".safetensors":
        if not path.is_file():
            raise WeightsUnavailable(f"weights file {path} not found")
        state = load_file(str(path))
    else:
        state = load_checkpoint(path).state_dict()
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise WeightsUnavailable(
            f"weights {path} do not fit {model.name} ({model.size}): missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}; they were saved from another model or size"
        )
    if keep:
        state = {k: v for k, v in state.items() if not k.startswith(keep)}
    model.load_state_dict(state, strict=not keep)


__all__ = ["MODELS", "SegModel", "WeightsUnavailable", "create_model", "list_models"]
