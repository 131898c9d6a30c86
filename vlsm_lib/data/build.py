"""Writing a dataset in the project's layout from any source: records in, folder out.

A preparer (``sources``) or the importer (``importer``) lists the image-mask pairs of a download
as ``Record``s; ``write_dataset`` then

1. decodes every image and mask (a file that does not decode, or a mask with more than two
   levels, is skipped, listed and counted: never silently written),
2. copies PNG/JPEG images as they are and converts other formats (TIFF, BMP, ...) to PNG;
   writes masks as lossless 0/255 PNG,
3. draws the splits: records with a fixed ``split`` keep it (test-only sets, CAMUS's test
   folder), the others are dealt by ``group`` (a patient, or the image: a group never crosses
   splits) with a seeded generator to the requested sizes,
4. writes the prompts with the project's generator (``FAMILIES``: the mask's count, size and
   location plus the record's metadata) and ``anns/<split>.json`` in the reference's schema,
5. writes ``dataset.json`` (source, family, seed, requested and actual split sizes, skipped
   files, how prompts were made),

all inside a temporary folder ``<out>/.<name>.partial-<pid>`` that replaces ``<out>/<name>`` by
renames at the very end: an interrupted run leaves no folder that looks complete, and a
re-run replaces the old dataset whole.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from vlsm_lib.data import prompts as P
from vlsm_lib.data.io import DataError, read_image, read_mask
from vlsm_lib.files import write_json

SPLITS = ("train", "val", "test")
COPIED = {".png", ".jpg", ".jpeg"}  # image formats kept byte for byte


@dataclass
class Record:
    """One image-mask pair of a source, before splits and prompts.

    ``mask``: a mask file, or a function returning the (H, W) bool mask (masks drawn from
    polygons, merged from several files, read from volumes). ``img_name`` / ``mask_name``: the
    names under ``images/`` and ``masks/`` (sub-folders allowed; the mask's suffix becomes
    .png, and so does an image's unless it is PNG or JPEG). ``group``: records that must stay
    in one split (a patient's frames; default the image). ``meta``: what the prompt family
    needs beyond the mask (class_name, shape, colour, view, cycle, sex, age, quality,
    tumour_class, pathology, findings, ...). ``extra``: keys copied into the annotation record
    (e.g. ``cluster``). ``jpeg_mask``: the mask file is a JPEG, binarised at > 127
    (``decode_mask``). ``prompts``: given prompts (the reference's), written as they are
    instead of generated."""

    image: Path | Callable[[], Image.Image]
    mask: Path | Callable[[], np.ndarray]
    img_name: str
    mask_name: str
    group: str = ""
    split: str | None = None
    meta: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    jpeg_mask: bool = False
    prompts: dict | None = None


def _non_radiology(attrs, meta):
    """P0..P9; without general descriptions of the class (the paper has them for polyp,
    skin melanoma and foot ulcer) P7..P9 are left out rather than invented."""
    cls = meta["class_name"]
    descriptions = tuple(meta.get("descriptions") or ()) or P.CLASS_DESCRIPTIONS.get(cls, ())
    out = P.non_radiology_prompts(
        attrs, cls, meta.get("shape"), meta.get("colour"), descriptions or ("-",)
    )
    return out if descriptions else {k: v for k, v in out.items() if k not in ("p7", "p8", "p9")}


# Prompt families: (MaskAttributes, record meta) -> {"p0": "", "p1": ...} (data.prompts).
FAMILIES: dict[str, Callable] = {
    "non_radiology": _non_radiology,
    "busi": lambda a, m: P.busi_prompts(
        a, m.get("tumour_class"), m.get("regularity"), m.get("shape")
    ),
    "camus": lambda a, m: P.camus_prompts(
        m["structure"],
        m.get("view"),
        m.get("cycle"),
        m.get("sex"),
        m.get("age"),
        m.get("quality"),
        m.get("shape"),
    ),
    "chexlocalize": lambda a, m: P.chexlocalize_prompts(
        a, m["pathology"], m.get("view"), m.get("shape"), tuple(m.get("findings") or ())
    ),
}


def split_sizes(n: int, sizes: dict[str, float]) -> dict[str, int]:
    """Record counts per split for ``n`` records: ``sizes`` as counts (the paper's; scaled to
    ``n`` when they do not add up to it) or as fractions summing to 1."""
    total = sum(sizes.values())
    if total <= 0:
        raise ValueError(f"split sizes {sizes} must add up to more than 0")
    counts = {s: int(round(n * v / total)) for s, v in sizes.items()}
    largest = max(counts, key=counts.get)
    counts[largest] += n - sum(counts.values())  # rounding goes to the biggest split
    return counts


def assign_splits(records: Sequence[Record], sizes: dict[str, float], seed: int) -> list[str]:
    """A split per record: fixed ones kept, the others dealt group by group (seeded) to
    ``split_sizes`` of the records without a fixed split, the smaller splits first."""
    free = [i for i, r in enumerate(records) if r.split is None]
    out = [r.split or "" for r in records]
    if not free:
        return out
    groups: dict[str, list[int]] = {}
    for i in free:
        groups.setdefault(records[i].group or records[i].img_name, []).append(i)
    order = list(groups)
    np.random.default_rng(seed).shuffle(order)
    want = split_sizes(len(free), sizes)
    queue = sorted(want, key=want.get)  # fill the small splits first, the largest takes the rest
    k = 0
    for split in queue[:-1]:
        filled = 0
        while k < len(order) and filled < want[split]:
            for i in groups[order[k]]:
                out[i] = split
            filled += len(groups[order[k]])
            k += 1
    for key in order[k:]:
        for i in groups[key]:
            out[i] = queue[-1]
    return out


def decode_mask(path: str | Path, jpeg: bool = False) -> np.ndarray:
    """A mask file as a (H, W) bool array, for any encoding a download ships: 0/255 or 0/1
    greyscale, grey saved as RGB, palette or 16-bit label images with two levels (the higher
    one is foreground). A mask with more than two levels is refused (DataError naming the file)
    unless ``jpeg``: JPEG masks (Kvasir-SEG, BKAI) carry compression noise and are binarised
    at > 127, as the reference did."""
    try:
        with Image.open(path) as img:
            mode, arr = img.mode, np.asarray(img)
    except Exception as err:  # PIL raises several types for a bad file
        raise DataError(f"cannot read mask file {path} ({err})") from err
    levels = np.unique(arr.reshape(-1, arr.shape[-1]), axis=0) if arr.ndim == 3 else np.unique(arr)
    if len(levels) > 2 and not jpeg:
        raise DataError(
            f"mask {path} has {len(levels)} levels ({mode}); expected two "
            "(a label image with several classes needs one mask per class)"
        )
    if mode in ("P", "I;16", "I", "I;16B", "I;16L"):
        return arr == levels.max() if len(levels) == 2 and levels.max() > 0 else arr > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0/1, grey-as-RGB and JPEG noise: all expected here
        return read_mask(path)


def _load_mask(record: Record) -> np.ndarray:
    if callable(record.mask):
        return np.asarray(record.mask(), dtype=bool)
    return decode_mask(record.mask, jpeg=record.jpeg_mask)


def _write_image(record: Record, folder: Path) -> tuple[str, tuple[int, int]]:
    """Copy or convert the image; returns its name under images/ and (height, width)."""
    img = record.image() if callable(record.image) else read_image(record.image)
    name = record.img_name
    source_suffix = "" if callable(record.image) else Path(record.image).suffix.lower()
    if source_suffix not in COPIED or Path(name).suffix.lower() != source_suffix:
        name = str(Path(name).with_suffix(".png"))
    target = folder / "images" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if source_suffix in COPIED and Path(name).suffix.lower() == source_suffix:
        shutil.copyfile(record.image, target)
    else:
        # greyscale stays greyscale (CAMUS, X-rays): the loader converts to RGB when it reads
        img.convert("L" if img.mode in ("L", "I", "I;16") else "RGB").save(target, format="PNG")
    return name, (img.height, img.width)


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return [mask.shape[1], mask.shape[0], 0, 0]  # the reference's box of an empty mask
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def _entry(record, img_name, mask_name, mask, prompts, k) -> dict:
    """One annotation record in the reference's schema plus ``extra``."""
    return {
        "bbox": _bbox(mask),
        "cat": 0,
        "segment_id": Path(mask_name).stem,
        "img_name": img_name,
        "mask_name": mask_name,
        "sentences": [{"idx": 0, "sent_id": k, "sent": ""}],
        "sentences_num": 1,
        "prompts": prompts,
        **record.extra,
    }


def _fill(partial, name, records, family, sizes, seed, about, reference_location) -> None:
    """Steps 1-5 of the module docstring, inside the ``partial`` folder."""
    splits = assign_splits(records, sizes, seed)
    anns: dict[str, list] = {s: [] for s in dict.fromkeys([*SPLITS, *splits])}
    skipped, written = [], {}
    for record, split in tqdm(list(zip(records, splits)), desc=f"prepare {name}", leave=False):
        try:
            mask = _load_mask(record)
            if record.img_name not in written:
                written[record.img_name] = _write_image(record, partial)
            img_name, (h, w) = written[record.img_name]
            if mask.shape != (h, w):
                raise DataError(f"mask is {mask.shape[1]}x{mask.shape[0]}, its image {w}x{h}")
        except (DataError, OSError, KeyError, ValueError) as err:
            skipped.append({"image": str(record.image), "mask": str(record.mask), "why": str(err)})
            continue
        mask_name = str(Path(record.mask_name).with_suffix(".png"))
        (partial / "masks" / mask_name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(partial / "masks" / mask_name)
        attrs = P.mask_attributes(mask, reference_location=reference_location)
        prompts = record.prompts or FAMILIES[family](attrs, record.meta)
        anns[split].append(
            _entry(record, img_name, mask_name, mask, prompts, sum(map(len, anns.values())))
        )
    if not any(anns.values()):
        raise DataError(
            f"{name}: none of {len(records)} records could be written; first: "
            f"{skipped[0]['why']} ({skipped[0]['mask']})"
        )
    if skipped:
        warnings.warn(
            f"{name}: skipped {len(skipped)} of {len(records)} records (listed in "
            f"dataset.json); first: {skipped[0]['why']} ({skipped[0]['mask']})",
            stacklevel=2,
        )
    for split, entries in anns.items():
        if entries:
            write_json(partial / "anns" / f"{split}.json", entries)
    write_json(
        partial / "dataset.json",
        {
            "name": name,
            "family": family,
            "seed": seed,
            "requested_sizes": sizes,
            "records": {s: len(e) for s, e in anns.items() if e},
            "skipped": skipped,
            "prompts": "as given (the reference's annotation files)"
            if any(r.prompts for r in records)
            else "generated by vlsm_lib.data.prompts",
            "reference_location": reference_location,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            **(about or {}),
        },
    )


def write_dataset(
    name: str,
    records: Sequence[Record],
    out: str | Path,
    family: str,
    sizes: dict[str, float],
    seed: int = 42,
    about: dict | None = None,
    reference_location: bool = False,
) -> Path:
    """Write ``records`` as dataset ``<out>/<name>`` (module docstring); returns the folder.

    Raises DataError when no record could be written; skipped records are listed in
    dataset.json and warned about."""
    if family not in FAMILIES:
        raise KeyError(f"unknown prompt family {family!r}; valid: {', '.join(FAMILIES)}")
    if not records:
        raise DataError(f"no image-mask pairs found for {name}: nothing to write")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f".{name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "masks").mkdir(parents=True)
    try:
        _fill(partial, name, records, family, sizes, seed, about, reference_location)
    except BaseException:  # an error or ctrl-c: nothing half-written stays behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return replace_folder(partial, out / name)


def replace_folder(partial: Path, final: Path) -> Path:
    """Put the finished ``partial`` folder at ``final`` by renames (an existing one is moved
    aside first and deleted last), so that ``final`` is never half-written."""
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        final.rename(old)
    partial.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def read_about(folder: str | Path) -> dict:
    """A dataset's dataset.json ({} when it has none: folders made by hand or by MedShapes)."""
    path = Path(folder) / "dataset.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
