"""Cache of frozen-encoder outputs, so decoder-only training runs the encoders once per image.

When a model's encoders are frozen (``model.cacheable()``) and no augmentation is used, the
vision activations of an image and the text embedding of a prompt string do not change between
epochs. ``FeatureCache`` keeps them:

- text embeddings per prompt string, in RAM (a few hundred distinct strings, 512 floats each);
- image features per image id, in RAM up to ``max_bytes``, else in float32 memory-mapped files
  under ``folder`` (one file per feature level, one row per image), so memory stays bounded.

Cached training equals uncached training within float tolerance (tested): the same tensors come
back, computed by the same ``encode_image`` / ``encode_text``.

Which policy caches what (``model.cacheable_parts()``): ``decoder`` both; ``text_prompt`` the
vision features (the text tower carries the learnable context); ``visual_prompt`` the text
embeddings; ``all``, ``lora`` and ``adapter`` nothing (both towers change as they train). A part
that is not cached is computed by its encoder on every batch, with autograd.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from vlsm_lib.models import SegModel


class FeatureCache:
    """Frozen-encoder outputs for one dataset; see the module docstring.

    Args:
        capacity: number of distinct images (the dataset's length).
        mode: "memory" or "disk"; "auto" picks memory when the estimate fits ``max_bytes``.
        folder: where memory maps go in disk mode.
    """

    def __init__(
        self,
        model: SegModel,
        capacity: int,
        mode: str = "auto",
        folder: str | Path | None = None,
        max_bytes: float = 4e9,
    ):
        self.model, self.capacity, self.mode = model, capacity, mode
        self.folder, self.max_bytes = Path(folder) if folder else None, max_bytes
        self.slots: dict[str, int] = {}
        self.levels: list[np.ndarray | torch.Tensor] | None = None
        self.texts: dict[str, torch.Tensor] = {}
        self.hits = self.misses = 0
        self.parts = model.cacheable_parts()
        if not self.parts:
            raise ValueError(f"{model.name} under train={model.policy!r} has no frozen encoder")

    def _allocate(self, feats: list[torch.Tensor]) -> None:
        """Storage for ``capacity`` images, shaped like one batch's features."""
        per_image = sum(math.prod(f.shape[1:]) * 4 for f in feats)
        total = per_image * self.capacity
        if self.mode == "auto":
            self.mode = "memory" if total <= self.max_bytes or self.folder is None else "disk"
        if self.mode == "memory":
            self.levels = [torch.empty((self.capacity, *f.shape[1:])) for f in feats]
            return
        if self.folder is None:
            raise ValueError("disk feature cache needs a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.levels = [
            np.lib.format.open_memmap(
                self.folder / f"level{k}.npy",
                mode="w+",
                dtype=np.float32,
                shape=(self.capacity, *f.shape[1:]),
            )
            for k, f in enumerate(feats)
        ]

    def _read(self, rows: list[int]) -> list[torch.Tensor]:
        if self.mode == "memory":
            return [level[rows] for level in self.levels]
        return [torch.from_numpy(np.ascontiguousarray(level[rows])) for level in self.levels]

    def image(self, image_ids: list[str], pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """Features of a batch, each (B, ...), computing and storing the images not seen yet."""
        if "image" not in self.parts:
            return self.model.encode_image(pixel_values)
        missing = [i for i, key in enumerate(image_ids) if key not in self.slots]
        if missing:
            with torch.no_grad():
                fresh = self.model.encode_image(pixel_values[missing])
            if self.levels is None:
                self._allocate(fresh)
            for j, i in enumerate(missing):
                if image_ids[i] in self.slots:  # the same image twice in one batch
                    continue
                if len(self.slots) >= self.capacity:
                    raise RuntimeError(f"feature cache full ({self.capacity} images)")
                slot = self.slots[image_ids[i]] = len(self.slots)
                for level, f in zip(self.levels, fresh):
                    level[slot] = (
                        f[j].detach().float().cpu()
                        if self.mode == "memory"
                        else f[j].detach().float().cpu().numpy()
                    )
        self.hits += len(image_ids) - len(missing)
        self.misses += len(missing)
        device = pixel_values.device
        return [f.to(device) for f in self._read([self.slots[k] for k in image_ids])]

    def text(self, prompts: list[str], input_ids: torch.Tensor, attention_mask) -> torch.Tensor:
        """(B, P) text embeddings, one encoder call per distinct new string."""
        if "text" not in self.parts:
            return self.model.encode_text(input_ids, attention_mask)
        new = [i for i, p in enumerate(prompts) if p not in self.texts]
        if new:
            mask = attention_mask[new] if attention_mask is not None else None
            with torch.no_grad():
                emb = self.model.encode_text(input_ids[new], mask)
            for j, i in enumerate(new):
                self.texts.setdefault(prompts[i], emb[j].detach().float().cpu())
        return torch.stack([self.texts[p] for p in prompts]).to(input_ids.device)

    def describe(self) -> str:
        """The mode, and the part cached when only one is: "memory", "disk (image only)"."""
        only = f" ({next(iter(self.parts))} only)" if len(self.parts) == 1 else ""
        return f"{self.mode}{only}"

    def forward(self, batch: dict) -> torch.Tensor:
        """The model's logits for a batch, (B, 1, H, W), from cached encoder outputs."""
        x = batch["pixel_values"]
        # image ids are unique within a dataset only (pooled sets repeat names like "1.png")
        keys = [f"{d}/{i}" for d, i in zip(batch["dataset"], batch["image_id"])]
        feats = self.image(keys, x)
        text = self.text(list(batch["prompt"]), batch["input_ids"], batch.get("attention_mask"))
        return self.model.decode(feats, text, tuple(x.shape[-2:]))
