"""How many images a split holds and how many prompt levels a dataset has, without loading it.

The dataset on disk answers when it is there (``<root>/<name>/anns/<split>.json``); else the
paper's numbers (``sources.SOURCES[name].sizes``: records per split, and the prompt levels of
its prompt family); else the answer is None (unknown), never a guess. The test-only sets
(CVC-300, ColonDB, ETIS) hold a fraction of their download in ``sizes``, not a count: unknown
until prepared. ``estimate`` plans GPU time with these before any data is downloaded; it asks
for the same split hundreds of times, so each annotation file is read once per process.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from vlsm_lib.data.pooled import members
from vlsm_lib.data.sources import SOURCES

# Prompt levels per prompt family, as the paper's grids use them (P0-P9, CAMUS P0-P7, BUSI and
# CheXlocalize P0-P6).
LEVELS = {"non_radiology": 10, "busi": 7, "camus": 8, "chexlocalize": 7}


@functools.cache
def _records(root, name: str, split: str) -> tuple | None:
    anns = Path(root) / name / "anns" / f"{split}.json"
    return tuple(json.loads(anns.read_text(encoding="utf-8"))) if anns.is_file() else None


def split_size(root, name: str, split: str) -> int | None:
    """Records of one split of one dataset (not a pooled name): on disk, else the paper's."""
    records = _records(root, name, split)
    if records is not None:
        return len(records)
    count = SOURCES[name].sizes.get(split) if name in SOURCES else None
    return count if isinstance(count, int) else None  # a float is a share of the download


def level_count(root, name: str, split: str = "test") -> int | None:
    """Prompt keys common to every record of a dataset's split (a pooled name: to all its
    members), as ``prompt_sweep`` sweeps them; else the paper's levels of its family."""
    counts = []
    for member in members(name):
        records = _records(root, member, split)
        if records:
            counts.append(len(set.intersection(*(set(r["prompts"]) for r in records))))
        elif member in SOURCES:
            counts.append(LEVELS[SOURCES[member].family])
        else:
            return None
    return min(counts) if counts else None
