"""Miniature fakes of the six polyp downloads, in their official layouts and mask encodings.

Each ``build_*(tmp, n)`` writes ``n`` small frames (40x32 px, one elliptic polyp each, about
12 % of the frame: a "medium" polyp) under ``tmp`` and returns what a user would pass to
``vlsm data prepare``: the archive for Kvasir-SEG (``kvasir-seg.zip``) and BKAI
(``bkai-igh-neopolyp.zip``, as Kaggle ships it), the extracted folder for the others.

- Kvasir-SEG: ``Kvasir-SEG/images/<id>.jpg``, ``masks/<id>.jpg`` (RGB JPEG masks, noisy edges),
  ``kavsir_bboxes.json``;
- CVC-ClinicDB: ``CVC-ClinicDB/Original/<n>.tif``, ``Ground Truth/<n>.tif`` (8-bit TIFF), frames
  drawn from several of the 29 sequences (``CLINICDB_FRAMES``); ``build_clinicdb_png`` writes
  the re-packaging with ``PNG/`` and ``TIF/`` copies;
- BKAI: ``train/train/<hex>.jpeg``, ``train_gt/train_gt/<hex>.jpeg`` (red or green polyps on
  black; the first mask holds one of each), ``test/test/`` without masks,
  ``sample_submission.csv``;
- CVC-300, CVC-ColonDB: PraNet's ``TestDataset/<subset>/{images,masks}/<n>.png`` (masks with
  grey edges, as PraNet's are), next to a decoy subset that must not be read;
- ETIS: the original ``ETIS-LaribPolypDB/ETIS-LaribPolypDB/<n>.tif`` with
  ``ETIS-LaribPolypDB/Ground Truth/p<n>.tif``; ``build_etis_benchmark`` writes PraNet's copy.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (40, 32)  # width, height
CLINICDB_FRAMES = (1, 2, 3, 26, 27, 51, 68, 69, 79, 104, 127, 152)  # 8 sequences


def frame(seed: int) -> Image.Image:
    """A reddish noisy RGB frame."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 80, size=(SIZE[1], SIZE[0], 3), dtype=np.uint8)
    arr[..., 0] += 120
    return Image.fromarray(arr)


def blob(seed: int, scale: int = 1) -> np.ndarray:
    """(H, W) bool: an ellipse (8 x 6 px radii, ~12 % of the frame) at a seeded place; drawn
    ``scale`` times larger when asked (for masks resized down)."""
    rng = np.random.default_rng(seed + 1000)
    cx, cy = rng.integers(9, SIZE[0] - 9), rng.integers(7, SIZE[1] - 7)
    yy, xx = np.mgrid[: SIZE[1] * scale, : SIZE[0] * scale] / scale
    return ((xx - cx) / 8) ** 2 + ((yy - cy) / 6) ** 2 <= 1


def grey(mask: np.ndarray) -> Image.Image:
    return Image.fromarray(mask.astype(np.uint8) * 255)


def soft_edged(seed: int) -> Image.Image:
    """A 0/255 mask whose border pixels carry grey levels (drawn 4x larger, resized down)."""
    return grey(blob(seed, scale=4)).resize(SIZE, Image.BILINEAR)


def zip_folder(folder: Path, archive: Path, inside: str = "") -> Path:
    """``folder``'s files zipped into ``archive`` under ``inside`` (a top folder, or none)."""
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, str(Path(inside) / path.relative_to(folder)))
    return archive


def _dirs(*paths: Path) -> None:
    for p in paths:
        p.mkdir(parents=True, exist_ok=True)


def kvasir_id(i: int) -> str:
    return f"cju{i:03d}fk{(i * 7919) % 100000:05d}a0801qwerty"


def build_kvasir(tmp: Path, n: int = 12) -> Path:
    """``kvasir-seg.zip`` holding ``Kvasir-SEG/`` with JPEG images and JPEG masks."""
    src = tmp / "kvasir-src"
    _dirs(src / "images", src / "masks")
    boxes = {}
    for i in range(n):
        frame(i).save(src / "images" / f"{kvasir_id(i)}.jpg", quality=90)
        mask = blob(i)
        grey(mask).convert("RGB").save(src / "masks" / f"{kvasir_id(i)}.jpg", quality=75)
        ys, xs = np.nonzero(mask)
        boxes[kvasir_id(i)] = {
            "height": SIZE[1],
            "width": SIZE[0],
            "bbox": [{"label": "polyp", "xmin": int(xs.min()), "ymin": int(ys.min())}],
        }
    (src / "kavsir_bboxes.json").write_text(json.dumps(boxes))
    return zip_folder(src, tmp / "kvasir-seg.zip", inside="Kvasir-SEG")


