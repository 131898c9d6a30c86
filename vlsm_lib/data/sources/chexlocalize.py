"""CheXlocalize (Stanford AIMI): radiologist segmentations of 10 pathologies on the CheXpert
validation (234 images, 200 patients) and test (668 images, 500 patients) chest X-rays.

The download (its repository's README, rajpurkarlab/cheXlocalize) holds:

- ``CheXpert/val/`` and ``CheXpert/test/``: the images, ``patientNNNNN/studyN/viewN_frontal.jpg``
  or ``viewN_lateral.jpg`` (an earlier release: ``CheXpert-v1.0/valid/``);
- ``CheXpert/val_labels.csv``, ``CheXpert/test_labels.csv`` (earlier: ``valid.csv``): the
  CheXpert observations per image, ``Path`` column then one column per observation, 1 =
  positive (a ``Study`` column, as in CheXpert's ``groundtruth.csv``, is read per study);
- ``CheXlocalize/gt_segmentations_{val,test}.json``: {image id: {pathology: COCO RLE
  {"size": [h, w], "counts": compressed string}}}, all 10 pathologies, empty masks included;
- ``CheXlocalize/gt_annotations_{val,test}.json``: the radiologists' polygons, {image id:
  {"img_size": [h, w], pathology: [[[x, y], ...], ...]}}, read (filled with PIL) for a split
  whose segmentations file is absent;
- Grad-CAM maps and the human benchmark (``gradcam_*``, ``hb_*``), not read.

The image id is ``patientNNNNN_studyN_viewN_frontal``. One record per (image, pathology) with a
non-empty mask (as the paper): image ``<id>.jpg`` (copied as it is), mask
``<id>_<pathology, lower case, underscores>.png`` as the reference's (Appendix A). Prompts use
the pathology (``Airspace Opacity``), the view (frontal/lateral, from the file name) and the
findings: the observations positive in the labels, in CheXpert order. Splits are
dealt by patient to the paper's 1279/446/452 records; ``cluster`` = the image, so that an
image's masks are resampled together. Shape words come from the attributes CSV, keyed by the
mask's stem or the image id.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vlsm_lib.data.build import Record
from vlsm_lib.data.io import DataError
from vlsm_lib.data.sources import Source, SourceError, register

SOURCE = register(
    Source(
        name="chexlocalize",
        title="CheXlocalize: radiologist segmentations on CheXpert validation and test images",
        url="https://stanfordaimi.azurewebsites.net/datasets/23c56a0d-15de-405b-87c8-99c30138950c",
        terms=(
            "Stanford AIMI research use agreement: register on the AIMI site and accept its "
            "terms (non-commercial research use, no redistribution)"
        ),
        family="chexlocalize",
        sizes={"train": 1279, "val": 446, "test": 452},
        module="chexlocalize",
        expects=(
            "CheXpert/{val,test}/patientNNNNN/studyN/viewN_{frontal,lateral}.jpg, "
            "CheXpert/{val,test}_labels.csv and CheXlocalize/gt_segmentations_{val,test}.json "
            "(or gt_annotations_{val,test}.json)"
        ),
    )
)

# CheXpert's 13 observations in its order; "No Finding" is never a finding.
OBSERVATIONS = (
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
ALIASES = {"Airspace Opacity": "Lung Opacity"}  # CheXlocalize's name for CheXpert's column
IMAGE_PATH = re.compile(r"(patient\d+)/(study\d+)(?:/(view\d+_(?:frontal|lateral)))?", re.I)
GT_FILE = re.compile(r"^gt_(segmentations|annotations)_(\w+)\.json$", re.I)


def rle_counts(counts: str | bytes) -> list[int]:
    """COCO's compressed RLE string -> run lengths (background first). Each run is written in
    5-bit groups as characters from '0' (0x20: more groups follow, 0x10 of the last group: the
    value is negative); from the third run on, the value is a difference to the run two back."""
    text = counts.decode("ascii") if isinstance(counts, bytes) else counts
    out: list[int] = []
    i = 0
    while i < len(text):
        value, shift, more = 0, 0, True
        while more:
            c = ord(text[i]) - 48
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            shift += 5
            i += 1
        if c & 0x10:
            value -= 1 << shift
        if len(out) > 2:
            value += out[-2]
        out.append(value)
    return out


def _runs(rle: dict) -> list[int]:
    counts = rle["counts"]
    return list(counts) if isinstance(counts, list) else rle_counts(counts)


def rle_mask(rle: dict) -> np.ndarray:
    """A COCO RLE ({"size": [h, w], "counts": string or list}) as an (h, w) bool mask; the
    runs go down the columns (Fortran order)."""
    h, w = (int(v) for v in rle["size"])
    runs = np.asarray(_runs(rle), dtype=np.int64)
    if runs.sum() != h * w or (runs < 0).any():
        raise DataError(f"RLE runs add up to {runs.sum()} pixels, its size {w}x{h} has {h * w}")
    flat = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
    return flat.reshape(w, h).T


def polygon_mask(polygons: list, size: list[int]) -> np.ndarray:
    """Contours [[[x, y], ...], ...] filled (outline included) on an (h, w) bool mask."""
    h, w = (int(v) for v in size)
    canvas = Image.new("1", (w, h))
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        points = [(float(x), float(y)) for x, y in polygon]
        if points:
            draw.polygon(points, outline=1, fill=1)
    return np.asarray(canvas, dtype=bool)


def _image_index(root: Path) -> dict[str, Path]:
    """image id -> JPEG of every ``patientN/studyN/viewN_{frontal,lateral}.jpg`` under root."""
    out = {}
    for path in sorted(root.rglob("view*.jpg")):
        match = IMAGE_PATH.search(path.relative_to(root).as_posix())
        if match and match.group(3):
            out.setdefault("_".join(match.groups()), path)
    return out


def _gt_files(root: Path) -> dict[str, tuple[str, Path]]:
    """split -> (kind, file): the segmentations file of each split, else its annotations."""
    found: dict[str, tuple[str, Path]] = {}
    for path in sorted(root.rglob("gt_*.json")):
        match = GT_FILE.match(path.name)
        if match:
            kind, split = match.group(1).lower(), match.group(2).lower()
            if split not in found or kind == "segmentations":
                found[split] = (kind, path)
    return found


def _masks(kind: str, path: Path) -> dict[tuple[str, str], partial]:
    """(image id, pathology) -> a function returning its mask, for the non-empty masks."""
    data = json.loads(path.read_text(encoding="utf-8"))
    out = {}
    for image_id, entries in data.items():
        for pathology, value in entries.items():
            if kind == "segmentations" and any(_runs(value)[1::2]):
                out[image_id, pathology] = partial(rle_mask, value)
            elif kind == "annotations" and pathology != "img_size" and any(value):
                out[image_id, pathology] = partial(polygon_mask, value, entries["img_size"])
    return out


def _positive(value: str | None) -> bool:
    try:
        return float(value or "") == 1.0
    except ValueError:
        return False


def _findings(row: dict[str, str]) -> tuple[str, ...]:
    columns = {ALIASES.get(k.strip(), k.strip()): v for k, v in row.items() if k}
    return tuple(o for o in OBSERVATIONS if _positive(columns.get(o)))


def read_labels(root: Path) -> dict[str, tuple[str, ...]]:
    """Findings per image id and per study (``patientN_studyN``) from every labels CSV under
    root that has a Path or Study column and CheXpert observation columns."""
    out: dict[str, tuple[str, ...]] = {}
    for path in sorted(root.rglob("*.csv")):
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = {ALIASES.get(c.strip(), c.strip()) for c in reader.fieldnames or ()}
            key = next((c for c in reader.fieldnames or () if c in ("Path", "Study")), None)
            if key is None or not columns & set(OBSERVATIONS):
                continue
            for row in reader:
                match = IMAGE_PATH.search(row[key] or "")
                if match:
                    findings = _findings(row)
                    out.setdefault("_".join(match.groups()[:2]), findings)
                    if match.group(3):
                        out["_".join(match.groups())] = findings
    return out


def _find(root: Path) -> tuple[dict[str, Path], dict[str, tuple[str, Path]]]:
    images, gt = _image_index(root), _gt_files(root)
    if not images or not gt:
        top = sorted(p.name for p in root.iterdir())[:12]
        lacking = [] if images else ["CheXpert/{val,test}/patientNNNNN/studyN/viewN_*.jpg"]
        lacking += [] if gt else ["CheXlocalize/gt_segmentations_{val,test}.json"]
        raise SourceError(
            f"{root} does not look like the CheXlocalize download: expected "
            f"{' and '.join(lacking)} inside it; found {top}"
        )
    return images, gt


def _warn_labels(labels: dict, unlabelled: list[str]) -> None:
    if not labels:
        warnings.warn(
            "CheXlocalize: no labels CSV (CheXpert/val_labels.csv, test_labels.csv) found; "
            "prompts P5 and P6 leave out the findings",
            stacklevel=3,
        )
    elif unlabelled:
        warnings.warn(
            f"CheXlocalize: {len(unlabelled)} images have no row in the labels CSV, so their "
            f"prompts leave out the findings; first: {unlabelled[:5]}",
            stacklevel=3,
        )


def _record(image_id, image, pathology, mask, findings, attributes) -> Record:
    mask_stem = f"{image_id}_{pathology.lower().replace(' ', '_')}"
    shape = (attributes.get(mask_stem) or attributes.get(image_id) or {}).get("shape")
    meta = {
        "pathology": pathology,
        "view": image_id.rsplit("_", 1)[-1].lower(),
        "findings": findings,
        **({"shape": shape} if shape else {}),
    }
    return Record(
        image=image,
        mask=mask,
        img_name=f"{image_id}.jpg",
        mask_name=f"{mask_stem}.png",
        group=image_id.split("_", 1)[0],
        meta=meta,
        extra={"cluster": image_id},
    )


def records(folder: Path, attributes: dict[str, dict]) -> list[Record]:
    """The download's records (module docstring)."""
    root = Path(folder)
    images, gt = _find(root)
    labels = read_labels(root)
    out, missing, unlabelled = [], [], set()
    for kind, path in (gt[split] for split in sorted(gt)):
        for (image_id, pathology), mask in sorted(_masks(kind, path).items()):
            if image_id not in images:
                missing.append(image_id)
                continue
            findings = labels.get(image_id) or labels.get(image_id.rsplit("_", 2)[0])
            if findings is None:
                unlabelled.add(image_id)
            out.append(
                _record(image_id, images[image_id], pathology, mask, findings or (), attributes)
            )
    if missing:
        warnings.warn(
            f"CheXlocalize: {len(missing)} masks name an image not in the download, skipped; "
            f"first: {sorted(set(missing))[:5]}",
            stacklevel=2,
        )
    _warn_labels(labels, sorted(unlabelled))
    if not out:
        raise SourceError(f"CheXlocalize: no non-empty mask of an image found under {root}")
    return out
