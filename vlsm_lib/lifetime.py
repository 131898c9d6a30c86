"""Process lifetime, with the standard library alone (the fork server imports it before
anything else): whether a pid lives, ending this process when another one ends, and keeping
the processes a runner starts in its own process tree.

A run's kernel must not outlive the runner that owns its run (it would go on writing into a run
another runner has taken over), and a fork server must not outlive its grid: each watches a pid
(``exit_when_gone``). A runner becomes a *child subreaper* (``keep_descendants``): a kernel or
server whose parent dies before it is re-parented to the runner instead of init, and the runner
reaps it (``reap``), so that ``time``, a process tree or a scheduler's accounting of ``vlsm run``
sees the work its kernels did.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time

RUNNER_PID = "VLSM_RUNNER_PID"  # set by the runner for the kernels and servers it starts
_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a zombie counts until it is reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def exit_when_gone(pid: int, every_s: float, code: int = 0, name: str = "vlsm-watch") -> None:
    """End this process with ``code`` once ``pid`` is gone (checked every ``every_s`` from a
    daemon thread)."""

    def watch():
        while alive(pid):
            time.sleep(every_s)
        os._exit(code)

    threading.Thread(target=watch, name=name, daemon=True).start()


_WATCHING = False


def exit_with_runner(every_s: float = 2.0) -> bool:
    """In a notebook kernel started by the runner: end this process when the runner that
    owns the run dies (SIGKILL, a pre-empted job, a killed Dask worker), so that no orphaned
    kernel goes on writing into a run another runner has taken over. False when not started
    by a runner (interactive kernels live on)."""
    global _WATCHING
    pid = int(os.environ.get(RUNNER_PID) or 0)
    if not pid or pid == os.getpid():
        return False
    if not _WATCHING:  # a kernel started ahead of need already watches (grid.kernels)
        _WATCHING = True
        # as if killed with it; the run's resume state stays for the next owner
        exit_when_gone(pid, every_s, code=137, name="vlsm-runner-watch")
    return True


def keep_descendants() -> bool:
    """Make this process a child subreaper (Linux): orphaned descendants become its children.
    False where the system has no such thing (the work is then re-parented to init)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap(wait_s: float = 5.0) -> int:
    """Collect the exit of the descendants re-parented to this subreaper: each child that has
    exited, waiting up to ``wait_s`` seconds for those still ending (an orphaned kernel ends
    within a second of its launcher). Returns how many were reaped.

    Call it once the processes this one started itself have been waited for (the end of a
    grid): a child still listed then is an adopted orphan, never a ``Popen`` whose exit status
    its owner still needs."""
    end, reaped = time.monotonic() + wait_s, 0
    while pids := children():
        for pid in pids:
            try:
                reaped += bool(os.waitpid(pid, os.WNOHANG)[0])
            except ChildProcessError:
                pass
        if time.monotonic() >= end:
            break
        time.sleep(0.05)
    return reaped


def children() -> list[int]:
    """The pids of this process's children (Linux /proc; none elsewhere)."""
    pid = os.getpid()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out = []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                out += [int(p) for p in f.read().split()]
        except OSError:
            continue
    return out
