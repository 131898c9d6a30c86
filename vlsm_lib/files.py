"""Atomic file writes: readers (another run, a report, a resumed process) never see half a file.

Every file that marks or holds a result (``run.json``, ``metrics.json``, checkpoints, the train
state, HTML pages) is written through ``atomic_write``: into a temporary file in the same folder,
then renamed over the target with ``os.replace``, which is atomic on POSIX and Windows file
systems. A crash or a full disk mid-write leaves the previous file intact and no ``*.tmp`` behind.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(
    path: str | os.PathLike, write: Callable[[Path], object], mode: int = 0o644
) -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file, then move it to ``path``.

    ``mode``: the permissions of the result (``mkstemp`` makes 0600; results are shared).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            raise DiskFull(path) from err
        raise
    return path


class DiskFull(OSError):
    """The disk filled while writing a result; the previous file is intact."""

    def __init__(self, path: Path):
        free = shutil.disk_usage(path.parent).free / 2**20
        super().__init__(
            errno.ENOSPC,
            f"disk full while writing {path} ({free:.0f} MiB free on its file system); "
            "nothing was replaced: the previous file is intact. Free space (old runs' "
            "train_state.pt, feature caches) and run again: the run resumes",
        )


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomic UTF-8 text write."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Atomic JSON write (indent 1; values JSON cannot hold are written with ``str``)."""
    return write_text(path, json.dumps(data, indent=1, default=str))
