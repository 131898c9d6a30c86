"""One runner per run: a lock file taken atomically, kept alive by a heartbeat, broken when stale.

Two runners may start the same study (two people, two Dask clients, a restarted job next to a
survivor). Before executing a run, a runner creates ``<run>/.lock`` with ``O_CREAT | O_EXCL``
(atomic on local and NFSv3+ file systems), writes its owner (pid, host, start) into it, and
touches it every ``HEARTBEAT_S`` seconds from a daemon thread while the notebook executes. The
lock is removed when the run ends, whatever its outcome.

A lock is **stale** when its owner is a process of this host that no longer exists, or when its
heartbeat is older than ``STALE_S`` (an owner on another host that was killed or pre-empted).
A stale lock is broken by renaming it aside (only one of several breakers can win the rename)
and the run is taken over; its ``train_state.pt`` lets the new owner resume where the old one
stopped.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from vlsm_lib.lifetime import alive

LOCK = ".lock"
HEARTBEAT_S = 10.0
STALE_S = 90.0  # no heartbeat for this long: the owner is gone
POLL_S = 2.0  # how often a runner looks again at a run another runner holds


def owner() -> dict:
    """Who this process is: written into the lock and the run's run.json."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def is_stale(path: Path, stale_s: float = STALE_S) -> bool:
    """Whether the lock at ``path`` belongs to nobody any more (module docstring)."""
    try:
        age = time.time() - path.stat().st_mtime
        held_by = json.loads(path.read_text(encoding="utf-8") or "{}")
    except FileNotFoundError:
        return False  # released meanwhile: not stale, simply free
    except (OSError, ValueError):
        held_by = {}  # half-written by an owner killed at birth: judged by its age
    if held_by.get("host") == socket.gethostname() and isinstance(held_by.get("pid"), int):
        if not alive(held_by["pid"]):
            return True
    return age > stale_s


def try_lock(run_dir: str | Path, stale_s: float = STALE_S) -> bool:
    """Take the run's lock; False when a live owner holds it. A stale lock is broken first."""
    path = Path(run_dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not is_stale(path, stale_s):
                return False
            aside = path.with_name(f"{LOCK}.stale-{os.getpid()}")
            try:
                path.rename(aside)  # atomic: of several breakers, one wins
                aside.unlink()
            except FileNotFoundError:
                pass  # another runner broke it first; try to take it
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({**owner(), "since": time.time()}, f)
        return True
    return False


def release(run_dir: str | Path) -> None:
    """Remove the run's lock if this process holds it."""
    path = Path(run_dir) / LOCK
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


@contextmanager
def heartbeat(run_dir: str | Path, every_s: float = HEARTBEAT_S):
    """Touch the run's lock every ``every_s`` seconds while the block runs."""
    path, stop = Path(run_dir) / LOCK, threading.Event()

    def beat():
        while not stop.wait(every_s):
            try:
                os.utime(path)
            except OSError:
                return

    thread = threading.Thread(target=beat, name="vlsm-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every_s)


def is_held(run_dir: str | Path, stale_s: float = STALE_S) -> bool:
    """A live owner holds the run (a report shows "running"; else a running run is stale)."""
    path = Path(run_dir) / LOCK
    return path.is_file() and not is_stale(path, stale_s)