def _clinicdb_files(folder: Path, n: int, suffix: str) -> Path:
    """``Original/<k><suffix>`` and ``Ground Truth/<k><suffix>`` in ``folder``."""
    _dirs(folder / "Original", folder / "Ground Truth")
    for k in CLINICDB_FRAMES[:n]:
        frame(k).save(folder / "Original" / f"{k}{suffix}")
        grey(blob(k)).save(folder / "Ground Truth" / f"{k}{suffix}")
    return folder


def build_clinicdb(tmp: Path, n: int = 12) -> Path:
    """The extracted ``CVC-ClinicDB/`` with TIFF frames and TIFF masks."""
    return _clinicdb_files(tmp / "CVC-ClinicDB", n, ".tif")


def build_clinicdb_png(tmp: Path, n: int = 12) -> Path:
    """The common re-packaging: ``CVC-ClinicDB/PNG/...`` beside ``CVC-ClinicDB/TIF/...``."""
    _clinicdb_files(tmp / "CVC-ClinicDB" / "TIF", n, ".tif")
    _clinicdb_files(tmp / "CVC-ClinicDB" / "PNG", n, ".png")
    return tmp / "CVC-ClinicDB"


def bkai_id(i: int) -> str:
    return f"{(i + 1) * 0x9E3779B1 % (1 << 128):032x}"


def _colour_mask(i: int) -> Image.Image:
    """Red (neoplastic) on even i, green (non-neoplastic) on odd i; mask 0 also has a small
    green polyp in the corner its red one is farthest from."""
    rgb = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    mask = blob(i)
    rgb[mask, i % 2] = 255
    if i == 0:
        ys, xs = np.nonzero(mask)
        rows = slice(0, 6) if ys.mean() > SIZE[1] / 2 else slice(-6, None)
        cols = slice(0, 8) if xs.mean() > SIZE[0] / 2 else slice(-8, None)
        rgb[rows, cols, 1] = 255
    return Image.fromarray(rgb)


def build_bkai(tmp: Path, n: int = 12) -> Path:
    """``bkai-igh-neopolyp.zip`` as Kaggle ships it: train/train, train_gt/train_gt, test."""
    src = tmp / "bkai-src"
    _dirs(src / "train" / "train", src / "train_gt" / "train_gt", src / "test" / "test")
    for i in range(n):
        frame(i).save(src / "train" / "train" / f"{bkai_id(i)}.jpeg", quality=90)
        _colour_mask(i).save(src / "train_gt" / "train_gt" / f"{bkai_id(i)}.jpeg", quality=90)
    for i in range(n, n + 2):  # the competition's test frames have no masks
        frame(i).save(src / "test" / "test" / f"{bkai_id(i)}.jpeg")
    (src / "sample_submission.csv").write_text("Id,Expected\n")
    return zip_folder(src, tmp / "bkai-igh-neopolyp.zip")


def _benchmark(tmp: Path, subset: str, stems: list[int]) -> Path:
    """PraNet's ``TestDataset`` with ``subset`` and a two-frame decoy subset."""
    top = tmp / "TestDataset"
    for name, numbers in ((subset, stems), ("Kvasir", [1, 2])):
        _dirs(top / name / "images", top / name / "masks")
        for k in numbers:
            frame(k).save(top / name / "images" / f"{k}.png")
            soft_edged(k).save(top / name / "masks" / f"{k}.png")
    return top


def build_cvc300(tmp: Path, n: int = 12) -> Path:
    """PraNet's ``TestDataset/CVC-300`` (frames 149 ...)."""
    return _benchmark(tmp, "CVC-300", list(range(149, 149 + n)))


def build_colondb(tmp: Path, n: int = 12) -> Path:
    """PraNet's ``TestDataset/CVC-ColonDB`` (frames 1 ...)."""
    return _benchmark(tmp, "CVC-ColonDB", list(range(1, n + 1)))


def build_etis_benchmark(tmp: Path, n: int = 12) -> Path:
    """PraNet's ``TestDataset/ETIS-LaribPolypDB`` (frames 1 ...)."""
    return _benchmark(tmp, "ETIS-LaribPolypDB", list(range(1, n + 1)))


def build_etis(tmp: Path, n: int = 12) -> Path:
    """The extracted original ``ETIS-LaribPolypDB/``: frames <n>.tif, masks p<n>.tif."""
    top = tmp / "ETIS-LaribPolypDB"
    _dirs(top / "ETIS-LaribPolypDB", top / "Ground Truth")
    for k in range(1, n + 1):
        frame(k).save(top / "ETIS-LaribPolypDB" / f"{k}.tif")
        grey(blob(k)).save(top / "Ground Truth" / f"p{k}.tif")
    return top


FAKES = {
    "kvasir_polyp": build_kvasir,
    "clinicdb_polyp": build_clinicdb,
    "bkai_polyp": build_bkai,
    "cvc300_polyp": build_cvc300,
    "colondb_polyp": build_colondb,
    "etis_polyp": build_etis,
}
