"""Tests for vlsm_lib.data.io: how each kind of mask file is read, and one test per bad file."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlsm_lib.data.io import DataError, read_image, read_mask

H, W = 16, 24


def mask_array(h: int = H, w: int = W) -> np.ndarray:
    """(h, w) uint8 0/255 with an 8-aligned foreground block (little JPEG ringing)."""
    m = np.zeros((h, w), np.uint8)
    m[: h // 2, w // 3 : 2 * w // 3] = 255
    return m


def saved(tmp_path: Path, img: Image.Image, ext: str = "png") -> Path:
    path = tmp_path / "masks" / f"mask_0.{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def test_jpeg_mask_binarised_without_warning(tmp_path):
    path = saved(tmp_path, Image.fromarray(mask_array()), ext="jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # JPEG noise alone must not warn
        m = read_mask(path)
    assert m.dtype == bool and m.shape == (H, W)
    np.testing.assert_array_equal(m, mask_array() > 127)


def test_mode_1_mask(tmp_path):
    path = saved(tmp_path, Image.fromarray(mask_array() > 0))
    np.testing.assert_array_equal(read_mask(path), mask_array() > 0)


def test_rgb_mask_differing_channels_is_error(tmp_path):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:8, :8, 0] = 255  # red foreground: which channel is "the" mask?
    path = saved(tmp_path, Image.fromarray(rgb))
    with pytest.raises(DataError, match=re.escape(str(path))) as e:
        read_mask(path)
    assert "grayscale" in str(e.value)


def test_rgb_mask_equal_channels_warns(tmp_path):
    path = saved(tmp_path, Image.fromarray(mask_array()).convert("RGB"))
    with pytest.warns(UserWarning, match="mask_0.png"):
        m = read_mask(path)
    np.testing.assert_array_equal(m, mask_array() > 127)


def test_rgb_jpeg_mask_warns_and_works(tmp_path):
    path = saved(tmp_path, Image.fromarray(mask_array()).convert("RGB"), ext="jpg")
    with pytest.warns(UserWarning, match="mask_0.jpg"):
        m = read_mask(path)
    np.testing.assert_array_equal(m, mask_array() > 127)


def test_zero_one_mask_warns(tmp_path):
    path = saved(tmp_path, Image.fromarray(mask_array() // 255))
    with pytest.warns(UserWarning, match="mask_0.png"):
        m = read_mask(path)
    np.testing.assert_array_equal(m, mask_array() > 0)


def test_grey_mask_warns_and_binarises(tmp_path):
    grey = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))
    path = saved(tmp_path, Image.fromarray(grey))
    with pytest.warns(UserWarning, match=r"mask_0.png.*\d+\.\d%"):
        m = read_mask(path)
    np.testing.assert_array_equal(m, grey > 127)


def test_palette_mask_is_error(tmp_path):
    path = saved(tmp_path, Image.fromarray(mask_array()).convert("P"))
    with pytest.raises(DataError, match=re.escape(str(path))) as e:
        read_mask(path)
    assert "'P'" in str(e.value) and "8-bit" in str(e.value)


def test_16bit_mask_is_error(tmp_path):
    path = saved(tmp_path, Image.fromarray(mask_array().astype(np.uint16) * 257))
    with pytest.raises(DataError, match=re.escape(str(path))) as e:
        read_mask(path)
    assert "8-bit" in str(e.value)


def test_missing_file_names_the_data_root_setting(tmp_path):
    with pytest.raises(DataError, match="img_0.png.*VLSM_DATA"):
        read_image(tmp_path / "img_0.png")


def test_truncated_image(tmp_path):
    path = tmp_path / "img_0.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match=re.escape(str(path))):
        read_image(path)
