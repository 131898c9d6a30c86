"""CVC-ClinicDB (``clinicdb_polyp``) from its download.

612 frames (384x288 px) of 29 colonoscopy sequences, numbered 1 ... 612 in sequence order.
The archive (``CVC-ClinicDB.rar`` on the challenge page: extract it first) holds
``Original/<n>.tif`` (RGB) and ``Ground Truth/<n>.tif`` (white polyp on black); the widely
used re-packaging adds ``PNG/Original`` + ``PNG/Ground Truth`` next to ``TIF/...``. Every
such pair of sibling folders is a candidate; PNG is preferred (copied as is), TIFF is converted
to PNG. "GroundTruth" without the space is accepted too.

Frames of one sequence show one polyp, so they share a group and never cross splits:
``SEQUENCE_STARTS`` are the first frames of the 29 sequences as published with the dataset
(the frame ranges listed for CVC-612, e.g. by Dataset Ninja's card; only that one listing
could be checked). Frames outside 1 ... 612 are grouped by image. With groups of 6 to 25
frames the splits land near, not exactly on, the paper's 490 / 61 / 61. Names as the
reference: ``<n>.png`` for image and mask.
"""

from __future__ import annotations

from bisect import bisect_right
from pathlib import Path

from vlsm_lib.data.build import Record
from vlsm_lib.data.sources import SourceError, find_dir
from vlsm_lib.data.sources.polyps import (
    CLINICDB,
    by_stem,
    child,
    folders_named,
    pair,
    polyp_records,
)

TRUTH = ("Ground Truth", "GroundTruth")
SEQUENCE_STARTS = (
    *(1, 26, 51, 68, 79, 104, 127, 152, 178, 200, 206, 228, 253, 278, 298),
    *(318, 343, 364, 384, 409, 429, 448, 467, 479, 504, 529, 547, 572, 592),
)
LAST_FRAME = 612


def sequence(stem: str) -> str:
    """The group of frame ``stem``: its sequence (1 ... 29), or "" (the image) when the stem
    is not one of the 612 frame numbers."""
    if not stem.isdigit() or not 1 <= int(stem) <= LAST_FRAME:
        return ""
    return f"sequence-{bisect_right(SEQUENCE_STARTS, int(stem))}"


def _folder_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(Original, Ground Truth) sibling folders, those holding PNG files first."""
    pairs = []
    for original in folders_named(root, ["Original"]):
        truth = child(original.parent, TRUTH)
        if truth is not None:
            pairs.append((original, truth))
    return sorted(pairs, key=lambda p: not any(p[0].glob("*.png")))


def records(folder: Path, attributes: dict[str, dict]) -> list[Record]:
    """The image-mask pairs of the CVC-ClinicDB download in ``folder``."""
    title = CLINICDB.title
    pairs = _folder_pairs(folder)
    if not pairs:
        original = find_dir(folder, "Original", title)  # SourceError when there is none
        beside = sorted(p.name for p in original.parent.iterdir())
        raise SourceError(
            f"{original} has no sibling folder 'Ground Truth': the {title} download holds "
            f"Original/ and Ground Truth/ side by side; found {beside}"
        )
    original, truth = pairs[0]
    matched = pair(by_stem(original, title), by_stem(truth, title), title)
    return polyp_records(matched, attributes, group=sequence)
