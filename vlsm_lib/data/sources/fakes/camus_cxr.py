"""Miniature downloads of CAMUS and CheXlocalize, in their official layouts and encodings.

Each function writes one fake into a given folder and returns the path to pass to
``sources.prepare``.

- ``camus``: the 2019 challenge, ``training/patientNNNN/`` (patients 1, 2: val; 51-53: train)
  and ``testing/patientNNNN/`` (1, 2), frames ``patientNNNN_{2CH,4CH}_{ED,ES}[_gt].mhd`` +
  ``.raw`` (one-slice 3D MetaImage, uint8, 28x36 px) written by ``write_mhd``, the
  ``_sequence`` files and ``Info_{2CH,4CH}.cfg``; patient 52 has no ``Info_4CH.cfg``.
  ``test_gt=False`` writes the testing folder without ``_gt`` files, as the challenge shipped it;
- ``camus_public``: the 2023 release, ``CAMUS_public/database_nifti/patientNNNN/`` with
  ``.nii.gz`` frames (needs nibabel) and ``database_split/``;
- ``chexlocalize``: ``CheXpert/{val,test}/patientN/study1/viewN_{frontal,lateral}.jpg``
  (40x32 grey JPEGs), ``CheXpert/{val,test}_labels.csv``, ``CheXlocalize/
  gt_segmentations_val.json`` (COCO RLE strings from ``rle_string``, all 10 pathologies, empty
  ones included), ``gt_annotations_test.json`` (polygons) and a human-benchmark file that must
  not be read. Patient 64744 has no row in the labels.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CAMUS_SIZE = (28, 36)  # width, height
# (folder, patient number) -> Sex, Age, ImageQuality of Info_*.cfg
CAMUS_PATIENTS = {
    ("training", 1): ("M", 73, "Good"),
    ("training", 2): ("F", 45, "Medium"),
    ("training", 51): ("M", 60, "Poor"),
    ("training", 52): ("F", 81, "Good"),
    ("training", 53): ("M", 38, "Medium"),
    ("testing", 1): ("F", 66, "Good"),
    ("testing", 2): ("M", 57, "Poor"),
}
NO_INFO_4CH = ("training", 52)

CXR_SIZE = (40, 32)  # width, height
# image id -> {pathology: box (x0, y0, x1, y1)}; val ids have RLE masks, test ids polygons
CXR_MASKS = {
    "patient64541_study1_view1_frontal": {
        "Enlarged Cardiomediastinum": (14, 8, 26, 24),
        "Airspace Opacity": (2, 4, 12, 20),
        "Atelectasis": (28, 18, 37, 28),
    },
    "patient64541_study1_view2_lateral": {"Airspace Opacity": (16, 20, 30, 28)},
    "patient64542_study1_view1_frontal": {"Support Devices": (5, 2, 9, 30)},
    "patient64543_study1_view1_frontal": {"Cardiomegaly": (10, 12, 30, 26)},
    "patient64741_study1_view1_frontal": {
        "Pleural Effusion": (2, 22, 14, 30),
        "Edema": (4, 4, 36, 20),
    },
    "patient64742_study1_view1_frontal": {"Lung Lesion": (30, 6, 34, 10)},
    "patient64742_study1_view2_lateral": {"Consolidation": (8, 8, 20, 24)},
    "patient64743_study1_view1_frontal": {"Pneumothorax": (26, 2, 38, 14)},
    "patient64744_study1_view1_frontal": {"Support Devices": (18, 0, 22, 31)},
}
PATHOLOGIES = (
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Airspace Opacity",
    "Edema",
    "Consolidation",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Support Devices",
)
LABEL_COLUMNS = (
    "No Finding",
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
# study -> positive observations (labels are per study; patient64744 has no row)
CXR_FINDINGS = {
    "patient64541_study1": ("Enlarged Cardiomediastinum", "Lung Opacity", "Atelectasis"),
    "patient64542_study1": ("Support Devices",),
    "patient64543_study1": ("Cardiomegaly", "Fracture"),
    "patient64741_study1": ("Lung Opacity", "Edema", "Pleural Effusion"),
    "patient64742_study1": ("Lung Lesion", "Consolidation", "Pneumonia"),
    "patient64743_study1": ("Pneumothorax",),
}


def write_mhd(path: Path, array: np.ndarray) -> None:
    """A (H, W) uint8 array as a one-slice 3D MetaImage: ``path`` (.mhd) + same-stem .raw."""
    h, w = array.shape
    raw = path.with_suffix(".raw")
    raw.write_bytes(np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    path.write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        "CompressedData = False\nTransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\n"
        "CenterOfRotation = 0 0 0\nAnatomicalOrientation = RAI\nElementSpacing = 0.3 0.15 1\n"
        f"DimSize = {w} {h} 1\nElementType = MET_UCHAR\nElementDataFile = {raw.name}\n"
    )


def camus_labels(phase: str) -> np.ndarray:
    """The (H, W) label frame: 2 myocardium around 1 the cavity, 3 the atrium below; smaller
    at ES. Not symmetric, so that a transposed reading shows."""
    w, h = CAMUS_SIZE
    shrink = 1 if phase == "ES" else 0
    labels = np.zeros((h, w), np.uint8)
    labels[3 + shrink : 22, 5 + shrink : 21 - shrink] = 2
    labels[6 + shrink : 19, 8 + shrink : 18 - shrink] = 1
    labels[24:33, 8:18] = 3
    return labels


def _camus_image(labels: np.ndarray, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, size=labels.shape, dtype=np.uint8)
    return image + np.where(labels == 2, 150, 0).astype(np.uint8)


def _info(sex: str, age: int, quality: str) -> str:
    return (
        f"ED: 1\nES: 12\nNbFrame: 12\nSex: {sex}\nAge: {age}\nImageQuality: {quality}\n"
        "EF: 55\nFrameRate: 50.0\n"
    )


def _camus_patient(folder: Path, number: int, info: tuple, write, suffix: str, **how) -> None:
    """One patient's frames (with ``_gt`` unless how["gt"] is False) and Info files (without
    Info_4CH.cfg if how["no_4ch"])."""
    patient = f"patient{number:04d}"
    folder.mkdir(parents=True)
    for view in ("2CH", "4CH"):
        if not (how.get("no_4ch") and view == "4CH"):
            (folder / f"Info_{view}.cfg").write_text(_info(*info))
        for k, phase in enumerate(("ED", "ES")):
            labels = camus_labels(phase)
            # every frame its own pixels: the check flags identical files in two splits
            seed = [number, k, int(view == "4CH"), int("testing" in str(folder))]
            write(folder / f"{patient}_{view}_{phase}{suffix}", _camus_image(labels, seed))
            if how.get("gt", True):
                write(folder / f"{patient}_{view}_{phase}_gt{suffix}", labels)
        # the sequence is not read; a decoy that a reader must not take for a frame
        write(folder / f"{patient}_{view}_sequence{suffix}", camus_labels("ED"))


def camus(tmp: Path, test_gt: bool = True) -> Path:
    """The 2019 challenge download (module docstring); returns its folder."""
    root = Path(tmp) / "CAMUS"
    for key, info in CAMUS_PATIENTS.items():
        folder = root / key[0] / f"patient{key[1]:04d}"
        gt = test_gt or key[0] == "training"
        _camus_patient(folder, key[1], info, write_mhd, ".mhd", gt=gt, no_4ch=key == NO_INFO_4CH)
    return root


def _write_nifti(path: Path, array: np.ndarray) -> None:
    import nibabel

    # nibabel indexes (x, y): the frame's transpose
    nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(array.T), np.eye(4)), str(path))


def camus_public(tmp: Path, n: int = 10) -> Path:
    """The 2023 release with ``n`` patients (the metadata of CAMUS_PATIENTS in turn); returns
    the ``CAMUS_public`` folder."""
    root = Path(tmp) / "CAMUS_public"
    infos = list(CAMUS_PATIENTS.values())
    for i in range(1, n + 1):
        folder = root / "database_nifti" / f"patient{i:04d}"
        _camus_patient(folder, i, infos[i % len(infos)], _write_nifti, ".nii.gz")
    split = root / "database_split"
    split.mkdir()
    (split / "subgroup_testing.txt").write_text(f"patient{n:04d}\n")
    return root


def rle_string(mask: np.ndarray) -> str:
    """An (h, w) bool mask as COCO's compressed RLE string (runs down the columns)."""
    flat = np.asarray(mask, bool).T.reshape(-1)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat.astype(np.int8))) + 1, [flat.size]])
    runs = [0] * bool(flat[0]) + [int(r) for r in np.diff(bounds)]
    chars = []
    for i, run in enumerate(runs):
        x = run - (runs[i - 2] if i > 2 else 0)
        more = True
        while more:
            c, x = x & 0x1F, x >> 5
            more = x != -1 if c & 0x10 else x != 0
            chars.append(chr(c + (0x20 if more else 0) + 48))
    return "".join(chars)


