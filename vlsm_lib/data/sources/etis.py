"""ETIS-LaribPolypDB (``etis_polyp``) from either of its two downloads.

196 frames (1225x966 px) from 34 colonoscopy videos, numbered 1 ... 196:

- PraNet's ``TestDataset.zip``: ``TestDataset/ETIS-LaribPolypDB/images/<n>.png`` and
  ``masks/<n>.png`` (grey-edged masks, binarised at > 127; ``polyps.benchmark_records``);
- the original archive from the challenge page (a .rar: extract it first):
  ``ETIS-LaribPolypDB/ETIS-LaribPolypDB/<n>.tif`` with ``ETIS-LaribPolypDB/Ground Truth/p<n>.tif``
  (a mask is its frame's name prefixed with "p"; "GroundTruth" without the space is accepted).

The download does not say which video a frame comes from, so each frame is its own group; the
set is test only anyway. Names as the reference: ``<n>.png`` for image and mask.
"""

from __future__ import annotations

from pathlib import Path

from vlsm_lib.data.build import Record
from vlsm_lib.data.sources import SourceError, find_dir
from vlsm_lib.data.sources.polyps import (
    ETIS,
    benchmark_records,
    by_stem,
    child,
    folders_named,
    pair,
    polyp_records,
)

NAME = "ETIS-LaribPolypDB"
TRUTH = ("Ground Truth", "GroundTruth")


def _original(folder: Path) -> tuple[Path, Path] | None:
    """(frames, Ground Truth) folders of the original layout, or None."""
    for truth in folders_named(folder, TRUTH):
        frames = child(truth.parent, [NAME])
        if frames is not None:
            return frames, truth
    return None


def records(folder: Path, attributes: dict[str, dict]) -> list[Record]:
    """The image-mask pairs of the ETIS-LaribPolypDB download in ``folder``."""
    top = find_dir(folder, NAME, ETIS.title)  # SourceError when neither layout is there
    for candidate in folders_named(folder, [NAME]):
        if child(candidate, ["images"]) and child(candidate, ["masks"]):
            return benchmark_records(candidate, attributes, NAME, ETIS.title)
    original = _original(folder)
    if original is None:
        raise SourceError(
            f"{top} does not look like the {ETIS.title} download: expected images/ and "
            f"masks/ inside it (PraNet's copy) or {NAME}/ beside 'Ground Truth'/ (the "
            f"original); found {sorted(p.name for p in top.iterdir())[:12]}"
        )
    frames, truth = original
    matched = pair(by_stem(frames, ETIS.title), by_stem(truth, ETIS.title, strip="p"), ETIS.title)
    return polyp_records(matched, attributes)
