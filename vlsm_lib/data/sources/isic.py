"""ISIC 2016 Challenge, Part 1 (lesion segmentation), as the ISIC archive distributes it.

The download is four zip files, each holding one folder of the same name:

- ``ISBI2016_ISIC_Part1_Training_Data``: 900 dermoscopic images ``ISIC_<7 digits>.jpg``;
- ``ISBI2016_ISIC_Part1_Training_GroundTruth``: their masks ``ISIC_<id>_Segmentation.png``,
  single-channel 8-bit PNG, 0 = background, 255 = lesion, the image's size;
- ``ISBI2016_ISIC_Part1_Test_Data`` / ``ISBI2016_ISIC_Part1_Test_GroundTruth``: the 379 test
  images and masks, same formats.

``records`` takes a folder holding the four zips, the four extracted folders, or a mix; zips are
extracted to a temporary folder removed when the process exits (the records point into it until
``write_dataset`` has copied the files). The official test set is the test split; the training
images are dealt to train / val (810 / 90 in the paper, seeded). Names follow the reference's
(``ISIC_0000000.jpg`` / ``ISIC_0000000_Segmentation.png``), so ``--anns`` matches by stem.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path

from vlsm_lib.data.build import Record, assign_splits
from vlsm_lib.data.sources import Source, SourceError, files, find_dir, register

SOURCE = register(
    Source(
        name="isic",
        title="ISIC 2016 Challenge, Part 1: Lesion Segmentation",
        url="https://challenge.isic-archive.com/data/#2016",
        terms="ISIC Archive challenge data, released under CC-0 (public domain); cite the "
        "ISBI 2016 challenge paper (Gutman et al., arXiv:1605.01397)",
        family="non_radiology",
        sizes={"train": 810, "val": 90, "test": 379},
        module="isic",
        expects="ISBI2016_ISIC_Part1_{Training,Test}_{Data,GroundTruth} folders or their .zip "
        "files (ISIC_<id>.jpg images, ISIC_<id>_Segmentation.png masks)",
    )
)

CLASS = "skin melanoma"
TRAIN_SIZES = {"train": 810, "val": 90}  # the 900 training images; the test set is fixed
PARTS = {
    "train": ("ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth"),
    "test": ("ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth"),
}
IMAGE = re.compile(r"^(ISIC_\d+)$", re.IGNORECASE)
MASK = re.compile(r"^(ISIC_\d+)_segmentation$", re.IGNORECASE)


def _extract(archive: Path) -> Path:
    """Unpack one part's zip into a fresh temporary folder; removed at interpreter exit,
    because the records must stay readable until ``write_dataset`` is done with them."""
    tmp = Path(tempfile.mkdtemp(prefix="vlsm-isic-"))
    atexit.register(shutil.rmtree, tmp, True)
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp)
    return tmp


def _part(root: Path, name: str) -> Path:
    """The folder ``name``: found under ``root``, or extracted from ``name.zip`` found there
    (a zip holding the files without the folder is accepted too)."""
    try:
        found = find_dir(root, name, SOURCE.title)
    except SourceError as err:
        zips = sorted(p for p in root.rglob("*.zip") if p.stem.lower() == name.lower())
        if not zips:
            raise SourceError(f"{err} (or the archive {name}.zip)") from None
        found = _extract(zips[0])
    return _innermost(found, name)


def _innermost(folder: Path, name: str) -> Path:
    """``folder``, or the folder of the same name inside it: a zip of ``X/`` extracted into a
    folder ``X`` gives ``X/X``, and the files are in the inner one."""
    inner = [p for p in folder.iterdir() if p.is_dir() and p.name.lower() == name.lower()]
    return _innermost(inner[0], name) if inner else folder


def _by_id(folder: Path, pattern: re.Pattern, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """{ISIC id: file} for the files of ``folder`` whose stem matches ``pattern``; macOS
    resource forks (``._*``) that some re-packed zips carry are ignored."""
    out = {}
    for path in files(folder, suffixes):
        match = pattern.match(path.stem)
        if match and not path.name.startswith("._"):
            out[match.group(1).upper()] = path
    return out


def _pairs(images: Path, masks: Path, split: str, lonely: list[str]) -> dict[str, tuple]:
    """{id: (image, mask)} of one part; unmatched files are appended to ``lonely``."""
    found = _by_id(images, IMAGE, (".jpg", ".jpeg"))
    gt = _by_id(masks, MASK, (".png",))
    lonely += [f"{split} image {found[k].name} (no mask)" for k in sorted(set(found) - set(gt))]
    lonely += [f"{split} mask {gt[k].name} (no image)" for k in sorted(set(gt) - set(found))]
    return {k: (found[k], gt[k]) for k in sorted(set(found) & set(gt))}


def _record(image: Path, mask: Path, split: str | None, attributes: dict) -> Record:
    words = attributes.get(image.stem, {})
    return Record(
        image=image,
        mask=mask,
        img_name=image.stem + image.suffix.lower(),
        mask_name=mask.stem + ".png",
        split=split,
        meta={"class_name": CLASS, **{k: words[k] for k in ("shape", "colour") if k in words}},
    )


def records(folder: Path, attributes: dict[str, dict], seed: int = 42) -> list[Record]:
    """The training and test pairs of the download (module docstring): test fixed, training
    dealt to train / val with ``seed``. Unmatched files are skipped and warned about; a
    training image that is also a test image is kept in the test split only (the two would
    otherwise share one file name under images/ and masks/)."""
    folder = Path(folder)
    lonely: list[str] = []
    pairs = {
        split: _pairs(_part(folder, images), _part(folder, masks), split, lonely)
        for split, (images, masks) in PARTS.items()
    }
    shared = sorted(set(pairs["train"]) & set(pairs["test"]))
    for key in shared:
        del pairs["train"][key]
    if lonely or shared:
        warnings.warn(
            f"ISIC 2016: skipped {len(lonely)} unmatched files (first: {lonely[:5]}) and "
            f"{len(shared)} training images that are also test images ({shared[:5]})",
            stacklevel=2,
        )
    train = [_record(i, m, None, attributes) for i, m in pairs["train"].values()]
    for record, split in zip(train, assign_splits(train, TRAIN_SIZES, seed)):
        record.split = split
    return train + [_record(i, m, "test", attributes) for i, m in pairs["test"].values()]