def box_polygon(box: tuple) -> list[list[float]]:
    """The box outline as a contour of [x, y] points (one mid-way down the right side)."""
    x0, y0, x1, y1 = box
    return [[x0, y0], [x1, y0], [x1, (y0 + y1) / 2], [x1, y1], [x0, y1]]


def cxr_mask(box: tuple) -> np.ndarray:
    """The (H, W) bool mask of a box, as PIL fills its polygon."""
    canvas = Image.new("1", CXR_SIZE)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in box_polygon(box)], outline=1, fill=1)
    return np.asarray(canvas, dtype=bool)


def _cxr_path(image_id: str) -> str:
    patient, study, view = image_id.split("_", 2)
    return f"{patient}/{study}/{view}.jpg"


def cxr_split(image_id: str) -> str:
    """CheXpert's validation patients are 64541-64740, its test patients 64741 on."""
    return "val" if int(image_id.split("_")[0][len("patient") :]) < 64741 else "test"


def _labels_row(image_id: str, prefix: str) -> list:
    found = CXR_FINDINGS[image_id.rsplit("_", 2)[0]]
    cells = [float(c in found or (c == "No Finding" and not found)) for c in LABEL_COLUMNS]
    return [f"{prefix}{_cxr_path(image_id)}", "Male", 70, "Frontal", "AP", *cells]


