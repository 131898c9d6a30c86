"""Miniature downloads of ISIC 2016 Part 1, DFUC 2022 and BUSI, in the official layouts.

Each function writes one fake into a given folder and returns the path to pass to
``sources.prepare``: small random images (32-48 px, varied sizes) with elliptic blob masks in
the encodings the providers ship.

- ``isic``: a folder holding the four official zips (``ISBI2016_ISIC_Part1_*.zip``, each with
  its folder inside), greyscale 0/255 masks ``ISIC_<id>_Segmentation.png``, plus one training
  image without a mask and one mask without an image;
- ``dfu``: one archive ``DFUC2022_train_release.zip`` with the image and mask folders; masks
  0/255, half greyscale and half grey saved as RGB; one image without a mask;
- ``busi``: the extracted ``Dataset_BUSI_with_GT`` folder; some images with several mask files
  (``_mask.png`` + ``_mask_1.png`` ...), normal images with all-black masks, some masks RGB.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ISIC_TRAIN = 12  # training pairs (plus one lonely image and one lonely mask)
ISIC_TEST = 5
DFU_PAIRS = 20  # plus one image without a mask
BUSI_COUNTS = {"benign": 10, "malignant": 6, "normal": 4}
BUSI_MULTI = {"benign": {2: 2, 5: 3}, "malignant": {3: 2}}  # image number -> mask files


def _size(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(32, 49)), int(rng.integers(32, 49))


def _image(path: Path, h: int, w: int, rng: np.random.Generator, grey: bool = False) -> None:
    pixels = rng.integers(0, 256, (h, w, 1 if grey else 3), dtype=np.uint8)
    img = Image.fromarray(pixels[..., 0] if grey else pixels)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jpg":
        img.convert("RGB").save(path, quality=95)
    else:
        img.save(path)


def blob(h: int, w: int, rng: np.random.Generator, box=None) -> np.ndarray:
    """A filled ellipse inside ``box`` (y0, y1, x0, x1; default the whole image)."""
    y0, y1, x0, x1 = box or (0, h, 0, w)
    cy = y0 + rng.uniform(0.4, 0.6) * (y1 - y0)
    cx = x0 + rng.uniform(0.4, 0.6) * (x1 - x0)
    ry, rx = rng.uniform(0.2, 0.4) * (y1 - y0), rng.uniform(0.2, 0.4) * (x1 - x0)
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def _mask(path: Path, mask: np.ndarray, rgb: bool = False) -> None:
    grey = mask.astype(np.uint8) * 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.stack([grey] * 3, -1) if rgb else grey).save(path)


def _zip(folder: Path, archive: Path) -> Path:
    """Zip ``folder`` with its own name as the top folder, as the providers' zips are."""
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.rglob("*")):
            z.write(path, path.relative_to(folder.parent).as_posix())
    return archive


def isic(folder: Path) -> Path:
    """ISIC 2016 Part 1 as distributed: a folder with its four zips."""
    rng = np.random.default_rng(1)
    staging, out = Path(folder) / "isic_staging", Path(folder) / "isic_download"
    out.mkdir(parents=True)
    parts = {"Training": range(ISIC_TRAIN), "Test": range(100, 100 + ISIC_TEST)}
    for part, ids in parts.items():
        data = staging / f"ISBI2016_ISIC_Part1_{part}_Data"
        truth = staging / f"ISBI2016_ISIC_Part1_{part}_GroundTruth"
        for k in ids:
            h, w = _size(rng)
            _image(data / f"ISIC_{k:07d}.jpg", h, w, rng)
            _mask(truth / f"ISIC_{k:07d}_Segmentation.png", blob(h, w, rng))
        if part == "Training":  # one image without a mask, one mask without an image
            _image(data / "ISIC_0000900.jpg", 40, 40, rng)
            _mask(truth / "ISIC_0000901_Segmentation.png", blob(40, 40, rng))
        _zip(data, out / f"{data.name}.zip")
        _zip(truth, out / f"{truth.name}.zip")
    return out


def dfu(folder: Path) -> Path:
    """DFUC 2022's training release as one zip."""
    rng = np.random.default_rng(2)
    release = Path(folder) / "dfu_staging" / "DFUC2022_train_release"
    for k in range(DFU_PAIRS):
        h, w = _size(rng)
        _image(release / "DFUC2022_train_images" / f"{100001 + k}.jpg", h, w, rng)
        _mask(release / "DFUC2022_train_masks" / f"{100001 + k}.png", blob(h, w, rng), k % 2 == 1)
    _image(release / "DFUC2022_train_images" / "109999.jpg", 36, 36, rng)
    return _zip(release, Path(folder) / "DFUC2022_train_release.zip")


def _busi_masks(h: int, w: int, files: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``files`` disjoint blobs, one per mask file (side by side), so their union is more
    than any one of them."""
    step = w // files
    return [blob(h, w, rng, (0, h, k * step, (k + 1) * step)) for k in range(files)]


def busi(folder: Path) -> Path:
    """BUSI's extracted folder ``Dataset_BUSI_with_GT`` inside a download folder."""
    rng = np.random.default_rng(3)
    out = Path(folder) / "busi_download"
    for cls, count in BUSI_COUNTS.items():
        for n in range(1, count + 1):
            h, w = _size(rng)
            stem = out / "Dataset_BUSI_with_GT" / cls / f"{cls} ({n})"
            _image(stem.with_name(stem.name + ".png"), h, w, rng, grey=True)
            files = BUSI_MULTI.get(cls, {}).get(n, 1)
            masks = [np.zeros((h, w), bool)] if cls == "normal" else _busi_masks(h, w, files, rng)
            for k, mask in enumerate(masks):
                suffix = "_mask" if k == 0 else f"_mask_{k}"
                _mask(stem.with_name(f"{stem.name}{suffix}.png"), mask, rgb=n % 3 == 0)
    return out


FAKES = {"isic": isic, "dfu": dfu, "busi": busi}
