"""On-disk image-text-mask datasets in the reference layout, loaded with clear errors.

Layout of one dataset ``<root>/<name>``::

    images/<img_name>      RGB image (img_name may hold sub-folders)
    masks/<mask_name>      8-bit mask, 0 background / 255 foreground
    anns/<split>.json      list of records {"img_name", "mask_name", "prompts": {"p0": ...}, ...}

``prompts`` maps keys ``p0..pN`` to a string or a list of alternative strings. Other record keys
(bbox, cat, segment_id, sentences, ...) are kept untouched in ``records`` and otherwise ignored.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .io import FIX_ROOT, DataError, read_image, read_mask
from .pooled import PooledDataset
from .transforms import Preprocess

RANDOM = "random"
# RAM for decoded, resized, normalised samples kept by each dataset after their first load (see
# ImageTextMaskDataset); 0 turns it off. A 352 px image + mask takes 2 MB, a 128 px one 0.26 MB.
SAMPLE_CACHE_MB = 2048.0
_TOKEN_CACHE_SIZE = 65536  # distinct prompt strings whose tokens are kept
REQUIRED_KEYS = ("img_name", "mask_name", "prompts")


def _key_order(key: str) -> tuple[int, int, str]:
    """Sort p2 before p10 (numerically); non-pN keys go last, alphabetically."""
    m = re.fullmatch(r"p(\d+)", key)
    return (0, int(m.group(1)), "") if m else (1, 0, key)


def _sorted_keys(keys: Iterable[str]) -> list[str]:
    return sorted(keys, key=_key_order)


def load_records(anns_path: str | Path) -> list[dict[str, Any]]:
    """Read and validate one split file; returns its records unchanged."""
    path = Path(anns_path)
    if not path.is_file():
        splits = sorted(p.stem for p in path.parent.glob("*.json")) if path.parent.is_dir() else []
        where = f"splits present in {path.parent}: {', '.join(splits) or 'none'}"
        raise DataError(f"split file {path} not found ({where}); pick one of those splits")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(
            f"malformed JSON in {path} at line {e.lineno}, column {e.colno}: "
            f"{e.msg}; fix the file (it must be a JSON list of records)"
        ) from e
    if not isinstance(records, list):
        raise DataError(
            f"{path} holds a JSON {type(records).__name__}, expected a list of "
            "records {img_name, mask_name, prompts}"
        )
    if not records:
        raise DataError(
            f"empty split {path}; the reference used test.json as validation for "
            "colondb/cvc300/etis, point val at another split"
        )
    for i, rec in enumerate(records):
        _check_record(path, i, rec)
    return records


def _check_record(path: Path, i: int, rec: Any) -> None:
    if not isinstance(rec, dict):
        raise DataError(f"{path} record {i} is a {type(rec).__name__}, expected an object")
    where = f"{path} record {i} (img_name={rec.get('img_name')!r})"
    for key in REQUIRED_KEYS:
        if key not in rec:
            raise DataError(
                f"{where} lacks the key '{key}'; every record needs {', '.join(REQUIRED_KEYS)}"
            )
    if not isinstance(rec["prompts"], dict):
        raise DataError(
            f'{where}: \'prompts\' must be an object like {{"p0": "", "p1": '
            f'"..."}}, got {type(rec["prompts"]).__name__}'
        )


class ImageTextMaskDataset(Dataset):
    """One split of one dataset; samples are dicts of tensors and metadata.

    Sample keys: ``pixel_values`` (3, H, W) float32, ``mask`` (1, H, W) float32 in {0, 1},
    ``input_ids`` / ``attention_mask`` (L,) int64 (absent when ``preprocess.tokenizer`` is
    None), ``prompt`` str, ``image_id`` (mask_name), ``cluster`` (records that belong together,
    resampled together by bootstraps: the record's ``cluster`` key, e.g. a patient, else its
    img_name, so that an image's several pathology masks form one cluster), ``img_path``,
    ``mask_path``, ``height`` / ``width`` (original mask size), ``dataset`` (name).

    ``prompt`` is a key like "p3" (a list value: one alternative drawn per item) or "random"
    (a key among p1..pN, then an alternative). Draws use ``default_rng([seed, epoch, index])`` so
    they depend neither on DataLoader workers nor on access order.

    Decoding, resizing and normalising happen once per item: the network-ready image and mask
    stay in RAM up to ``cache_mb`` (default ``SAMPLE_CACHE_MB``; 0 = off; items beyond the cap
    are decoded each time), and the tokens of each prompt string are kept, so epochs after the
    first only collate. Samples are equal either way (tested). A sample's ``pixel_values`` and
    ``mask`` are the cached tensors themselves (copying them cost more than the training step
    saved: fresh allocations of this size page-fault on every epoch), so edit them only after
    ``.clone()``; batching (``default_collate``) copies them. With DataLoader workers each worker
    holds its own cache for the epoch. Files edited during a run are not re-read.
    """

    def __init__(
        self,
        root: str | Path,
        name: str,
        split: str,
        preprocess: Preprocess,
        prompt: str = "p0",
        seed: int = 42,
        cache_mb: float | None = None,
    ) -> None:
        self.root, self.name, self.split = Path(root), name, split
        self.preprocess, self.prompt, self.seed, self.epoch = preprocess, prompt, seed, 0
        self.cache_bytes = (SAMPLE_CACHE_MB if cache_mb is None else cache_mb) * 2**20
        self._samples: dict[int, tuple[torch.Tensor, torch.Tensor, int, int]] = {}
        self._sample_bytes = 0
        self._tokens: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        # Optional (text, record, rng) -> text applied to every chosen prompt.
        self.prompt_transform = None
        self.anns_path = self.root / name / "anns" / f"{split}.json"
        self.records = load_records(self.anns_path)
        common = set.intersection(*(set(r["prompts"]) for r in self.records))
        self.prompt_keys = _sorted_keys(common)
        self._check_files()
        self._check_prompt()

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Change the epoch that seeds prompt draws (evaluation keeps 0 for stable prompts)."""
        self.epoch = int(epoch)

    def paths(self, i: int) -> tuple[Path, Path]:
        """(image path, mask path) of record i."""
        rec = self.records[i]
        base = self.root / self.name
        return base / "images" / rec["img_name"], base / "masks" / rec["mask_name"]

    def _where(self, i: int) -> str:
        return f"{self.anns_path} record {i} (img_name={self.records[i]['img_name']!r})"

    def _check_files(self) -> None:
        missing = [str(p) for i in range(len(self)) for p in self.paths(i) if not p.is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} image/mask files listed in {self.anns_path} are missing, first: "
                f"{', '.join(missing[:5])}; {FIX_ROOT} (it must hold "
                f"{self.name}/images and {self.name}/masks)"
            )
        ids = [r["mask_name"] for r in self.records]
        if len(set(ids)) != len(ids):  # image_id would collide in evaluation
            warnings.warn(
                f"{self.anns_path}: {len(ids) - len(set(ids))} records repeat a "
                "mask_name, so image_id is not unique",
                stacklevel=3,
            )

    def _check_prompt(self) -> None:
        """Fail at construction, not mid-epoch, on an unusable prompt choice."""
        if self.prompt != RANDOM and self.prompt not in self.prompt_keys:
            raise DataError(
                f"unknown prompt key '{self.prompt}' for dataset {self.name}; "
                f"available: {', '.join(self.prompt_keys + [RANDOM])}"
            )
        for i, rec in enumerate(self.records):
            keys = [self.prompt]
            if self.prompt == RANDOM:
                keys = [k for k in rec["prompts"] if k != "p0"]
            if not keys:
                raise DataError(
                    f"{self._where(i)} has no prompt besides p0; prompt='random' needs p1..pN"
                )
            for k in keys:
                v = rec["prompts"][k]
                if not (
                    isinstance(v, str)
                    or (isinstance(v, list) and v and all(isinstance(s, str) for s in v))
                ):
                    raise DataError(
                        f"{self._where(i)}: prompt '{k}' must be a string or a "
                        f"non-empty list of strings, got {v!r}"
                    )

    def prompt_text(self, i: int) -> str:
        """The prompt string of item i at the current epoch (what ``__getitem__`` uses)."""
        i = range(len(self))[i]  # negative index -> positive; seeds must be >= 0
        prompts = self.records[i]["prompts"]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        key = self.prompt
        if key == RANDOM:
            keys = _sorted_keys(k for k in prompts if k != "p0")
            key = keys[int(rng.integers(len(keys)))]
        value = prompts[key]
        text = value[int(rng.integers(len(value)))] if isinstance(value, list) else value
        if self.prompt_transform is not None:  # e.g. an attribute perturbation (ablations)
            text = self.prompt_transform(text, self.records[i], rng)
        return text

    def _load(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """(pixel_values, mask, original h, w) of item i, from RAM after the first time while the
        cache has room."""
        if i in self._samples:
            return self._samples[i]
        img_path, mask_path = self.paths(i)
        image, mask = read_image(img_path), read_mask(mask_path)
        h, w = mask.shape
        if image.size != (w, h):
            raise DataError(
                f"size mismatch in {self._where(i)}: image {img_path} is "
                f"{image.width}x{image.height}, mask {mask_path} is {w}x{h} (WxH); "
                "re-export the mask at the image size"
            )
        item = (self.preprocess.image(image), self.preprocess.mask(mask), h, w)
        size = (item[0].numel() + item[1].numel()) * 4
        if self._sample_bytes + size <= self.cache_bytes:
            self._samples[i] = item
            self._sample_bytes += size
        return item

    def _tokenise(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        if text not in self._tokens:
            if len(self._tokens) >= _TOKEN_CACHE_SIZE:
                self._tokens.clear()
            ids, att = self.preprocess.text([text])
            self._tokens[text] = (ids[0].long(), att[0].long())
        return self._tokens[text]

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = range(len(self))[i]
        img_path, mask_path = self.paths(i)
        pixels, mask, h, w = self._load(i)
        text = self.prompt_text(i)
        sample: dict[str, Any] = {
            "pixel_values": pixels,  # the cache's own tensors: see the class docstring
            "mask": mask,
            "prompt": text,
            "image_id": self.records[i]["mask_name"],
            "cluster": str(self.records[i].get("cluster") or self.records[i]["img_name"]),
            "img_path": str(img_path),
            "mask_path": str(mask_path),
            "height": h,
            "width": w,
            "dataset": self.name,
        }
        if self.preprocess.tokenizer is not None:
            sample["input_ids"], sample["attention_mask"] = self._tokenise(text)
        return sample


def load_dataset(
    root: str | Path,
    names: str | Sequence[str],
    split: str,
    preprocess: Preprocess,
    prompt: str = "p0",
    seed: int = 42,
) -> ImageTextMaskDataset | PooledDataset:
    """One dataset (``names`` a str or a 1-list) or a PooledDataset of several."""
    root = Path(root)
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise DataError("load_dataset needs at least one dataset name")
    for name in names:
        if not (root / name).is_dir():
            present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
            raise DataError(
                f"dataset folder {root / name} not found; folders under {root}: "
                f"{', '.join(present) or 'none'}. Generate the synthetic ones with "
                "`vlsm data synth`, or set the VLSM_DATA environment variable to the data root"
            )
    sets = [ImageTextMaskDataset(root, n, split, preprocess, prompt, seed) for n in names]
    return sets[0] if len(sets) == 1 else PooledDataset(sets)
