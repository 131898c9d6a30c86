"""Bring your own data: ``vlsm data import --images DIR --masks DIR --name NAME --class TEXT``.

Any folder of images and one of masks become a dataset in the project's layout, so that a
user's own modality enters every notebook and study unchanged:

- images and masks are matched by file stem; a mask stem may also be the image stem plus one
  of ``MASK_SUFFIXES`` (``_mask``, ``_segmentation``, ...). PNG, JPEG, TIFF and BMP, RGB or
  greyscale; masks 0/1, 0/255, palette or grey saved as RGB (``build.decode_mask``). Images
  without a mask and masks without an image are listed in a warning, counted in dataset.json
  and skipped;
- ``metadata``: a CSV with a column ``image`` (file name or stem) and any of ``shape``,
  ``colour`` (words of the prompts) and other columns (``split_by`` names one of them, e.g. a
  patient id: its records stay in one split);
- splits are seeded, 80 / 10 / 10 % by default;
- prompts P0..P6 come from the masks (count, size, location) and the metadata with the
  non-radiology family (``data.prompts``); P7..P9 need general descriptions of the class
  (``descriptions``, or the paper's for polyp, skin melanoma and foot ulcer) and are left out
  without them.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

from vlsm_lib.data.build import Record, write_dataset
from vlsm_lib.data.io import DataError
from vlsm_lib.data.prompts import CLASS_DESCRIPTIONS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MASK_SUFFIXES = ("", "_mask", "_masks", "_segmentation", "_seg", "_gt", "_label", "-mask")
SIZES = {"train": 0.8, "val": 0.1, "test": 0.1}


def _by_stem(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{what} folder {folder} not found")
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(path.relative_to(folder).with_suffix("").as_posix(), path)
    if not found:
        raise DataError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {what} folder {folder}")
    return found


def _pairs(images: dict[str, Path], masks: dict[str, Path]) -> tuple[list, list, list]:
    """(image stem, image, mask) pairs, images without masks, masks without images."""
    pairs, used = [], set()
    for stem, image in images.items():
        for suffix in MASK_SUFFIXES:
            if stem + suffix in masks and stem + suffix not in used:
                pairs.append((stem, image, masks[stem + suffix]))
                used.add(stem + suffix)
                break
    lonely_images = sorted(set(images) - {p[0] for p in pairs})
    lonely_masks = sorted(set(masks) - used)
    return pairs, lonely_images, lonely_masks


def _metadata(path: str | Path | None, split_by: str | None) -> dict[str, dict]:
    if not path:
        if split_by:
            raise DataError(f"--split-by {split_by} needs --metadata (a CSV with that column)")
        return {}
    with Path(path).open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0]) if rows else []
    for needed in ["image"] + ([split_by] if split_by else []):
        if needed not in columns:
            raise DataError(f"metadata {path} has no column {needed!r}; its columns: {columns}")
    return {Path(r["image"]).with_suffix("").as_posix(): r for r in rows}


def import_folder(
    images: str | Path,
    masks: str | Path,
    name: str,
    class_name: str,
    out: str | Path,
    metadata: str | Path | None = None,
    split_by: str | None = None,
    descriptions: tuple[str, ...] = (),
    sizes: dict[str, float] | None = None,
    seed: int = 42,
) -> Path:
    """Write the dataset ``<out>/<name>`` from two folders (module docstring)."""
    pairs, lonely_images, lonely_masks = _pairs(
        _by_stem(Path(images), "images"), _by_stem(Path(masks), "masks")
    )
    if lonely_images or lonely_masks:
        warnings.warn(
            f"{name}: {len(lonely_images)} images without a mask (first: {lonely_images[:5]}) "
            f"and {len(lonely_masks)} masks without an image (first: {lonely_masks[:5]}) "
            "are skipped",
            stacklevel=2,
        )
    if not pairs:
        raise DataError(f"no image in {images} has a mask in {masks} with the same file stem")
    meta = _metadata(metadata, split_by)
    descriptions = tuple(descriptions) or CLASS_DESCRIPTIONS.get(class_name, ())
    records = []
    for stem, image, mask in pairs:
        row = meta.get(stem) or meta.get(Path(stem).name) or {}
        words = {k: row[k] for k in ("shape", "colour") if row.get(k)}
        records.append(
            Record(
                image=image,
                mask=mask,
                img_name=stem + image.suffix.lower(),
                mask_name=stem + ".png",
                group=str(row.get(split_by, "")) if split_by else "",
                meta={"class_name": class_name, "descriptions": descriptions, **words},
                extra={"cluster": str(row[split_by])} if split_by and row.get(split_by) else {},
                jpeg_mask=mask.suffix.lower() in (".jpg", ".jpeg"),
            )
        )
    about = {
        "source": "vlsm data import",
        "images": str(Path(images).resolve()),
        "masks": str(Path(masks).resolve()),
        "class": class_name,
        "unmatched_images": len(lonely_images),
        "unmatched_masks": len(lonely_masks),
    }
    return write_dataset(name, records, out, "non_radiology", sizes or SIZES, seed, about)
