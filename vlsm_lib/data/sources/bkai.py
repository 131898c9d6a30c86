"""BKAI-IGH NeoPolyp-Small (``bkai_polyp``) from the Kaggle competition data.

``bkai-igh-neopolyp.zip`` (Kaggle: competition "bkai-igh-neopolyp", rules accepted) holds
``train/train/<id>.jpeg`` (1,000 white-light and FICE frames), ``train_gt/train_gt/<id>.jpeg``
(their masks), ``test/test/`` (200 frames without masks: not read) and
``sample_submission.csv``. The masks are RGB and colour-coded: red = neoplastic polyp, green =
non-neoplastic polyp, black = background; the paper segments "polyp", so either colour is
foreground (``ColourMask``). The dataset names no patients: each image is its own group. Names
as the reference: ``<id>.jpeg`` for image and mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlsm_lib.data.build import Record
from vlsm_lib.data.io import read_image
from vlsm_lib.data.sources import find_dir
from vlsm_lib.data.sources.polyps import BKAI, by_stem, child, pair, polyp_records


@dataclass(frozen=True)
class ColourMask:
    """A red / green BKAI mask file, read as foreground = either colour."""

    path: Path

    def __call__(self) -> np.ndarray:
        rgb = np.asarray(read_image(self.path))
        # JPEG noise keeps black below ~40 and the colours above ~200 in their channel, and
        # blends them at the edges: half-way in the red or green channel splits it fairly
        return rgb[..., :2].max(axis=2) > 127

    def __str__(self) -> str:
        return str(self.path)  # dataset.json lists a skipped mask by its file


def _files_folder(folder: Path, name: str) -> Path:
    """Kaggle nests each folder in one of the same name (``train/train``); a flattened copy
    (``train/*.jpeg``) is read too."""
    outer = find_dir(folder, name, BKAI.title)
    return child(outer, [name]) or outer


def records(folder: Path, attributes: dict[str, dict]) -> list[Record]:
    """The image-mask pairs of the BKAI-IGH NeoPolyp training data in ``folder``."""
    title = BKAI.title
    images = by_stem(_files_folder(folder, "train"), title)
    masks = by_stem(_files_folder(folder, "train_gt"), title)
    matched = pair(images, masks, title)
    return polyp_records(matched, attributes, mask=ColourMask)
