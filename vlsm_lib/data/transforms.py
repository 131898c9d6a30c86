"""Model-specific preprocessing facts, passed to the data layer (never hard-coded there).

Every model exposes a :class:`Preprocess`; the dataset uses it to resize, normalise and tokenise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

# tokenizer(texts, context_length) -> (input_ids (N, L) int64, attention_mask (N, L) int64)
Tokenizer = Callable[[Sequence[str], int], tuple[torch.Tensor, torch.Tensor]]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Preprocess:
    """How a model wants its inputs.

    Attributes:
        image_size: (H, W) the network input; images are squashed to it (no letterbox), as the
            reference does.
        mean, std: per-channel normalisation after scaling to [0, 1].
        tokenizer: see ``Tokenizer``; None for image-only models (no ``input_ids`` in samples).
        context_length: token sequence length L (padding and truncation).
    """

    image_size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    tokenizer: Tokenizer | None = None
    context_length: int = 77

    def image(self, img: Image.Image) -> torch.Tensor:
        """RGB PIL image -> (3, H, W) float32, resized bilinear (antialiased) and normalised."""
        h, w = self.image_size
        hwc = torch.from_numpy(np.array(img.convert("RGB").resize((w, h), Image.BILINEAR)))
        out = hwc.permute(2, 0, 1).to(torch.float32, memory_format=torch.contiguous_format)
        mean = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32)[:, None, None]
        return out.div_(255.0).sub_(mean).div_(std)

    def mask(self, mask: np.ndarray) -> torch.Tensor:
        """Binary (h, w) bool mask -> (1, H, W) float32 in {0, 1}, resized nearest."""
        h, w = self.image_size
        img = Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)
        return torch.from_numpy((np.asarray(img) > 127).astype(np.float32))[None]

    def text(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Strings -> (input_ids (N, L), attention_mask (N, L))."""
        if self.tokenizer is None:
            raise ValueError(
                "this Preprocess has no tokenizer (image-only model); cannot tokenise text"
            )
        return self.tokenizer(list(texts), self.context_length)


def to_device(batch: dict, device: torch.device | str) -> dict:
    """A collated batch with its tensors on ``device`` (strings and lists left as they are)."""
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }
