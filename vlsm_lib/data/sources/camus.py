"""CAMUS (Creatis, Lyon): 2D echocardiography of 500 patients, read as its downloads ship.

Two releases are read:

- the 2023 public release ``CAMUS_public``: ``database_nifti/patientNNNN/`` holds per view (2CH,
  4CH) and instant (ED, ES) ``patientNNNN_4CH_ED.nii.gz`` (the grey frame) and
  ``patientNNNN_4CH_ED_gt.nii.gz`` (labels: 0 background, 1 left ventricle cavity, 2 myocardium,
  3 left atrium), half sequences (not read) and ``Info_2CH.cfg`` / ``Info_4CH.cfg`` (``Key:
  value`` lines: ED, ES, NbFrame, Sex, Age, ImageQuality, EF, FrameRate). ``database_split/``
  is not read. NIfTI is read with nibabel (imported only then);
- the 2019 challenge: ``training/patientNNNN/`` (450 patients) and ``testing/patientNNNN/``
  (50) with the same file names as MetaImage pairs (``.mhd`` header + ``.raw`` data), read by
  ``read_mhd``.

Each frame gives one grey image ``patientNNNN_2CH_ED.png`` and three records, one per structure (as
the reference reads them): ``mask_1/patientNNNN_2CH_ED_gt.png`` (label 1), ``mask_2/...`` (2),
``mask_3/...`` (3), with view (two/four), cycle (diastole/systole) and the patient's sex, age and
image quality for the prompts. The challenge layout keeps the reference's folders:
``images/train/``, ``masks/train/mask_k/`` for the training patients and ``images/test/``,
``masks/test/mask_k/`` for the testing ones; the 2023 release, whose patient numbers are unique, has
no such folder.

Splits, as the paper's: in the challenge layout val = training patients 0001-0050, train = the other
training patients, test = the testing patients. Without a testing folder with ground truth (the
2023 release) the patients are dealt by ``write_dataset`` to 4800/600/600 records, i.e.
400/50/50 patients (group = patient). ``cluster`` = the patient.

Shape words come from the attributes CSV, keyed by ``patientNNNN_2CH_ED_mask_1`` (one
structure) or by the frame ``patientNNNN_2CH_ED``.
"""

from __future__ import annotations

import re
import warnings
import zlib
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
from PIL import Image

from vlsm_lib.data.build import Record
from vlsm_lib.data.io import DataError
from vlsm_lib.data.sources import Source, SourceError, find_dir, register

SOURCE = register(
    Source(
        name="camus",
        title="CAMUS: Cardiac Acquisitions for Multi-structure Ultrasound Segmentation",
        url="https://www.creatis.insa-lyon.fr/Challenge/camus/",
        terms=(
            "registration on the Creatis CAMUS site; free of charge for non-commercial "
            "scientific research only; cite Leclerc et al., IEEE TMI 2019"
        ),
        family="camus",
        sizes={"train": 4800, "val": 600, "test": 600},
        module="camus",
        expects=(
            "database_nifti/patientNNNN/patientNNNN_{2CH,4CH}_{ED,ES}[_gt].nii.gz and "
            "Info_{2CH,4CH}.cfg (2023 release), or training/ and testing/patientNNNN/ "
            "with the same names as .mhd + .raw (2019 challenge)"
        ),
    )
)

STRUCTURES = {"mask_1": 1, "mask_2": 2, "mask_3": 3}  # mask folder -> label in the _gt file
VIEWS = {"2CH": "two", "4CH": "four"}
CYCLES = {"ED": "diastole", "ES": "systole"}
SEXES = {"F": "female", "M": "male"}
VAL_PATIENTS = 50  # the paper's split: val = training patients 0001-0050
FRAME = re.compile(r"^(patient\d+)_(2CH|4CH)_(ED|ES)(\.nii\.gz|\.nii|\.mhd)$", re.IGNORECASE)
PATIENT = re.compile(r"^patient\d+$", re.IGNORECASE)
MET_TYPES = {
    "MET_UCHAR": "u1",
    "MET_CHAR": "i1",
    "MET_USHORT": "u2",
    "MET_SHORT": "i2",
    "MET_UINT": "u4",
    "MET_INT": "i4",
    "MET_ULONG": "u8",
    "MET_LONG": "i8",
    "MET_FLOAT": "f4",
    "MET_DOUBLE": "f8",
}


