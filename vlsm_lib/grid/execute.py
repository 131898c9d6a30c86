"""Executing one run: its lock, papermill, its record, its HTML report.

``execute(run)`` runs a ``runner.Run``'s notebook under the run's lock (``locks``) and returns
"complete", "failed" or "skipped". Two ways to start and finish, the results the same:

- **lean** (the default of ``vlsm run``): the kernel was started ahead, its imports done, while
  the previous run executed (``kernels.KernelPool``); it is killed in the background after the
  run; the HTML report is rendered by a background thread (``Reports``) while the next run
  executes. A run is ``complete`` when its notebook's last cell saved it, as always; its report
  follows within about one run's time, and the runner waits for every report before it returns
  or exits. A report that cannot be rendered marks its run failed (as eager runs are), with
  the rendering error.
- **eager** (``vlsm run --eager``; what ``benchmarks/grid.py`` compares with): papermill starts
  its own kernel, shuts it down gracefully, and the report is rendered before the next run.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from pathlib import Path

from vlsm_lib import locks, paths
from vlsm_lib.engine.train import RESUME_STATE
from vlsm_lib.files import write_json
from vlsm_lib.results import RUN_JSON, is_complete, now, portable_params, read_run


@functools.cache
def declared_parameters(notebook: Path) -> tuple[str, ...]:
    """The names a notebook's ``parameters`` cell declares, as papermill's inspection reads
    them; once per notebook and process (every run of a study asks)."""
    import papermill  # seconds to import (nbformat's schema validator)

    return tuple(papermill.inspect_notebook(str(notebook)))


def execute(run, force: bool = False, kernels=None, reports: Reports | None = None) -> str:
    """Execute one run's notebook under its lock: "complete", "failed" or "skipped" (complete,
    or completed meanwhile by a runner that held the lock; its failure returns "failed").
    ``kernels`` (a ``kernels.KernelPool``) and ``reports`` make the start and the report lean
    (module docstring); None for either: eager."""
    if is_complete(run.run_dir) and not force:
        return "skipped"
    waited = False
    while not locks.try_lock(run.run_dir):  # another runner executes it: wait for its outcome
        waited = True
        time.sleep(locks.POLL_S)
    try:
        status = read_run(run.run_dir).get("status")
        if waited and status in ("complete", "failed"):
            return "skipped" if status == "complete" else "failed"
        if status == "complete" and not force:
            return "skipped"
        with locks.heartbeat(run.run_dir):
            return _execute(run, kernels, reports)
    finally:
        locks.release(run.run_dir)


def _execute(run, kernels=None, reports: Reports | None = None) -> str:
    """Record the run as running, execute its notebook, then record how it ended."""
    info = _record_start(run)
    error = _papermill(run, kernels)
    status = read_run(run.run_dir)
    if error or status.get("status") != "complete":
        return _record_failure(run, info, status, error, reports)
    # a complete run keeps its results, not its resume state (a paper-size CRIS: ~1.7 GB)
    (run.run_dir / RESUME_STATE).unlink(missing_ok=True)
    if reports is not None:
        reports.submit(run.run_dir)
        return "complete"
    return "failed" if _report(run.run_dir) else "complete"


def _record_start(run) -> dict:
    """Write the run's run.json as running (who owns it, what it is); returns that record."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "run_id": run.run_id,
        "study": run.study,
        "kind": run.kind or run.notebook.stem,
        "suite": run.suite,
        "notebook": _shown(run.notebook),
        "params": portable_params(run.params, run.run_dir),
        # what `vlsm run --set` changed in the study's own parameters
        "overrides": portable_params(run.overrides, run.run_dir),
        # what vlsm_lib.notebook.verbs.notebook_params reads, so kernels need not import papermill
        "parameter_names": list(declared_parameters(run.notebook)),
        "status": "running",
        "owner": locks.owner(),  # a run left "running" by a dead owner is stale (locks.py)
        "started": now(),
    }
    write_json(run.run_dir / RUN_JSON, info)
    return info


def _papermill(run, kernels=None) -> str | None:
    """Execute the run's notebook into ``notebook.ipynb``; the error when a cell failed.

    The kernel's environment is ``grid.kernels.kernel_env`` (no progress bars in reports; it
    dies with us): a kernel started ahead has it, papermill starts any other with it."""
    import papermill

    from vlsm_lib.grid.kernels import fresh_manager, release

    km = kernels.take(run) if kernels is not None else None
    km = km if km is not None else fresh_manager()
    try:
        papermill.execute_notebook(
            str(run.notebook),
            str(run.run_dir / "notebook.ipynb"),
            parameters=run.params,
            kernel_name="python3",
            cwd=str(paths.REPO_ROOT),
            progress_bar=False,
            log_output=False,
            km=km,
        )
        return None
    except Exception as err:  # a failing run is recorded; the others go on
        # papermill's error carries the cell's exception: its name and message come first,
        # so that indexes (which show the first line) say what went wrong
        first = f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', '')}"
        return f"{first.strip()}\n{err}".strip()[:4000]
    finally:
        stopping = release(km)
        if kernels is None:  # no pool waits for it at the end of the grid
            stopping.join(30)


def _record_failure(run, info: dict, status: dict, error, reports) -> str:
    """Mark the run failed, saying why; render what its notebook reached."""
    info.update(status if status.get("status") == "complete" else {})
    info.update(
        status="failed",
        finished=now(),
        error=error or "the notebook finished without saving its results (save_run)",
    )
    write_json(run.run_dir / RUN_JSON, info)
    if (run.run_dir / "notebook.ipynb").is_file():  # the report shows where it stopped
        _report(run.run_dir) if reports is None else reports.submit(run.run_dir)
    return "failed"


def _report(run_dir: Path) -> str:
    """Render a run's notebook.html; a rendering error marks the run failed and is returned."""
    from vlsm_lib.reports.run_page import render_html

    try:
        render_html(run_dir / "notebook.ipynb")
        return ""
    except Exception as err:  # a report that cannot render: the run is failed, saying why
        info = read_run(run_dir)
        if info.get("status") == "complete":
            info.update(status="failed", error=f"HTML rendering failed: {err}")
            write_json(run_dir / RUN_JSON, info)
        return f"HTML rendering failed: {err}"


class Reports:
    """A background thread rendering run reports in the order runs finish (module docstring).
    ``join()`` waits for all and returns {run folder name: rendering error} for the failures."""

    def __init__(self):
        self.todo: queue.Queue[Path | None] = queue.Queue()
        self.failed: dict[str, str] = {}
        self.thread = threading.Thread(target=self._work, name="vlsm-reports", daemon=True)
        self.thread.start()

    def submit(self, run_dir: Path) -> None:
        self.todo.put(Path(run_dir))

    def _work(self) -> None:
        while (run_dir := self.todo.get()) is not None:
            if error := _report(run_dir):
                self.failed[run_dir.name] = error

    def join(self) -> dict[str, str]:
        self.todo.put(None)
        self.thread.join()
        return dict(self.failed)


def _shown(path: Path) -> str:
    """A notebook path relative to the repository when it lies inside it."""
    return str(path.relative_to(paths.REPO_ROOT) if path.is_relative_to(paths.REPO_ROOT) else path)
