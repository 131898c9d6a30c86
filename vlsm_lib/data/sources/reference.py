"""The reference's annotation files over an official download (``prepare(..., anns=DIR)``).

Its files name every image and mask of its splits; each is matched to a record of the
download (``records`` of the dataset's module) by its path without suffix, or by its file
stem where that is unique (CAMUS's three structures share one stem). Every file they name
must be found: otherwise a DataError lists the missing ones (the first 10) and their count. The
records keep the reference's split, names and prompts; with ``regenerate`` the prompts are
left to the project's generator (location by image width, not height). ``testB``
files, copies of ``test`` in the reference, are not read.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from vlsm_lib.data.build import SPLITS, Record
from vlsm_lib.data.io import DataError


def _key(name: str) -> str:
    """A name without its suffix, lower case: ``masks/train/mask_1/p1_2CH_ED_gt.png`` and
    ``train/mask_1/p1_2CH_ED_gt.png`` compare by their path, sub-folders included."""
    return Path(name).with_suffix("").as_posix().lower()


def _index(names: list[tuple[str, Record]]) -> dict[str, Record]:
    """Records by full key and, where a stem is unique, by stem too (the reference sometimes
    drops the sub-folders a download has)."""
    out, stems = {}, {}
    for name, record in names:
        out[_key(name)] = record
        stems.setdefault(Path(name).stem.lower(), []).append(record)
    for stem, found in stems.items():
        if len(found) == 1:
            out.setdefault(stem, found[0])
    return out


def _find(index: dict[str, Record], name: str) -> Record | None:
    return index.get(_key(name)) or index.get(Path(name).stem.lower())


def with_reference(records: list[Record], anns: Path, regenerate: bool) -> list[Record]:
    """``records`` re-dealt to the reference's splits (module docstring)."""
    files = {s: anns / f"{s}.json" for s in SPLITS if (anns / f"{s}.json").is_file()}
    if not files:
        raise DataError(
            f"{anns}: no train.json, val.json or test.json; pass the folder that "
            "holds the reference's annotation files for this dataset"
        )
    by_mask = _index([(r.mask_name, r) for r in records])
    by_image = _index([(r.img_name, r) for r in records])
    out, missing = [], []
    for split, path in files.items():
        for entry in json.loads(path.read_text(encoding="utf-8")):
            source = _find(by_mask, entry["mask_name"])
            if source is None or _find(by_image, entry["img_name"]) is None:
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