def _mhd_header(raw: bytes) -> tuple[dict[str, str], int]:
    """``Key = value`` lines up to ElementDataFile (always the last field) and where they end:
    with ``ElementDataFile = LOCAL`` the data follows the header in the same file."""
    fields, pos = {}, 0
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        end = len(raw) if end < 0 else end
        key, sep, value = raw[pos:end].decode("latin-1").partition("=")
        pos = end + 1
        if sep:
            fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    return fields, pos


def read_mhd(path: str | Path) -> np.ndarray:
    """A MetaImage volume (.mhd header; data in ElementDataFile or LOCAL) as an array in
    (z, y, x) order; DataError naming the file when the header or the data do not fit."""
    path = Path(path)
    fields, pos = _mhd_header(path.read_bytes())
    try:
        dims = [int(v) for v in fields["DimSize"].split()]
        dtype = np.dtype(MET_TYPES[fields["ElementType"]])
        source = fields["ElementDataFile"]
    except (KeyError, ValueError) as err:
        raise DataError(f"{path}: not a MetaImage header we can read ({err!r})") from err
    msb = fields.get("BinaryDataByteOrderMSB", fields.get("ElementByteOrderMSB", "False"))
    dtype = dtype.newbyteorder(">" if msb.lower() == "true" else "<")
    data = path.read_bytes()[pos:] if source == "LOCAL" else (path.parent / source).read_bytes()
    if fields.get("CompressedData", "False").lower() == "true":
        data = zlib.decompress(data)
    channels = int(fields.get("ElementNumberOfChannels", "1"))
    count = int(np.prod(dims)) * channels
    need = count * dtype.itemsize
    if len(data) < need:
        raise DataError(f"{path}: {len(data)} bytes of data, the header needs {need}")
    shape = dims[::-1] + ([channels] if channels > 1 else [])
    return np.frombuffer(data, dtype, count=count).reshape(shape)


def _nibabel():
    try:
        import nibabel
    except ImportError as err:
        raise DataError(
            "the CAMUS 2023 release (.nii.gz) needs nibabel: pip install nibabel==5.4.2"
        ) from err
    return nibabel


def _read_nifti(path: Path) -> np.ndarray:
    # nibabel indexes (x, y[, z]); transposed, rows are y as in the .mhd reading
    return np.asanyarray(_nibabel().load(str(path)).dataobj).T


def read_frame(path: str | Path) -> np.ndarray:
    """One 2D frame (H, W) of a .mhd or .nii(.gz) file (a volume of one slice is squeezed)."""
    path = Path(path)
    volume = read_mhd(path) if path.suffix.lower() == ".mhd" else _read_nifti(path)
    frame = np.squeeze(volume)
    if frame.ndim != 2:
        raise DataError(f"{path}: expected one 2D frame, found an array of shape {volume.shape}")
    return frame


def frame_image(path: str | Path) -> Image.Image:
    """The frame as an 8-bit grey image (other types are scaled from their range to 0..255)."""
    frame = read_frame(path)
    if frame.dtype != np.uint8:
        lo, hi = float(frame.min()), float(frame.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        frame = np.round((frame.astype(np.float64) - lo) * scale).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(frame))


@lru_cache(maxsize=4)  # the three structures of a frame read the same _gt file in a row
def _labels(path: str) -> np.ndarray:
    return read_frame(path)


def structure_mask(path: str | Path, label: int) -> np.ndarray:
    """The pixels of one structure (label 1, 2 or 3) of a ``_gt`` file, (H, W) bool."""
    return _labels(str(path)) == label


def read_info(path: Path) -> dict[str, str]:
    """An ``Info_{2CH,4CH}.cfg`` as {key: value}; {} when the file is missing."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    pairs = (line.partition(":") for line in lines)
    return {key.strip(): value.strip() for key, sep, value in pairs if sep}


def info_words(info: dict[str, str]) -> tuple[dict, list[str]]:
    """Sex, age and quality for the prompts, and the words left out for want of a value."""
    words, missing = {}, []
    sex = SEXES.get(info.get("Sex", "").strip().upper()[:1])
    if sex:
        words["sex"] = sex
    else:
        missing.append("sex")
    try:
        words["age"] = int(float(info["Age"]))
    except (KeyError, ValueError):
        missing.append("age")
    if info.get("ImageQuality"):
        words["quality"] = info["ImageQuality"].strip().lower()
    else:
        missing.append("image quality")
    return words, missing


def _patients(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and PATIENT.match(p.name))


def _frames(patient: Path) -> list[tuple[Path, Path, re.Match]]:
    """(image, ground truth, name match) of the patient's ED/ES frames that have a _gt file."""
    out = []
    for path in sorted(patient.iterdir()):
        match = FRAME.match(path.name)
        if match:
            gt = path.with_name(f"{path.name[: match.end(3)]}_gt{match.group(4)}")
            if gt.is_file():
                out.append((path, gt, match))
    return out