def _labels_csv(path: Path, ids: list[str], prefix: str) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *LABEL_COLUMNS])
        for image_id in ids:
            if image_id.rsplit("_", 2)[0] in CXR_FINDINGS:
                out.writerow(_labels_row(image_id, prefix))


def _rle(image_id: str, pathology: str) -> dict:
    w, h = CXR_SIZE
    box = CXR_MASKS[image_id].get(pathology)
    mask = cxr_mask(box) if box else np.zeros((h, w), bool)
    return {"size": [h, w], "counts": rle_string(mask)}


def chexlocalize(tmp: Path) -> Path:
    """The CheXlocalize download (module docstring); returns its folder."""
    root = Path(tmp) / "chexlocalize"
    w, h = CXR_SIZE
    splits = {"val": [], "test": []}
    for k, image_id in enumerate(CXR_MASKS):
        splits[cxr_split(image_id)].append(image_id)
        path = root / "CheXpert" / cxr_split(image_id) / _cxr_path(image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(k).integers(0, 255, size=(h, w), dtype=np.uint8)
        Image.fromarray(pixels).save(path, quality=90)
    _labels_csv(root / "CheXpert" / "val_labels.csv", splits["val"], "CheXpert-v1.0/valid/")
    _labels_csv(root / "CheXpert" / "test_labels.csv", splits["test"], "test/")
    gt = root / "CheXlocalize"
    gt.mkdir()
    segmentations = {i: {p: _rle(i, p) for p in PATHOLOGIES} for i in splits["val"]}
    (gt / "gt_segmentations_val.json").write_text(json.dumps(segmentations))
    annotations = {
        i: {"img_size": [h, w], **{p: [box_polygon(b)] for p, b in CXR_MASKS[i].items()}}
        for i in splits["test"]
    }
    (gt / "gt_annotations_test.json").write_text(json.dumps(annotations))
    decoy = {i: {"Edema": [box_polygon((0, 0, 39, 31))]} for i in splits["test"]}
    (gt / "hb_annotations_test.json").write_text(json.dumps(decoy))
    return root


FAKES = {"camus": camus, "chexlocalize": chexlocalize}
