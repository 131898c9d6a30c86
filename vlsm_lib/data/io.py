"""Reading image and mask files, with errors that name the file and the fix.

Masks are binarised on load (foreground = value > 127); the rules for unusual files
(0/1 label masks, RGB masks, JPEG noise, palettes, 16-bit) are in ``read_mask``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

FIX_ROOT = "check the VLSM_DATA environment variable / the root passed"
_FIX_8BIT = "convert it to an 8-bit grayscale PNG with 0 = background, 255 = foreground"
# Channel spread tolerated in an RGB mask: JPEG chroma noise stays well under this, a real
# colour-coded mask (e.g. red on black) differs by ~255.
_RGB_TOLERANCE = 32
# Share of pixels in 32..223 beyond which a mask is not "binary plus JPEG noise".
_GREY_FRACTION = 0.01


class DataError(ValueError):
    """A problem with the data on disk; the message names the file or record and the fix."""


def _open(path: str | Path, what: str) -> Image.Image:
    """Open and fully decode (``load``) so truncated files fail here, not in a worker later."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file {path} not found; {FIX_ROOT}")
    try:
        with Image.open(path) as img:
            img.load()
            return img
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        raise DataError(f"cannot read {what} file {path} ({e}); re-export or delete it") from e


def read_image(path: str | Path) -> Image.Image:
    """Read an image file as an RGB PIL image (any PIL-readable mode is converted)."""
    return _open(path, "image").convert("RGB")


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask file as a bool array (h, w), foreground = value > 127.

    Rules by PIL mode:
      * '1' and 'L': used as is. An 'L' mask whose values are only 0 and 1 (a 0/1 label mask)
        takes 1 as foreground, with a warning.
      * 'RGB'/'RGBA' whose colour channels are equal (within JPEG noise, spread <= 32): the first
        channel is used, with a warning. Channels that differ more: DataError (ambiguous
        colour mask).
      * 'P' (palette), 'I;16', 'I', 'F' and any other mode: DataError; convert to 8-bit 0/255.
      * More than 1% of pixels in 32..223 (beyond JPEG noise): binarised at > 127, with a
        warning giving the fraction.
    Missing or unreadable files raise DataError.
    """
    img = _open(path, "mask")
    if img.mode == "1":
        return np.asarray(img, dtype=bool)
    if img.mode in ("RGB", "RGBA"):
        arr = _grey_from_rgb(np.asarray(img)[..., :3], path)
    elif img.mode == "L":
        arr = np.asarray(img)
    else:
        raise DataError(
            f"mask {path} has unsupported mode '{img.mode}' (palette / 16-32 bit / "
            f"other); {_FIX_8BIT}"
        )
    if arr.max(initial=0) == 1:  # 0/1 label mask: > 127 would make it all background
        warnings.warn(
            f"mask {path} holds values 0/1 only; treating 1 as foreground "
            "(save masks as 0/255 to silence this)",
            stacklevel=2,
        )
        return arr == 1
    grey = float(np.mean((arr >= 32) & (arr <= 223)))
    if grey > _GREY_FRACTION:
        warnings.warn(
            f"mask {path} is not binary: {grey:.1%} of pixels lie in 32..223; binarising at > 127",
            stacklevel=2,
        )
    return arr > 127


def _grey_from_rgb(rgb: np.ndarray, path: str | Path) -> np.ndarray:
    """(h, w, 3) uint8 -> (h, w) first channel, if the channels agree (a grey mask saved RGB)."""
    spread = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
    if spread.max(initial=0) > _RGB_TOLERANCE:
        raise DataError(
            f"mask {path} is an RGB image whose channels differ (ambiguous colour "
            f"mask); {_FIX_8BIT}"
        )
    warnings.warn(
        f"mask {path} is RGB with equal channels; using its first channel "
        "(save it as 8-bit grayscale to silence this)",
        stacklevel=3,
    )
    return rgb[..., 0]
