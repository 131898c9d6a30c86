"""Losses against hand-computed values and MONAI's DiceLoss."""

import math

import pytest
import torch
from monai.losses import DiceLoss

from vlsm_lib.engine.losses import LOSSES, bce_loss, dice_bce_loss, dice_loss, make_loss

SMOOTH = 1e-5


def _one_pixel_mask():
    """(1, 1, 2, 2) mask with one foreground pixel."""
    return torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])


def test_half_probability_by_hand():
    # logits 0 -> p = 0.5 everywhere: sum(p*g) = 0.5, sum(p) = 2, sum(g) = 1.
    target = _one_pixel_mask()
    logits = torch.zeros_like(target)
    expected_dice = 1 - (2 * 0.5 + SMOOTH) / (2 + 1 + SMOOTH)
    assert dice_loss(logits, target).item() == pytest.approx(expected_dice, rel=1e-6)
    # -log(0.5) = ln 2 for every pixel, whatever its label.
    assert bce_loss(logits, target).item() == pytest.approx(math.log(2), rel=1e-6)
    expected = expected_dice + 0.2 * math.log(2)
    assert dice_bce_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert make_loss("dice_bce")(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_confident_perfect_prediction_and_empty_target_are_near_zero():
    target = _one_pixel_mask()
    assert dice_loss(50 * (2 * target - 1), target).item() == pytest.approx(0.0, abs=1e-6)
    empty = torch.zeros_like(target)
    # Empty target, confident-negative logits: 0/0 is avoided by the smooth term -> loss ~0.
    assert dice_loss(torch.full_like(empty, -50.0), empty).item() == pytest.approx(0.0, abs=1e-6)


def test_batch_mean_of_per_image_losses():
    target = torch.cat([_one_pixel_mask(), torch.ones(1, 1, 2, 2)])
    logits = torch.zeros_like(target)
    first = 1 - (2 * 0.5 + SMOOTH) / (2 + 1 + SMOOTH)
    second = 1 - (2 * 2.0 + SMOOTH) / (2 + 4 + SMOOTH)
    assert first != pytest.approx(second)
    assert dice_loss(logits, target).item() == pytest.approx((first + second) / 2, rel=1e-6)


@pytest.mark.parametrize("channels", [1, 2])
def test_dice_equals_monai_dice_loss(channels):
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(4, channels, 8, 8, generator=gen)
    target = (torch.rand(4, channels, 8, 8, generator=gen) > 0.6).float()
    target[0] = 0  # include an empty mask
    monai = DiceLoss(sigmoid=True, batch=False, smooth_nr=SMOOTH, smooth_dr=SMOOTH)
    assert dice_loss(logits, target).item() == pytest.approx(monai(logits, target).item(), rel=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradient_is_finite_even_for_extreme_logits(name):
    logits = torch.tensor([[[[200.0, -200.0], [0.0, 3.0]]]], requires_grad=True)
    target = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])  # confidently wrong in two pixels
    loss = make_loss(name)(logits, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_half_precision_logits_do_not_overflow():
    # 512x512 foreground sums exceed fp16's max (65504); the loss must compute in float32.
    target = torch.ones(1, 1, 512, 512)
    logits = torch.full((1, 1, 512, 512), 10.0, dtype=torch.float16)
    assert dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-4)


def test_unknown_name_lists_valid_names():
    with pytest.raises(KeyError, match="'dicee'.*bce, dice, dice_bce"):
        make_loss("dicee")


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(1, 1, 2, 2\).*\(1, 2, 2\)"):
        dice_bce_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2))
