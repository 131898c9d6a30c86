"""BUSI, Breast Ultrasound Images (Al-Dhabyani et al., Data in Brief 28, 2020).

The download (``Dataset_BUSI_with_GT``, from the authors' page or as mirrored in one zip) holds
one folder per class, ``benign/`` (437 images), ``malignant/`` (210) and ``normal/`` (133), with

- ``<class> (N).png``: the ultrasound image (PNG, greyscale content, often saved as RGB);
- ``<class> (N)_mask.png``: its tumour mask, 0 = background and 255 = tumour (greyscale or
  grey saved as RGB/RGBA); images with several tumours carry more masks ``<class> (N)_mask_1.png``,
  ``_mask_2.png``, ..., which are merged here (union) into one mask;
- normal images have an all-black mask (no tumour): their prompts say "No tumor ...".

Names follow the reference's (``102_malignant.png`` for image and mask), so ``--anns`` matches
by stem and a class can still be selected by the substring of ``mask_name``. The splits are
stratified by class (the paper's 624 / 78 / 78 = benign 349/44/44, malignant 168/21/21, normal
107/13/13), dealt here per class with ``seed``. ``shape`` and ``regularity`` (regular /
irregular) come from the attributes CSV when given, keyed by either stem (``benign (1)`` or
``1_benign``).
"""

from __future__ import annotations

import re
import warnings
from functools import partial
from pathlib import Path

import numpy as np

from vlsm_lib.data.build import Record, assign_splits, decode_mask
from vlsm_lib.data.io import DataError
from vlsm_lib.data.sources import Source, SourceError, files, find_dir, register

SOURCE = register(
    Source(
        name="busi",
        title="BUSI: Breast Ultrasound Images Dataset (Al-Dhabyani et al., 2020)",
        url="https://scholar.cu.edu.eg/?q=afahmy/pages/dataset",
        terms="free download from the authors' page for research use; cite Al-Dhabyani et "
        "al., Dataset of breast ultrasound images, Data in Brief 28 (2020) 104863",
        family="busi",
        sizes={"train": 624, "val": 78, "test": 78},
        module="busi",
        expects="Dataset_BUSI_with_GT/{benign,malignant,normal}/'<class> (N).png' with masks "
        "'<class> (N)_mask.png' (and _mask_1.png, ... for several tumours)",
    )
)

ROOT = "Dataset_BUSI_with_GT"
# The paper's records per split and class: each class is dealt on its own.
CLASS_SIZES = {
    "benign": {"train": 349, "val": 44, "test": 44},
    "malignant": {"train": 168, "val": 21, "test": 21},
    "normal": {"train": 107, "val": 13, "test": 13},
}
MASK = re.compile(r"^(?P<image>.+?)_mask(?:_\d+)?$", re.IGNORECASE)
NUMBER = re.compile(r"\((\d+)\)\s*$")


def _class_dirs(root: Path) -> dict[str, Path]:
    """{class: folder} of the three class folders (case-insensitive); SourceError naming
    what is there when one is missing."""
    dirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    missing = [c for c in CLASS_SIZES if c not in dirs]
    if missing:
        raise SourceError(
            f"{root} does not look like the BUSI download: expected class folders "
            f"{list(CLASS_SIZES)}, missing {missing}; found {sorted(dirs)[:12]}"
        )
    return {c: dirs[c] for c in CLASS_SIZES}


def _scan(folder: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """Images by stem and their mask files (all ``_mask``/``_mask_<k>``) by image stem."""
    images, masks = {}, {}
    for path in files(folder, (".png", ".jpg", ".jpeg", ".bmp")):
        if path.name.startswith("._"):  # macOS resource forks in re-packed archives
            continue
        match = MASK.match(path.stem)
        if match:
            masks.setdefault(match.group("image"), []).append(path)
        else:
            images[path.stem] = path
    return images, masks


def merged_mask(paths: list[Path]) -> np.ndarray:
    """The union of a BUSI image's mask files (all must have one size)."""
    masks = [decode_mask(p) for p in paths]
    if any(m.shape != masks[0].shape for m in masks):
        sizes = [f"{p.name}: {m.shape[1]}x{m.shape[0]}" for p, m in zip(paths, masks)]
        raise DataError(f"BUSI masks of one image differ in size: {sizes}")
    return np.logical_or.reduce(masks)


def _name(stem: str, cls: str) -> str:
    """The reference's name, ``benign (12)`` -> ``12_benign.png``."""
    number = NUMBER.search(stem)
    key = number.group(1) if number else re.sub(r"\W+", "_", stem).strip("_")
    return f"{key}_{cls}.png"


def _record(image: Path, masks: list[Path], cls: str, attributes: dict) -> Record:
    name = _name(image.stem, cls)
    words = attributes.get(image.stem) or attributes.get(Path(name).stem) or {}
    meta = {"tumour_class": None if cls == "normal" else cls}
    meta.update({k: words[k] for k in ("shape", "regularity") if k in words})
    masks = sorted(masks)
    return Record(
        image=image,
        # one file is read as is; several are merged when the dataset is written
        mask=masks[0] if len(masks) == 1 else partial(merged_mask, masks),
        img_name=name,
        mask_name=name,
        meta=meta,
    )


def records(folder: Path, attributes: dict[str, dict], seed: int = 42) -> list[Record]:
    """One record per image with at least one mask file, its split dealt within its class
    (module docstring); unmatched files are skipped and warned about."""
    root = find_dir(Path(folder), ROOT, SOURCE.title)
    out, lonely = [], []
    for cls, class_dir in _class_dirs(root).items():
        images, masks = _scan(class_dir)
        lonely += [f"{cls}/{images[s].name} (no mask)" for s in sorted(set(images) - set(masks))]
        lonely += [f"{cls}/{s}_mask* (no image)" for s in sorted(set(masks) - set(images))]
        group = [
            _record(images[s], masks[s], cls, attributes) for s in sorted(images) if s in masks
        ]
        for record, split in zip(group, assign_splits(group, CLASS_SIZES[cls], seed)):
            record.split = split
        out += group
    if lonely:
        warnings.warn(
            f"BUSI: skipped {len(lonely)} unmatched files (first: {lonely[:5]})", stacklevel=2
        )
    return out
