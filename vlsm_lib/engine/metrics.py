"""Per-image segmentation metrics on binary masks at the original mask resolution.

Inputs are masks of shape (H, W) (``confusion`` also takes (B, H, W)) as numpy arrays or torch
tensors, bool or 0/1; any nonzero value is foreground (as the reference's evaluator, which
binarised with ``> 0``). Outputs are python floats and ints.

The empty-mask rule (as the reference: MONAI ``compute_dice(..., ignore_empty=False)``):

- empty truth and empty prediction: Dice = IoU = 1 (perfect);
- empty truth with any predicted foreground: Dice = IoU = 0; and so is a non-empty truth with an
  empty prediction.

Surface metrics, which MONAI returns as nan/inf (with a warning) when a mask is empty, are settled
here before MONAI is called:

- both empty: HD95 = 0.0, NSD = 1.0 (nothing to miss, nothing spurious);
- exactly one empty: HD95 = NaN (no surface to measure a distance to, so undefined; analyses drop
  or report these separately, using ``gt_empty`` / ``pred_empty``), NSD = 0.0 (no boundary matched).

HD95 is the symmetric 95th-percentile Hausdorff distance between mask edges and NSD is the
normalised surface Dice with a tolerance of ``tolerance`` (default 2) pixels; both are in pixels of
the original resolution (unit spacing), via ``monai.metrics``.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager

import numpy as np
import torch


def _as_bool(mask) -> np.ndarray:
    """A numpy bool array of the same shape; nonzero is foreground."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask) != 0


def _pair(pred, target, ndims: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    pred, target = _as_bool(pred), _as_bool(target)
    if pred.shape != target.shape or pred.ndim not in ndims:
        raise ValueError(
            f"pred and target must have the same shape with {' or '.join(map(str, ndims))} dims, "
            f"got pred {pred.shape} and target {target.shape}"
        )
    return pred, target


def confusion(pred, target):
    """(tp, fp, fn, tn) pixel counts. pred, target: (H, W) -> four ints, or (B, H, W) -> four
    int64 arrays of length B."""
    pred, target = _pair(pred, target, (2, 3))
    axes = (-2, -1)
    counts = (
        (pred & target).sum(axes, dtype=np.int64),
        (pred & ~target).sum(axes, dtype=np.int64),
        (~pred & target).sum(axes, dtype=np.int64),
        (~pred & ~target).sum(axes, dtype=np.int64),
    )
    return tuple(int(c) for c in counts) if pred.ndim == 2 else counts


def _ratio(numerator, denominator):
    """numerator / denominator, 1.0 where the denominator is 0 (the empty rule); scalars give a
    float, arrays an array."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    out = np.divide(num, den, out=np.ones(np.broadcast(num, den).shape), where=den > 0)
    return float(out) if out.ndim == 0 else out


def dice_from_counts(tp, fp, fn):
    """2tp / (2tp + fp + fn); 1.0 when both masks are empty. Scalars or arrays of shape (B,)."""
    tp = np.asarray(tp, dtype=np.int64)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def iou_from_counts(tp, fp, fn):
    """tp / (tp + fp + fn); 1.0 when both masks are empty. Scalars or arrays of shape (B,)."""
    tp = np.asarray(tp, dtype=np.int64)
    return _ratio(tp, tp + fp + fn)


@contextmanager
def _quiet_monai():
    """Silence the FutureWarning MONAI 1.5-1.6 raises on every surface-distance call: its own
    ``compute_*`` passes its own deprecated ``always_return_as_numpy`` to ``get_mask_edges``.
    Nothing we can change; other warnings still pass."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*always_return_as_numpy", category=FutureWarning
        )
        yield


def _one_hot_like(mask: np.ndarray) -> torch.Tensor:
    """(H, W) bool -> (1, 1, H, W) float: batch of one, a single foreground channel."""
    return torch.from_numpy(mask).float()[None, None]


def _empty_case(pred: np.ndarray, target: np.ndarray, both: float, one: float) -> float | None:
    """The value fixed by the empty rules, or None when both masks have foreground."""
    pred_empty, gt_empty = not pred.any(), not target.any()
    if pred_empty and gt_empty:
        return both
    if pred_empty or gt_empty:
        return one
    return None


def hd95(pred, target) -> float:
    """Symmetric 95th-percentile Hausdorff distance in pixels. pred, target: (H, W).

    0.0 when both masks are empty, NaN when exactly one is.
    """
    pred, target = _pair(pred, target, (2,))
    fixed = _empty_case(pred, target, both=0.0, one=math.nan)
    if fixed is not None:
        return fixed
    # include_background=True keeps our only channel explicitly (MONAI drops channel 0 only when
    # C > 1, so False would also keep it, but silently).
    from monai.metrics import compute_hausdorff_distance  # MONAI takes seconds to import

    with _quiet_monai():
        value = compute_hausdorff_distance(
            _one_hot_like(pred), _one_hot_like(target), include_background=True, percentile=95
        )
    return float(value[0, 0])


def nsd(pred, target, tolerance: float = 2.0) -> float:
    """Normalised surface Dice: the fraction of both masks' edge pixels lying within ``tolerance``
    pixels of the other mask's edge. pred, target: (H, W).

    1.0 when both masks are empty, 0.0 when exactly one is.
    """
    pred, target = _pair(pred, target, (2,))
    fixed = _empty_case(pred, target, both=1.0, one=0.0)
    if fixed is not None:
        return fixed
    from monai.metrics import compute_surface_dice

    with _quiet_monai():
        value = compute_surface_dice(
            _one_hot_like(pred),
            _one_hot_like(target),
            class_thresholds=[tolerance],
            include_background=True,
        )
    return float(value[0, 0])


def image_metrics(pred, target, tolerance: float = 2.0, surface: bool = True) -> dict:
    """All metrics of one image. pred, target: (H, W).

    Keys: dice, iou, hd95, nsd, tp, fp, fn, tn, gt_empty, pred_empty. ``surface=False`` skips the
    (slower) surface metrics and sets hd95 and nsd to NaN.
    """
    pred, target = _pair(pred, target, (2,))
    tp, fp, fn, tn = confusion(pred, target)
    return {
        "dice": dice_from_counts(tp, fp, fn),
        "iou": iou_from_counts(tp, fp, fn),
        "hd95": hd95(pred, target) if surface else math.nan,
        "nsd": nsd(pred, target, tolerance) if surface else math.nan,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "gt_empty": not target.any(),
        "pred_empty": not pred.any(),
    }
