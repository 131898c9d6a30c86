"""CVC-300 (``cvc300_polyp``) as PraNet's polyp benchmark distributes it.

CVC-300 is the test part of EndoScene (CVC-EndoSceneStill): 60 frames, 574x500 px, named
by their frame number (149 ... 208). Its usual download is PraNet's ``TestDataset.zip``:
``TestDataset/CVC-300/images/<n>.png`` and ``masks/<n>.png`` (grey-edged masks, binarised at
> 127; ``polyps.benchmark_records``). EndoScene's own archive (its folder names could not be
confirmed) is not read: use PraNet's copy. Each frame is its own group; the set is test only.
"""

from __future__ import annotations

from pathlib import Path

from vlsm_lib.data.build import Record
from vlsm_lib.data.sources.polyps import CVC300, benchmark_records


def records(folder: Path, attributes: dict[str, dict]) -> list[Record]:
    """The image-mask pairs of ``TestDataset/CVC-300`` in ``folder``."""
    return benchmark_records(folder, attributes, "CVC-300", CVC300.title)
