"""Weights in and out of models: one reader, one key check, one error format, our checkpoints.

Reading (``read_state``): safetensors, TorchScript archives (OpenAI's ``RN50.pt``) and
``torch.save`` files (always ``weights_only=True``); a ``{"state_dict": ...}`` wrapper is opened
and known prefixes (DataParallel's ``module.``) are stripped.

Checking (``check_state`` / ``load_checked``): a state dict is compared with a module's own
before anything is loaded: missing keys (those the caller requires), unexpected keys and
mis-shaped tensors are all named in one message with the fix, and nothing is loaded when any is
at fault, so a model is never built from part of its weights.

Public weights that live in the Hugging Face cache are looked up file by file first
(``require_hub_file``), so a missing file is named as it is, not as whatever fails after it.

Our checkpoints: a folder with ``checkpoint.safetensors`` + ``model.json``. When the model was
built from reproducible weights (``weights="pretrained"`` or a path), only what training can
change is stored: the trainable parameters and every buffer (BatchNorm statistics); the frozen
rest is rebuilt from ``model.json`` (registry name, size, base weights, train policy, options),
so a decoder-only finetune of paper CLIPSeg is ~5 MB, not 600 MB. A model built with random
weights (``weights=None``, all tiny models) is stored whole, since its frozen part cannot be
rebuilt. ``vlsm_lib.models.load_checkpoint`` rebuilds a model from such a folder.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from vlsm_lib.files import atomic_write

WEIGHTS, CONFIG = "checkpoint.safetensors", "model.json"
STRIPPED_PREFIXES = ("module.",)  # torch DataParallel / DistributedDataParallel


class WeightsUnavailable(RuntimeError):
    """Weights could not be loaded: not downloaded, offline, a missing or unreadable file."""


class WeightsMismatch(WeightsUnavailable, ValueError):
    """A weights file whose keys or shapes do not fit the model it is loaded into."""


def weights_error(what: str, source: str, err: Exception) -> WeightsUnavailable:
    """An error that says how to make ``source`` (a hub id or path) available offline."""
    return WeightsUnavailable(
        f"could not load {what} from {source!r} ({type(err).__name__}: {str(err)[:300]}). "
        "This machine is offline or the files are not cached. On a machine with internet, "
        f"pre-download them (`vlsm weights fetch`, or `hf download {source}` for a hub id; the "
        "files land in the Hugging Face cache, $HF_HOME) and copy that cache here, or pass "
        "weights= a local folder or file. Use weights=None for random initialisation."
    )


def require_hub_file(repo_id: str, filename: str, what: str) -> Path:
    """The cached (or downloaded, when online) path of one file of a hub repository; a missing
    file raises ``WeightsUnavailable`` naming that very file."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as err:
        raise weights_error(f"{what} ({filename})", repo_id, err) from err


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips holding ``constants.pkl``; torch.save zips are not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") for n in archive.namelist())


