"""The reference's annotation files over an official download (``prepare(..., anns=DIR)``).

Its files name every image and mask of its splits; each is matched, by file stem, to a record
of the download (``records`` of the dataset's module). Every file they name must be found:
otherwise a DataError lists the missing ones (the first 10) and how many there are. The
records keep the reference's split, names and prompts; with ``regenerate`` the prompts are
left to the project's generator (location by image width, not height: spec §7.2). ``testB``
files, copies of ``test`` in the reference, are not read.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from vlsm_lib.data.build import SPLITS, Record
from vlsm_lib.data.io import DataError


def _key(name: str) -> str:
    return Path(name).stem.lower()


def with_reference(records: list[Record], anns: Path, regenerate: bool) -> list[Record]:
    """``records`` re-dealt to the reference's splits (module docstring)."""
    files = {s: anns / f"{s}.json" for s in SPLITS if (anns / f"{s}.json").is_file()}
    if not files:
        raise DataError(
            f"{anns}: no train.json, val.json or test.json; pass the folder that "
            "holds the reference's annotation files for this dataset"
        )
    by_mask = {_key(r.mask_name): r for r in records}
    by_image = {}
    for r in records:
        by_image.setdefault(_key(r.img_name), r)
    out, missing = [], []
    for split, path in files.items():
        for entry in json.loads(path.read_text(encoding="utf-8")):
            source = by_mask.get(_key(entry["mask_name"]))
            if source is None or _key(entry["img_name"]) not in by_image:
                missing.append(f"{split}: {entry['img_name']} / {entry['mask_name']}")
                continue
            out.append(
                replace(
                    source,
                    img_name=entry["img_name"],
                    mask_name=entry["mask_name"],
                    split=split,
                    prompts=None if regenerate else entry["prompts"],
                )
            )
    if missing:
        raise DataError(
            f"{len(missing)} files named by the annotation files in {anns} are not in the "
            f"download: {missing[:10]}; check that the download and the annotation files are "
            "of the same dataset"
        )
    return out
