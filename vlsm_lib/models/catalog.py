"""Every public weights file the paper suite needs, as data: where each comes from, which files
make it whole, its licence; and the three steps a GPU user takes with them (``vlsm weights``).

- ``list``: the catalogue (``CATALOG``).
- ``fetch``: download the hub ones through huggingface_hub's Python API into the standard cache
  ($HF_HOME / $HF_HUB_CACHE), on a machine with the network. Runs and notebooks stay offline
  (``HF_HUB_OFFLINE=1``) and read that cache, as they do today.
- ``check``: is each one complete in the cache, file by file (``missing``), without the network;
  with ``load``, build each paper model from its weights (the key and shape checks of
  ``models.weights``).

CRIS's two files, OpenAI's CLIP RN50 and the CRIS RefCOCO checkpoint, are fetched by hand: they
are listed with where to get them and checked where params/paper reads them
(``$VLSM_DATA/weights/RN50.pt``, ``$VLSM_DATA/weights/cris.pt``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Weights:
    name: str
    used_by: tuple[str, ...]
    source: str  # a hub repository id; "" for weights fetched by hand
    files: tuple[tuple[str, ...], ...]  # each entry: alternatives, one of which must be there
    licence: str
    revision: str | None = None  # a pinned commit (smp pins its encoders)
    size: str = ""  # the download, roughly, as the hub lists it
    note: str = ""  # how to get weights that are on no hub
    local: str = ""  # where params/paper reads a file fetched by hand, under the data root


CATALOG = (
    Weights(
        "clipseg",
        ("clipseg", "biomedclipseg_d"),
        "CIDAS/clipseg-rd64-refined",
        (("config.json",), ("model.safetensors", "pytorch_model.bin")),
        "Apache-2.0 (its model card)",
        size="0.6 GB",
    ),
    Weights(
        "biomedclip",
        ("biomedclipseg", "biomedclipseg_d"),
        "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
        (
            ("open_clip_config.json",),
            ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),
        ),
        "MIT",
        size="0.8 GB",
    ),
    Weights(
        "biomedbert",
        ("biomedclipseg", "biomedclipseg_d"),
        "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
        (("config.json",), ("vocab.txt",)),
        "MIT (its model card)",
        size="< 1 MB (configuration and vocabulary)",
    ),
    Weights(
        "clip_rn50",
        ("cris",),
        "",
        (),
        "MIT",
        note="OpenAI's RN50.pt, from the URL open_clip gives for ('RN50', 'openai') "
        "(open_clip.pretrained.get_pretrained_url)",
        local="weights/RN50.pt",
    ),
    Weights(
        "resnet50_imagenet",
        ("unet", "unetpp", "deeplabv3plus"),
        "smp-hub/resnet50.imagenet",
        (("config.json",), ("model.safetensors",)),
        "its model card; ImageNet has its own terms of access",
        revision="00cb74e366966d59cd9a35af57e618af9f88efe9",  # segmentation_models_pytorch 0.6
        size="0.1 GB",
    ),
    Weights(
        "cris_refcoco",
        ("cris",),
        "",
        (),
        "the terms of the CRIS authors' repository",
        note="from the link in https://github.com/DerrickWang005/CRIS.pytorch (README and issues)",
        local="weights/cris.pt",
    ),
)
NAMES = tuple(w.name for w in CATALOG)


def select(names=None) -> list[Weights]:
    """The catalogue entries named (all when none); an unknown name lists the valid ones."""
    unknown = sorted(set(names or ()) - set(NAMES))
    if unknown:
        raise KeyError(f"unknown weights {unknown}; valid: {', '.join(NAMES)}")
    return [w for w in CATALOG if not names or w.name in names]


def missing(weights: Weights, data_root: str | Path | None = None) -> list[str]:
    """What is not there, without the network: one line per absent file, naming the file and
    its repository (the local Hugging Face cache), or the path params/paper reads it from
    (under ``data_root``, default $VLSM_DATA or outputs/data) for weights fetched by hand."""
    from huggingface_hub import try_to_load_from_cache

    if weights.local:
        from vlsm_lib import paths

        path = Path(data_root or paths.data_root()) / weights.local
        return [] if path.is_file() else [f"{weights.name}: no file at {path} ({weights.note})"]
    out = []
    for alternatives in weights.files:
        found = [
            try_to_load_from_cache(weights.source, f, revision=weights.revision)
            for f in alternatives
        ]
        if not any(isinstance(p, str) and Path(p).is_file() for p in found):
            rev = f"@{weights.revision[:7]}" if weights.revision else ""
            out.append(f"{weights.name}: {' or '.join(alternatives)} of {weights.source}{rev}")
    return out


def fetch(weights: Weights) -> list[Path]:
    """Download ``weights``' files into the Hugging Face cache (the first alternative the hub
    has); returns their cached paths. Needs the network: refused while HF_HUB_OFFLINE is set."""
    import huggingface_hub
    from huggingface_hub import constants

    if not weights.source:
        raise ValueError(f"{weights.name} is on no hub: {weights.note}")
    if constants.HF_HUB_OFFLINE:
        raise RuntimeError(
            "HF_HUB_OFFLINE is set: fetching needs the network. Run `HF_HUB_OFFLINE=0 vlsm "
            "weights fetch` on a machine with internet, then copy $HF_HOME to this one"
        )
    paths = []
    for alternatives in weights.files:
        errors = []
        for filename in alternatives:
            try:
                path = huggingface_hub.hf_hub_download(
                    repo_id=weights.source, filename=filename, revision=weights.revision
                )
            except Exception as err:  # the next alternative, or the error below
                errors.append(f"{filename}: {type(err).__name__}: {str(err)[:200]}")
                continue
            paths.append(Path(path))
            break
        else:
            raise RuntimeError(f"could not fetch {weights.name} from {weights.source}: {errors}")
    return paths
