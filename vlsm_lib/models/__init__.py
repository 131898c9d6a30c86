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
  The VLSMs also offer the parameter-efficient policies of ``tuning`` (lora, adapter,
  text_prompt, visual_prompt), whose options (``lora_rank``, ``adapter_dim``, ...) are passed
  like the family's own: ``create_model("clipseg", train="lora", lora_rank=4)``.
"""

from __future__ import annotations

import inspect
from importlib import import_module
from pathlib import Path

from vlsm_lib.models import tuning
from vlsm_lib.models import weights as W
from vlsm_lib.models.base import SegModel
from vlsm_lib.models.weights import WeightsMismatch, WeightsUnavailable

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


def warm_up(name: str) -> None:
    """Import a model's backend and load what every build of it reads and never changes (the
    CLIP BPE vocabulary): what a fork server does once before forking kernels (``kernels``)."""
    import_module(MODELS[name][0])
    if name in ("clipseg", "cris"):  # the families that tokenize with CLIP's BPE
        from vlsm_lib.models.tokenizers import clip_bpe

        clip_bpe()


def create_model(
    name: str,
    size: str = "paper",
    weights: str | None = None,
    train: str | None = None,
    **options,
) -> SegModel:
    """Build a registered model; see the module docstring for the arguments. ``options`` are
    the family's own (e.g. CRIS's ``clip_weights``); an option it does not take is an error
    that lists the valid ones."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")
    module, builder, fixed = MODELS[name]
    build = getattr(import_module(module), builder)
    tuned = {k: v for k, v in options.items() if k in tuning.OPTIONS}
    options = {k: v for k, v in options.items() if k not in tuning.OPTIONS}
    check_options(name, build, fixed, options)
    own = W.is_checkpoint(weights)
    model = build(size=size, weights=None if own else weights, **fixed, **options)
    model.name = name
    if own:
        # A decoder chosen explicitly (BiomedCLIPSeg-D's decoder_weights) wins over the one
        # stored in the base checkpoint.
        skip = ("decoder.",) if options.get("decoder_weights") else ()
        _start_from_checkpoint(model, Path(weights), skip=skip)
    model.set_train_policy(train or model.default_policy, **tuned)
    # How to rebuild it: checkpoints store only what trained and rebuild the rest from these.
    model.build_args = {
        "name": name,
        "size": size,
        "weights": weights,
        "train": model.policy,
        "options": {**options, **tuned},
    }
    return model


def check_options(name: str, build, fixed: dict, options: dict) -> None:
    """Refuse options the family's builder does not declare (a typo would otherwise be ignored,
    e.g. ``clip_weight`` for CRIS's ``clip_weights`` would train from a random CLIP)."""
    declared = [p for p in inspect.signature(build).parameters if p not in ("size", "weights")]
    valid = [p for p in declared if p not in fixed]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for model {name!r}; "
            f"valid: {', '.join(valid) or 'none'}"
        )


def load_checkpoint(folder: str | Path, device="cpu") -> SegModel:
    """Rebuild a model from ``folder/model.json`` and load ``folder/checkpoint.safetensors``."""
    meta, state = W.read_checkpoint(folder)
    model = create_model(
        meta["name"],
        size=meta["size"],
        weights=meta["weights"],
        train=meta["train"],
        **meta.get("options", {}),
    )
    W.load_trained_state(model, state, str(Path(folder) / W.WEIGHTS))
    return model.to(device).eval()


def _start_from_checkpoint(model: SegModel, path: Path, skip: tuple[str, ...] = ()) -> None:
    """Start from a checkpoint of ours (a folder, or a .safetensors file of a whole model), e.g.
    a tiny model pretrained on synth_shapes; keys under ``skip`` keep the model's own values."""
    if path.suffix == ".safetensors":
        state = W.read_state(path, "weights")
    else:
        state = load_checkpoint(path).state_dict()
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(skip)} if skip else state
    required = [k for k in own if not k.startswith(skip)] if skip else None
    fix = "They were saved from another model, size or options; build the model they came from."
    W.load_checked(model, state, f"weights {path} for {model.name} ({model.size})", fix, required)


__all__ = [
    "MODELS",
    "SegModel",
    "WeightsMismatch",
    "WeightsUnavailable",
    "create_model",
    "list_models",
    "load_checkpoint",
]
