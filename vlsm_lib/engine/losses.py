"""Training losses for binary segmentation, all taking raw logits.

What the reference actually optimised: it called MONAI ``DiceCELoss(lambda_ce=0.2)`` on sigmoid
probabilities of shape (B, 1, H, W). With a single channel, MONAI 1.1 computed the CE term as a
softmax cross-entropy over one class, whose log-softmax is identically 0, so the CE term and its
gradient were always zero (MONAI issue #6923). The reference therefore trained with the per-image
soft Dice loss alone; ``make_loss("dice")`` reproduces that.

Our default, ``"dice_bce"``, restores the intended Dice + 0.2 * BCE. The BCE is computed on logits
with ``binary_cross_entropy_with_logits`` (log-sum-exp form) rather than on probabilities as the
reference passed them: for confident logits sigmoid rounds to exactly 0 or 1, so BCE on
probabilities must clamp ``log(0)`` (PyTorch clamps at -100) and loses the loss value and gradient
there, while the logit form stays exact and finite.

Every loss maps ``(logits, target) -> scalar``, with logits and target of shape (B, 1, H, W),
target in {0, 1}.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _as_float32(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes; cast to float32, because under fp16 autocast the Dice sums over a 352x352
    image (up to ~124k) would overflow fp16's maximum of 65504."""
    if logits.shape != target.shape:
        raise ValueError(
            f"logits and target must have the same shape, got logits {tuple(logits.shape)} "
            f"and target {tuple(target.shape)}"
        )
    return logits.float(), target.float()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Soft Dice loss per image and channel, then the mean, on sigmoid(logits).

    logits, target: (B, C, H, W), C = 1 in this project. Per image:
    ``1 - (2 * sum(p * g) + smooth) / (sum(p) + sum(g) + smooth)``, sums over (H, W). This equals
    MONAI ``DiceLoss(sigmoid=True, batch=False, smooth_nr=smooth, smooth_dr=smooth)``; the smooth
    term makes an empty target with an empty prediction score a loss of 0, not 0/0.
    """
    logits, target = _as_float32(logits, target)
    probs = torch.sigmoid(logits)
    dims = tuple(range(2, logits.ndim))
    intersection = (probs * target).sum(dims)
    denominator = probs.sum(dims) + target.sum(dims)
    return (1.0 - (2.0 * intersection + smooth) / (denominator + smooth)).mean()


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits, mean over all pixels. logits, target: (B, 1, H, W)."""
    logits, target = _as_float32(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


def dice_bce_loss(
    logits: torch.Tensor, target: torch.Tensor, bce_weight: float = 0.2
) -> torch.Tensor:
    """Dice + bce_weight * BCE, the reference's intended weighting. Shapes as ``dice_loss``."""
    return dice_loss(logits, target) + bce_weight * bce_loss(logits, target)


LOSSES: dict[str, LossFn] = {"dice_bce": dice_bce_loss, "dice": dice_loss, "bce": bce_loss}


def make_loss(name: str) -> LossFn:
    """The loss called ``name`` (a key of ``LOSSES``) as ``fn(logits, target) -> scalar``."""
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; valid: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]
