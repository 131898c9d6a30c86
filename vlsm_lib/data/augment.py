"""Optional paired augmentation on batches (off by default, as in the reference).

Geometric transforms (horizontal / vertical flips, 90-degree rotations) move image and mask
together; colour jitter (brightness, contrast, saturation) changes the image only, in [0, 1]
space (undoing and redoing the model's normalisation). Draws depend on (seed, epoch, step).

Caveat: a flip or rotation moves the object but not the words. Prompts that name a location
("located in top left") then describe the wrong place; use ``geometric=False`` with such prompts.
"""

from __future__ import annotations

import torch

from vlsm_lib.data.transforms import Preprocess


class Augmenter:
    """``augment(batch, epoch, step) -> batch``; pixel_values (B, 3, H, W), mask (B, 1, H, W)."""

    def __init__(
        self,
        preprocess: Preprocess,
        seed: int = 0,
        geometric: bool = True,
        colour: bool = True,
        strength: float = 0.2,
    ):
        self.mean = torch.tensor(preprocess.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(preprocess.std).view(1, 3, 1, 1)
        self.seed, self.geometric, self.colour, self.strength = seed, geometric, colour, strength

    def __call__(self, batch: dict, epoch: int, step: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 10_007 + step)
        x, m = batch["pixel_values"], batch["mask"]
        if self.geometric:
            x, m = self._geometric(x, m, g)
        if self.colour:
            x = self._jitter(x, g)
        return {**batch, "pixel_values": x.contiguous(), "mask": m.contiguous()}

    @staticmethod
    def _geometric(x, m, g):
        out_x, out_m = [], []
        for xi, mi in zip(x, m):
            flips = [d for d, p in ((2, 0.5), (1, 0.5)) if torch.rand(1, generator=g) < p]
            if flips:
                xi, mi = xi.flip(flips), mi.flip(flips)
            if xi.shape[-1] == xi.shape[-2]:  # quarter turns keep a square input square
                k = int(torch.randint(0, 4, (1,), generator=g))
                xi, mi = torch.rot90(xi, k, (1, 2)), torch.rot90(mi, k, (1, 2))
            out_x.append(xi)
            out_m.append(mi)
        return torch.stack(out_x), torch.stack(out_m)

    def _jitter(self, x, g):
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        img = x * std + mean
        b = len(x)
        s = self.strength
        bright = 1 + (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1) * s
        contrast = 1 + (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1) * s
        sat = 1 + (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1) * s
        img = img * bright.to(x.device)
        grey_mean = img.mean(dim=(1, 2, 3), keepdim=True)
        img = (img - grey_mean) * contrast.to(x.device) + grey_mean
        grey = img.mean(dim=1, keepdim=True)
        img = (img - grey) * sat.to(x.device) + grey
        return (img.clamp(0, 1) - mean) / std
