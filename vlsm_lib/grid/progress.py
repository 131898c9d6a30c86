"""Where a grid is: runs done of the total, failed so far, the runs under way, the time left.

The runners (local and Dask) tell a ``Progress`` when a run starts and ends; it prints one line
to the terminal and writes ``outputs/<suite>/progress.json``, which ``outputs/index.html``
shows while the grid runs (``html``). The time left is the mean duration of the runs executed so
far (skipped complete runs do not count) times the runs left, divided by the runs that go on
at once.
"""

from __future__ import annotations

import time
from pathlib import Path

from vlsm_lib.files import write_json
from vlsm_lib.reports.index import duration
from vlsm_lib.results import PROGRESS_JSON

# What a run needs on disk when none of its study is complete yet to measure: a tiny model's
# run (report, tables, checkpoint) and a paper-size one's (checkpoint, plus its resume state
# while it runs: weights and AdamW moments, ~1.7 GB for CRIS trained end to end).
GUESS_BYTES = {"tiny": 50 * 2**20, "paper": 2 * 2**30}


class Progress:
    """Counts of one plan (``runner.plan``'s list of (study, runs)), kept on disk per suite."""

    def __init__(self, planned):
        runs = [r for _, rs in planned for r in rs]
        self.total = len(runs)
        self.suites = {r.run_dir.parents[1] for r in runs}  # outputs/<suite>
        self.done = self.failed = 0
        self.running: dict[str, float] = {}
        self.executed: list[float] = []
        self.started = time.time()
        self._write()

    def start(self, *run_ids: str) -> None:
        """Runs under way (Dask: all submitted at once, one write for them all)."""
        now = time.time()
        self.running.update(dict.fromkeys(run_ids, now))
        self._write()

    def finish(self, run_id: str, status: str) -> str:
        """Record a run's end; returns the line to print."""
        began = self.running.pop(run_id, None)
        self.done += 1
        self.failed += status == "failed"
        if status in ("complete", "failed") and began is not None:
            self.executed.append(time.time() - began)  # a run executed (not skipped)
        self._write()
        return f"{status:9s} {run_id}  [{self.line()}]"

    def eta_s(self) -> float | None:
        """The wall time per executed run so far (which counts the runs that go on at once)
        times the runs left; None before any run has executed."""
        if not self.executed:
            return None
        return (time.time() - self.started) / len(self.executed) * (self.total - self.done)

    def line(self) -> str:
        eta = self.eta_s()
        left = f", about {duration(eta)} left" if eta is not None and self.done < self.total else ""
        return f"{self.done}/{self.total} runs done, {self.failed} failed{left}"

    def _write(self) -> None:
        state = {
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "running": sorted(self.running),
            "eta_s": self.eta_s(),
            "started": self.started,
            "updated": time.time(),
        }
        for suite in self.suites:
            write_json(suite / PROGRESS_JSON, state)


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def disk_need(planned) -> int:
    """Bytes the runs still to do will write: per study, the median size of its complete runs
    (measured), else ``GUESS_BYTES`` by model size."""
    from statistics import median

    from vlsm_lib.results import is_complete

    need = 0
    for _, runs in planned:
        complete = [is_complete(r.run_dir) for r in runs]  # each run.json read once
        todo = [r for r, c in zip(runs, complete) if not c]
        done = [r.run_dir for r, c in zip(runs, complete) if c]
        if todo:
            size = todo[0].params.get("size", "paper")
            each = median(map(_folder_bytes, done)) if done else GUESS_BYTES.get(size, 2**30)
            need += int(each) * len(todo)
    return need


def warn_if_disk_short(planned, outputs: Path) -> str | None:
    """A warning (also returned) when the free space under ``outputs`` is below
    ``disk_need``; None when there is room."""
    import shutil
    import warnings

    outputs.mkdir(parents=True, exist_ok=True)
    free, need = shutil.disk_usage(outputs).free, disk_need(planned)
    if free >= need:
        return None
    text = (
        f"{outputs} has {free / 2**30:.1f} GiB free; the runs to do need about "
        f"{need / 2**30:.1f} GiB: free space or point VLSM_OUTPUTS elsewhere"
    )
    warnings.warn(text, stacklevel=2)
    return text
