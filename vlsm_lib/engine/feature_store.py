"""A feature store shared by the runs of a suite: frozen-encoder outputs, written once.

Ten prompt levels of zero-shot CLIPSeg on one dataset see the same test images through the same
frozen vision encoder; a decoder-only finetune sees them again, epoch after epoch, and so do the
other nine prompt levels' finetunes. The store keeps what a frozen tower computed so that every
later run of the suite reads it instead:

- **Where**: ``outputs/<suite>/features/`` (the folder two levels above a run's folder), or the
  folder named by ``$VLSM_FEATURE_STORE``; ``VLSM_FEATURE_STORE=off`` switches it off (``vlsm
  run --no-store`` sets that for its kernels). One file per entry:
  ``<tower>/<key[:2]>/<key>.safetensors``.
- **Keys**: ``<tower>`` is the digest of what determines the tower's function: the model's
  class, its feature configuration (``SegModel.feature_config``: which blocks the decoder
  reads), the part ("image" or "text") and the digest of every parameter and buffer of the
  tower (``vision_prefix`` / ``text_prefix``; names, dtypes, shapes, bytes). ``<key>`` is the
  digest of the tower's input: the preprocessed image tensor (a function of the image file and
  the preprocessing, so a change to either can never return stale features) or the tokenised
  prompt (ids and attention mask). The train policy decides *whether* a tower is read from the
  store: only a tower the policy keeps frozen (``model.cacheable_parts()``) is; a tower that
  trains (``all``, LoRA, adapters, prompt tokens inside it) changes its weights digest as it
  trains and never uses the store. BiomedCLIPSeg and BiomedCLIPSeg-D share BiomedCLIP's
  vision tower and read the same entries.
- **Concurrency**: an entry is written to a temporary file in its folder and renamed into place
  (atomic on POSIX file systems): two runs writing the same key at once both write the same
  bytes and the last rename wins; a reader sees a whole file or none.
- **Size**: at most ``$VLSM_FEATURE_STORE_GB`` (default 100) GB; when a write passes the cap, the
  least recently used entries (a read touches its file's modification time) are deleted down to
  90 % of it. A reader whose entry was just evicted recomputes it (a miss).
- **Bookkeeping**: ``hits`` and ``misses`` per part; runs record them (``FeatureCache.stats``).

Features are stored as float32, as the encoder computed them: results with and without the
store are equal within float tolerance (tested; a batch of other sizes may round differently).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads with the first feature stored or read, not with this module
    import torch

STORE_ENV = "VLSM_FEATURE_STORE"
CAP_ENV = "VLSM_FEATURE_STORE_GB"
DEFAULT_CAP_GB = 100.0
SUFFIX = ".safetensors"
_ACTIVE: FeatureStore | None = None


class FeatureStore:
    """Frozen-tower outputs on disk, shared by processes; see the module docstring."""

    def __init__(self, folder: str | Path, cap_bytes: float = DEFAULT_CAP_GB * 1e9):
        self.folder, self.cap_bytes = Path(folder), float(cap_bytes)
        self.hits = {"image": 0, "text": 0}
        self.misses = {"image": 0, "text": 0}
        self._size: int | None = None  # bytes on disk, as this process last counted them

    def path(self, tower: str, key: str) -> Path:
        return self.folder / tower / key[:2] / f"{key}{SUFFIX}"

    def get(self, tower: str, key: str) -> dict[str, torch.Tensor] | None:
        """The tensors stored under (tower, key), or None (never written, or evicted)."""
        from safetensors.torch import load_file

        path = self.path(tower, key)
        try:
            tensors = load_file(path)
            os.utime(path)  # least recently *used*: a read counts
        except (FileNotFoundError, OSError):
            return None
        return tensors

    def put(self, tower: str, key: str, tensors: dict[str, torch.Tensor]) -> None:
        """Write an entry atomically (temporary file + rename); evict when over the cap."""
        from safetensors.torch import save_file

        path = self.path(tower, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=SUFFIX)
        os.close(fd)
        try:
            save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if self._size is None:
            self._size = self.size()
        else:
            self._size += path.stat().st_size
        if self._size > self.cap_bytes:
            self.evict()

    def entries(self) -> list[tuple[float, int, Path]]:
        """(modification time, bytes, path) of every entry."""
        out = []
        for path in self.folder.glob(f"*/*/*{SUFFIX}"):
            if path.name.startswith(".tmp-"):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:  # evicted by another process meanwhile
                continue
            out.append((st.st_mtime, st.st_size, path))
        return out

    def size(self) -> int:
        return sum(size for _, size, _ in self.entries())

    def evict(self, target: float | None = None) -> int:
        """Delete the least recently used entries until at most ``target`` bytes (default 90 %
        of the cap) remain; returns the bytes freed."""
        target = 0.9 * self.cap_bytes if target is None else target
        entries = sorted(self.entries())
        total, freed = sum(size for _, size, _ in entries), 0
        for _, size, path in entries:
            if total - freed <= target:
                break
            path.unlink(missing_ok=True)
            freed += size
        self._size = total - freed
        return freed


def _digest(parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes | memoryview) else repr(part).encode())
    return h.hexdigest()[:32]


def _sha1(t: torch.Tensor) -> bytes:
    return hashlib.sha1(_tensor_bytes(t), usedforsecurity=False).digest()


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    import torch

    t = t.detach().cpu().contiguous().reshape(-1)  # 1-D: a 0-dim tensor has no byte view
    return memoryview(t.view(torch.uint8).numpy()) if t.numel() else memoryview(b"")


def input_digest(*tensors: torch.Tensor | None) -> str:
    """Digest of one input (a preprocessed image, or token ids and their mask): dtype, shape
    and bytes of each tensor."""
    parts = []
    for t in tensors:
        parts += ["none"] if t is None else [str(t.dtype), tuple(t.shape), _tensor_bytes(t)]
    return _digest(parts)


def weights_digest(model: torch.nn.Module, prefix: str | tuple[str, ...]) -> str:
    """Digest of every parameter and buffer whose name starts with ``prefix``; memoised on the
    model until one of them changes (storage or in-place version)."""
    named = [
        (n, t)
        for n, t in [*model.named_parameters(), *model.named_buffers()]
        if n.startswith(prefix)
    ]
    fingerprint = tuple((n, t.data_ptr(), t._version) for n, t in named)
    memo = model.__dict__.setdefault("_weights_digests", {})
    if memo.get(prefix, (None,))[0] != fingerprint:
        # each tensor's bytes through SHA-1 (not a security use, and faster than SHA-256), on
        # threads (hashlib releases the GIL), then names, dtypes, shapes and those digests
        # through SHA-256 in name order: the same digest whatever the number of threads
        named.sort(key=lambda x: x[0])
        with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
            datas = list(pool.map(_sha1, [t for _, t in named]))
        parts = []
        for (n, t), data in zip(named, datas, strict=True):
            parts += [n, str(t.dtype), tuple(t.shape), data]
        memo[prefix] = (fingerprint, _digest(parts))
    return memo[prefix][1]


def tower_key(model, part: str) -> str:
    """The store folder of a model's frozen ``part`` ("image" or "text"): see the module
    docstring."""
    prefix = model.vision_prefix if part == "image" else model.text_prefix
    facts = (type(model).__qualname__, part, sorted(model.feature_config().items()))
    return _digest([facts, weights_digest(model, prefix)])


def for_run(run_dir: str | Path) -> FeatureStore | None:
    """The store a run uses: ``$VLSM_FEATURE_STORE`` ("off": none; else its folder), by default
    ``features/`` beside the run's study folder (``outputs/<suite>/features``)."""
    setting = os.environ.get(STORE_ENV, "").strip()
    if setting.lower() == "off":
        return None
    folder = Path(setting) if setting else Path(run_dir).resolve().parent.parent / "features"
    try:
        cap_gb = float(os.environ.get(CAP_ENV) or DEFAULT_CAP_GB)
    except ValueError as err:
        raise ValueError(f"${CAP_ENV} must be a number of gigabytes, got {err}") from err
    return FeatureStore(folder, cap_gb * 1e9)


def activate(run_dir: str | Path | None) -> FeatureStore | None:
    """Make the run's store (``for_run``) the one this process's feature caches use; None
    (no run folder, or the store off) leaves each run to its own cache."""
    global _ACTIVE
    _ACTIVE = for_run(run_dir) if run_dir else None
    return _ACTIVE


def active() -> FeatureStore | None:
    return _ACTIVE


def stats(store: FeatureStore | None) -> dict:
    """What a run records: hits and misses per part, the folder, or {"store": "off"}."""
    if store is None:
        return {"store": "off"}
    return {
        "store": str(store.folder),
        **{f"{part}_hits": n for part, n in store.hits.items()},
        **{f"{part}_misses": n for part, n in store.misses.items()},
    }