def read_state(path: str | Path, what: str = "weights", hint: str = "") -> dict[str, torch.Tensor]:
    """The state dict in a safetensors, TorchScript or ``torch.save`` file (see the module
    docstring). A missing or unreadable file raises ``WeightsUnavailable`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailable(f"{what} file {str(path)!r} does not exist. {hint}".strip())
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif _is_torchscript(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
                state = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    except Exception as err:
        raise WeightsUnavailable(
            f"could not read {what} from {str(path)!r} ({type(err).__name__}: {str(err)[:300]})"
        ) from err
    return {_strip(k): v for k, v in state.items()}


def _strip(key: str) -> str:
    for prefix in STRIPPED_PREFIXES:
        key = key.removeprefix(prefix)
    return key


def _listed(keys: list[str]) -> str:
    return ", ".join(keys[:5]) + (f", ... (+{len(keys) - 5} more)" if len(keys) > 5 else "")


def check_state(
    own: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    what: str,
    fix: str,
    required: Iterable[str] | None = None,
) -> None:
    """Raise ``WeightsMismatch`` unless ``state`` fits ``own`` (a module's ``state_dict()``).

    ``required``: the keys that must be present; default every key of ``own`` except BatchNorm's
    ``num_batches_tracked`` counters (torch keeps its own when they are absent).
    """
    if required is None:
        required = [k for k in own if not k.endswith("num_batches_tracked")]
    missing = sorted(k for k in required if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} in file vs {tuple(own[k].shape)} in model"
        for k in state
        if k in own and state[k].shape != own[k].shape
    )
    faults = [
        f"{name} ({len(keys)}): {_listed(keys)}"
        for name, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", shapes),
        )
        if keys
    ]
    if faults:
        raise WeightsMismatch(f"{what} does not fit the model: {'; '.join(faults)}. {fix}")


def load_checked(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    what: str,
    fix: str,
    required: Iterable[str] | None = None,
) -> None:
    """``check_state`` against ``module``, then load (keys not in ``state`` stay as they are)."""
    check_state(module.state_dict(), state, what, fix, required)
    module.load_state_dict(state, strict=False)


# ----------------------------------------------------------------------------- our checkpoints


def trained_state(model) -> dict[str, torch.Tensor]:
    """What a checkpoint stores: trainable parameters and buffers, or everything (see above)."""
    whole = getattr(model, "build_args", {}).get("weights") is None
    trainable = model.trainable_parameter_names()
    params = dict(model.named_parameters())
    return {
        key: value.detach().to("cpu").contiguous().clone()
        for key, value in model.state_dict().items()
        if whole or key not in params or key in trainable
    }


def load_trained_state(model, state: dict[str, torch.Tensor], source: str = "") -> None:
    """Load a ``trained_state`` dict: every trainable parameter must be in it, and every key in
    it must exist in the model with its shape."""
    fix = (
        f"Build the model ({model.name}, size {model.size}, train={model.policy}) with the name, "
        "size, train policy and options in the checkpoint's model.json."
    )
    required = model.trainable_parameter_names()
    load_checked(model, state, f"checkpoint {source}", fix, required)


def save_checkpoint(
    model, folder: str | Path, extra: dict | None = None, state: dict | None = None
) -> Path:
    """Write ``checkpoint.safetensors`` and ``model.json`` into ``folder``; returns the weights.

    ``state``: the weights to write (a ``trained_state(model)`` taken earlier); default: now's.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    state = trained_state(model) if state is None else state
    atomic_write(folder / WEIGHTS, lambda tmp: save_file(state, str(tmp)))
    meta = {
        **portable(getattr(model, "build_args", {}), folder),
        "describe": model.describe(),
        "stored_keys": len(state),
        **(extra or {}),
    }
    text = json.dumps(meta, indent=1, default=str)
    atomic_write(folder / CONFIG, lambda tmp: tmp.write_text(text))
    return folder / WEIGHTS


def read_checkpoint(folder: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(model.json as a dict, the stored tensors) of a checkpoint folder of ours."""
    folder = Path(folder)
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise WeightsUnavailable(
                f"{folder / name} not found; a checkpoint folder holds {CONFIG} and {WEIGHTS} "
                "(written by fit when a validation Dice improves)"
            )
    try:
        meta = json.loads((folder / CONFIG).read_text())
    except ValueError as err:
        raise WeightsUnavailable(f"{folder / CONFIG} is not valid JSON ({err})") from err
    return located(meta, folder), read_state(folder / WEIGHTS, "checkpoint")


def portable(value, folder: Path):
    """``value`` (build arguments: weights, options) with every path inside the checkpoint's
    suite folder (``outputs/<suite>``, two levels above ``folder``) written relative to
    ``folder``, so that a suite copied to another path or machine still loads: a finetuned
    checkpoint names its pretraining run as ``../../pretrain/<run>``. Other paths (public
    weights under $VLSM_DATA) and words ("pretrained") stay as they are."""
    if isinstance(value, dict):
        return {k: portable(v, folder) for k, v in value.items()}
    if not isinstance(value, str) or not os.path.isabs(value):
        return value
    suite = Path(folder).resolve().parents[1]
    target = Path(value).resolve()
    if not target.is_relative_to(suite):
        return value
    return os.path.relpath(target, Path(folder).resolve())


def located(value, folder: Path):
    """The inverse of ``portable``: relative paths that exist from ``folder`` made whole."""
    if isinstance(value, dict):
        return {k: located(v, folder) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("..") and (Path(folder) / value).exists():
        return str((Path(folder) / value).resolve())
    return value


def is_checkpoint(weights: str | Path | None) -> bool:
    """True for a checkpoint of ours: a folder with model.json, or a .safetensors file."""
    if weights is None or weights == "pretrained":
        return False
    path = Path(weights)
    return (path / CONFIG).is_file() or path.suffix == ".safetensors"
