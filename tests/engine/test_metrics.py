"""Metrics on hand-computed masks, including THE empty-mask rule."""

import math
import warnings

import numpy as np
import pytest
import torch

from vlsm_lib.engine.metrics import (
    confusion,
    dice_from_counts,
    hd95,
    image_metrics,
    iou_from_counts,
    nsd,
)


def _metrics(pred, target, **kwargs):
    """image_metrics with every warning turned into an error: no MONAI warning may escape."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return image_metrics(pred, target, **kwargs)


def _square(col: int) -> np.ndarray:
    """16x16 mask with a 6x6 square at rows 4-9, columns col..col+5."""
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:10, col : col + 6] = True
    return mask


def test_four_by_four_counts_by_hand():
    target = np.zeros((4, 4), dtype=np.uint8)
    target[0, 0:3] = 1  # three truth pixels
    pred = np.zeros((4, 4), dtype=np.uint8)
    pred[0, 1:4] = 1  # overlaps two of them, one spurious
    m = _metrics(pred, target)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 12)
    assert m["dice"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # 0.6667
    assert m["iou"] == pytest.approx(0.5)


def test_both_empty_is_perfect():
    empty = np.zeros((4, 4), dtype=bool)
    m = _metrics(empty, empty)
    assert (m["dice"], m["iou"], m["hd95"], m["nsd"]) == (1.0, 1.0, 0.0, 1.0)
    assert m["gt_empty"] and m["pred_empty"]


def test_empty_truth_with_one_predicted_pixel_scores_zero():
    empty = np.zeros((4, 4), dtype=bool)
    pred = empty.copy()
    pred[1, 2] = True
    m = _metrics(pred, empty)
    assert (m["dice"], m["iou"], m["nsd"]) == (0.0, 0.0, 0.0)
    assert math.isnan(m["hd95"])
    assert m["gt_empty"] is True and m["pred_empty"] is False


def test_empty_prediction_with_nonempty_truth_scores_zero():
    m = _metrics(np.zeros((16, 16)), _square(4))
    assert (m["dice"], m["iou"], m["nsd"]) == (0.0, 0.0, 0.0)
    assert math.isnan(m["hd95"])
    assert m["gt_empty"] is False and m["pred_empty"] is True


def test_identical_masks():
    m = _metrics(torch.from_numpy(_square(4)), _square(4).astype(np.float32))
    assert (m["dice"], m["iou"], m["hd95"], m["nsd"]) == (1.0, 1.0, 0.0, 1.0)


def test_square_shifted_three_pixels():
    # MONAI measures from each edge pixel (mask XOR its erosion) to the nearest edge pixel of the
    # other mask. Shifting right by 3: the 6 left-column edge pixels of the first square and the 6
    # right-column ones of the second are exactly 3 away, every other edge pixel at most 2
    # (e.g. top-row (4,5) -> (4,7)). 6 of the 20 edge pixels per direction at 3 -> the 95th
    # percentile is 3, and 14/20 = 0.7 of the edge lies within 2 pixels.
    a, b = _square(4), _square(7)
    m = _metrics(a, b)
    assert m["hd95"] == pytest.approx(3.0)
    assert m["nsd"] == pytest.approx(0.7)
    assert _metrics(a, b, tolerance=3.0)["nsd"] == pytest.approx(1.0)
    assert hd95(b, a) == pytest.approx(3.0)  # symmetric
    assert nsd(a, b, tolerance=2.0) == pytest.approx(0.7)


def test_surface_false_skips_surface_metrics():
    m = _metrics(_square(4), _square(7), surface=False)
    assert math.isnan(m["hd95"]) and math.isnan(m["nsd"])
    assert m["dice"] == pytest.approx(0.5)  # overlap 18 of 36 + 36


def test_batched_confusion_equals_per_image_and_adds_up():
    rng = np.random.default_rng(0)
    pred = rng.random((3, 5, 7)) > 0.5
    target = rng.random((3, 5, 7)) > 0.5
    target[1] = False
    batched = confusion(torch.from_numpy(pred), torch.from_numpy(target))
    assert all(c.dtype == np.int64 and c.shape == (3,) for c in batched)
    for i in range(3):
        assert tuple(int(c[i]) for c in batched) == confusion(pred[i], target[i])
    assert (sum(batched) == 5 * 7).all()


def test_counts_vectorised_with_empty_rule():
    tp, fp, fn = np.array([2, 0, 0]), np.array([1, 0, 1]), np.array([1, 0, 0])
    np.testing.assert_allclose(dice_from_counts(tp, fp, fn), [4 / 6, 1.0, 0.0])
    np.testing.assert_allclose(iou_from_counts(tp, fp, fn), [0.5, 1.0, 0.0])
    assert isinstance(dice_from_counts(0, 0, 0), float)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        image_metrics(np.zeros((4, 4)), np.zeros((4, 5)))