def _layout(folder: Path) -> list[tuple[str, Path]]:
    """(image folder prefix, folder of patient folders) of the release found in ``folder``."""
    for name in ("training", "database_nifti"):
        try:
            root = find_dir(folder, name, "CAMUS")
        except SourceError:
            continue
        if name == "database_nifti":
            return [("", root)]
        testing = root.parent / "testing"
        parts = [("train", root)]
        if testing.is_dir() and any(_frames(p) for p in _patients(testing)):
            return parts + [("test", testing)]
        if testing.is_dir():
            warnings.warn(
                f"CAMUS: {testing} holds no ground truth (*_gt files), as the challenge's "
                "held-out set shipped; it is left out and the training patients are dealt to "
                "train/val/test by patient",
                stacklevel=3,
            )
        return parts
    if _patients(folder):
        return [("", folder)]
    top = sorted(p.name for p in folder.iterdir())[:12]
    raise SourceError(
        f"{folder} does not look like the CAMUS download: expected database_nifti/patientNNNN/ "
        f"(2023 release) or training/patientNNNN/ and testing/patientNNNN/ (2019 challenge) "
        f"inside it; found {top}"
    )


def _split(prefix: str, patient: str, fixed: bool) -> str | None:
    if not fixed:
        return None
    if prefix == "test":
        return "test"
    return "val" if int(patient[len("patient") :]) <= VAL_PATIENTS else "train"


def _frame_records(prefix, image, gt, match, meta, split, attributes) -> list[Record]:
    """The three structure records of one frame."""
    stem = image.name[: match.end(3)]
    patient = match.group(1)
    key = f"{prefix}/{patient}" if prefix else patient
    folder = f"{prefix}/" if prefix else ""
    out = []
    for structure, label in STRUCTURES.items():
        shape = (attributes.get(f"{stem}_{structure}") or attributes.get(stem) or {}).get("shape")
        out.append(
            Record(
                image=partial(frame_image, image),
                mask=partial(structure_mask, gt, label),
                img_name=f"{folder}{stem}.png",
                mask_name=f"{folder}{structure}/{stem}_gt.png",
                group=key,
                split=split,
                meta={"structure": structure, **meta, **({"shape": shape} if shape else {})},
                extra={"cluster": key},
            )
        )
    return out


def _warn_missing(missing: list[str]) -> None:
    if missing:
        warnings.warn(
            f"CAMUS: {len(missing)} metadata files missing or incomplete, so their prompts "
            f"leave words out; first: {'; '.join(missing[:5])}",
            stacklevel=3,
        )


def records(folder: Path, attributes: dict[str, dict]) -> list[Record]:
    """The download's records (module docstring)."""
    parts = _layout(Path(folder))
    fixed = any(prefix == "test" for prefix, _ in parts)
    out, missing = [], []
    for prefix, root in parts:
        patients = _patients(root)
        if not patients:
            raise SourceError(f"CAMUS: no patientNNNN folders in {root}")
        for patient in patients:
            for image, gt, match in _frames(patient):
                view = match.group(2).upper()
                cfg = patient / f"Info_{view}.cfg"
                words, lacking = info_words(read_info(cfg))
                if lacking:
                    missing.append(f"{cfg} (no {', '.join(lacking)})")
                meta = {"view": VIEWS[view], "cycle": CYCLES[match.group(3).upper()], **words}
                split = _split(prefix, match.group(1), fixed)
                out += _frame_records(prefix, image, gt, match, meta, split, attributes)
    if not out:
        raise SourceError(
            f"CAMUS: no frame with ground truth (patientNNNN_2CH_ED.* with "
            f"patientNNNN_2CH_ED_gt.*) under {folder}"
        )
    if Path(out[0].mask.args[0]).suffix.lower() != ".mhd":
        _nibabel()  # fail once, clearly, rather than skip every record
    _warn_missing(sorted(set(missing)))
    return out
