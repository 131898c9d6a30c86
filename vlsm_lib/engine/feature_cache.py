"""Cache of frozen-encoder outputs, so decoder-only training runs the encoders once per image.

When a model's encoders are frozen (``model.cacheable()``) and no augmentation is used, the
vision activations of an image and the text embedding of a prompt string do not change between
epochs. ``FeatureCache`` keeps them:

- text embeddings per prompt string, in RAM (a few hundred distinct strings, 512 floats each);
- image features per image id, in RAM up to ``max_bytes``, else in float32 memory-mapped files
  under ``folder`` (one file per feature level, one row per image), so memory stays bounded.

With a suite's shared store (``feature_store``; ``fit`` and ``evaluate`` take the one
``notebook.verbs.setup`` activated), what this cache has not seen is read from the store, and what
it computes is written there for the suite's later runs; in disk mode it keeps nothing of its own (a
view on the store). Zero-shot evaluation, prompt sweeps and figures use it through ``forward_for``.

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

from vlsm_lib.engine.feature_store import FeatureStore, active, input_digest, tower_key
from vlsm_lib.models import SegModel


class FeatureCache:
    """Frozen-encoder outputs for one dataset; see the module docstring.

    Args:
        capacity: number of distinct images (the dataset's length).
        mode: "memory" or "disk"; "auto" picks memory when the estimate fits ``max_bytes``.
        folder: where memory maps go in disk mode.
        store: a suite's shared ``FeatureStore``: images and prompts not in this cache are read
            from it, and what is computed is written to it. In disk mode with a store, this
            cache is a view on the store (no memory maps of its own).
    """

    def __init__(
        self,
        model: SegModel,
        capacity: int,
        mode: str = "auto",
        folder: str | Path | None = None,
        max_bytes: float = 4e9,
        store: FeatureStore | None = None,
    ):
        self.model, self.capacity, self.mode = model, capacity, mode
        self.folder, self.max_bytes, self.store = Path(folder) if folder else None, max_bytes, store
        self.slots: dict[str, int] = {}
        self.levels: list[np.ndarray | torch.Tensor] | None = None
        self.texts: dict[str, torch.Tensor] = {}
        self.hits = self.misses = 0
        self.parts = model.cacheable_parts()
        if not self.parts:
            raise ValueError(f"{model.name} under train={model.policy!r} has no frozen encoder")
        # the store's folder per part, and each image's input digest, computed on first use
        self.towers: dict[str, str] = {}
        self.digests: dict[str, str] = {}
        self.allocated = False

    def _allocate(self, feats: list[torch.Tensor]) -> None:
        """Storage for ``capacity`` images, shaped like one image's features."""
        per_image = sum(math.prod(f.shape) * 4 for f in feats)
        total = per_image * self.capacity
        if self.mode == "auto":
            fits = total <= self.max_bytes
            self.mode = "memory" if fits or (self.folder is None and not self.store) else "disk"
        if self.mode == "memory":
            self.levels = [torch.empty((self.capacity, *f.shape)) for f in feats]
            return
        if self.store is not None:  # the store is the disk tier: nothing of our own
            return
        if self.folder is None:
            raise ValueError("disk feature cache needs a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.levels = [
            np.lib.format.open_memmap(
                self.folder / f"level{k}.npy",
                mode="w+",
                dtype=np.float32,
                shape=(self.capacity, *f.shape),
            )
            for k, f in enumerate(feats)
        ]

    def _tower(self, part: str) -> str:
        if part not in self.towers:
            self.towers[part] = tower_key(self.model, part)
        return self.towers[part]

    def _digest(self, key: str, pixels: torch.Tensor) -> str:
        """An image's input digest, hashed once per image (not on every epoch's lookup)."""
        if key not in self.digests:
            self.digests[key] = input_digest(pixels)
        return self.digests[key]

    def _keep(self, key: str, feats: list[torch.Tensor]) -> None:
        """Keep one image's features (each without the batch dimension) in this cache."""
        if not self.allocated:
            self._allocate(feats)
            self.allocated = True
        if self.levels is None or key in self.slots:
            return  # a view on the store keeps nothing
        if len(self.slots) >= self.capacity:
            raise RuntimeError(f"feature cache full ({self.capacity} images)")
        slot = self.slots[key] = len(self.slots)
        for level, f in zip(self.levels, feats):
            f = f.detach().float().cpu()
            level[slot] = f if self.mode == "memory" else f.numpy()

    def _kept(self, key: str) -> list[torch.Tensor]:
        slot = self.slots[key]
        if self.mode == "memory":
            return [level[slot] for level in self.levels]
        return [torch.from_numpy(np.array(level[slot])) for level in self.levels]

    def image(self, image_ids: list[str], pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """Features of a batch, each (B, ...), computing (and storing) the images not seen yet."""
        if "image" not in self.parts:
            return self.model.encode_image(pixel_values)
        got: dict[str, list[torch.Tensor]] = {
            k: self._kept(k) for k in image_ids if k in self.slots
        }
        need = [i for i, k in enumerate(image_ids) if k not in got]
        if need and self.store is not None:
            tower = self._tower("image")
            for i in need:
                key = image_ids[i]
                if key in got:
                    continue
                entry = self.store.get(tower, self._digest(key, pixel_values[i]))
                if entry is not None:
                    got[key] = [entry[str(k)] for k in range(len(entry))]
                    self.store.hits["image"] += 1
                    self._keep(key, got[key])
        compute = list({image_ids[i]: i for i in need if image_ids[i] not in got}.values())
        if compute:
            with torch.no_grad():
                fresh = self.model.encode_image(pixel_values[compute])
            for j, i in enumerate(compute):
                feats = [f[j].detach().float().cpu() for f in fresh]
                got[image_ids[i]] = feats
                if self.store is not None:
                    digest = self._digest(image_ids[i], pixel_values[i])
                    self.store.put(
                        self._tower("image"), digest, {str(k): f for k, f in enumerate(feats)}
                    )
                    self.store.misses["image"] += 1
                self._keep(image_ids[i], feats)
        self.hits += len(image_ids) - len(compute)
        self.misses += len(compute)
        device = pixel_values.device
        return [
            torch.stack([got[k][level] for k in image_ids]).to(device)
            for level in range(len(got[image_ids[0]]))
        ]

    def text(self, prompts: list[str], input_ids: torch.Tensor, attention_mask) -> torch.Tensor:
        """(B, P) text embeddings, one encoder call per distinct new string."""
        if "text" not in self.parts:
            return self.model.encode_text(input_ids, attention_mask)
        new = [i for i, p in enumerate(prompts) if p not in self.texts]
        keys = {}  # the store's key of each new row, hashed once for the lookup and the write
        if new and self.store is not None:
            tower = self._tower("text")
            for i in new:
                mask = attention_mask[i] if attention_mask is not None else None
                keys[i] = input_digest(input_ids[i], mask)
                entry = self.store.get(tower, keys[i])
                if entry is not None and prompts[i] not in self.texts:
                    self.texts[prompts[i]] = entry["text"]
                    self.store.hits["text"] += 1
            new = [i for i in new if prompts[i] not in self.texts]
        if new:
            mask = attention_mask[new] if attention_mask is not None else None
            with torch.no_grad():
                emb = self.model.encode_text(input_ids[new], mask)
            for j, i in enumerate(new):
                if prompts[i] in self.texts:  # the same string twice in one batch
                    continue
                self.texts[prompts[i]] = emb[j].detach().float().cpu()
                if self.store is not None:
                    self.store.put(self._tower("text"), keys[i], {"text": self.texts[prompts[i]]})
                    self.store.misses["text"] += 1
        return torch.stack([self.texts[p] for p in prompts]).to(input_ids.device)

    def describe(self) -> str:
        """The mode, the part cached when only one is, and the shared store when there is one:
        "memory", "disk (image only)", "memory + store"."""
        only = f" ({next(iter(self.parts))} only)" if len(self.parts) == 1 else ""
        return f"{self.mode}{only}{' + store' if self.store is not None else ''}"

    def forward(self, batch: dict) -> torch.Tensor:
        """The model's logits for a batch, (B, 1, H, W), from cached encoder outputs."""
        x = batch["pixel_values"]
        # image ids are unique within a dataset only (pooled sets repeat names like "1.png")
        keys = [f"{d}/{i}" for d, i in zip(batch["dataset"], batch["image_id"])]
        feats = self.image(keys, x)
        text = self.text(list(batch["prompt"]), batch["input_ids"], batch.get("attention_mask"))
        return self.model.decode(feats, text, tuple(x.shape[-2:]))


def forward_for(model: SegModel, capacity: int, store: FeatureStore | None = None):
    """``batch -> logits`` for inference over at most ``capacity`` distinct images: a feature
    cache on ``store`` (default: the active one) when the model has a frozen tower, else the
    model's own ``forward_batch``. Returns (forward, cache or None)."""
    store = store if store is not None else active()
    if store is None or not model.cacheable_parts():
        return model.forward_batch, None
    cache = FeatureCache(model, max(capacity, 1), mode="auto", store=store, max_bytes=2e9)
    return cache.forward, cache
