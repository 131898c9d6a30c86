"""Kvasir-SEG (``kvasir_polyp``) from its download, ``kvasir-seg.zip``.

The archive holds one folder ``Kvasir-SEG/`` with ``images/<id>.jpg`` (1,000 colonoscopy
frames, 332x487 to 1920x1072 px), ``masks/<id>.jpg`` (the same names; white polyp on black,
saved as JPEG so the edges carry compression noise: binarised at > 127) and
``kavsir_bboxes.json`` (boxes, not needed: the masks give them). The dataset names no patients,
so every image is its own group. Names as the reference: ``<id>.jpg`` for image and mask.
"""

from __future__ import annotations

from pathlib import Path

from vlsm_lib.data.build import Record
from vlsm_lib.data.sources import find_dir
from vlsm_lib.data.sources.polyps import KVASIR, by_stem, pair, polyp_records, require_child


def records(folder: Path, attributes: dict[str, dict]) -> list[Record]:
    """The image-mask pairs of the Kvasir-SEG download in ``folder``."""
    top = find_dir(folder, "Kvasir-SEG", KVASIR.title)
    images = by_stem(require_child(top, "images", KVASIR.title), KVASIR.title)
    masks = by_stem(require_child(top, "masks", KVASIR.title), KVASIR.title)
    return polyp_records(pair(images, masks, KVASIR.title), attributes)
