"""CVC-ColonDB (``colondb_polyp``) as PraNet's polyp benchmark distributes it.

380 frames (574x500 px) from 15 colonoscopy videos, named 1 ... 380. The original CVC site is
offline; the usual download is PraNet's ``TestDataset.zip``:
``TestDataset/CVC-ColonDB/images/<n>.png`` and ``masks/<n>.png`` (grey-edged masks, binarised
at > 127; ``polyps.benchmark_records``); a folder ``CVC-ColonDB`` with ``images/`` and
``masks/`` from elsewhere reads the same. The download does not say which video a frame comes
from, so each frame is its own group; the set is test only anyway.
"""

from __future__ import annotations

from pathlib import Path

from vlsm_lib.data.build import Record
from vlsm_lib.data.sources.polyps import COLONDB, benchmark_records


def records(folder: Path, attributes: dict[str, dict]) -> list[Record]:
    """The image-mask pairs of ``TestDataset/CVC-ColonDB`` in ``folder``."""
    return benchmark_records(folder, attributes, "CVC-ColonDB", COLONDB.title)
