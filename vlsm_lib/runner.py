"""Params files -> runs -> papermill execution (local or Dask) -> HTML reports and indexes.

A params file ``params/<suite>/<study>.yaml``::

    notebook: notebooks/finetune.ipynb
    study: finetune              # optional; default: the file name (several files may share)
    needs: [pretrain]            # studies of the same suite whose runs must complete first
    defaults: {epochs: 10, ...}  # every key must be a parameter of the notebook
    grid: {model: [clipseg, cris], dataset: [synth_polyp]}   # or a list of such mappings;
                                 # a mapping may hold "fixed: {key: value}" for its points only

Each grid point is a run ``outputs/<suite>/<study>/<run_id>/`` (ids in ``vlsm_lib.results``).
The runner injects ``run_dir`` and ``data_root``; string values may name other runs with
``{suite_dir}``, ``{data_root}`` and any parameter, e.g.
``weights: "{suite_dir}/pretrain/pretrain__{model}__synth_shapes__random__s0"``.
Keys a notebook does not declare are refused, values checked before any run starts
(``validate``); declared names go into ``run.json`` (``parameter_names``: ``steps``). Complete
runs are skipped unless ``force``; a failing run is recorded (status failed, its error), the
others go on; each run is executed under its lock (``locks``).
"""

from __future__ import annotations

import fnmatch
import functools
import itertools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vlsm_lib import locks, paths
from vlsm_lib.files import write_json
from vlsm_lib.results import (
    RESUME_STATE,
    RUN_JSON,
    is_complete,
    now,
    portable_params,
    read_run,
    run_id,
    unfinished,
)

INJECTED = ("run_dir", "data_root")
KEYS = {"notebook", "study", "needs", "defaults", "grid", "description", "priority"}


@dataclass
class Run:
    run_id: str
    study: str
    suite: str
    notebook: Path
    params: dict[str, Any]
    run_dir: Path


@dataclass
class Study:
    name: str
    suite: str
    notebook: Path
    defaults: dict[str, Any]
    grids: list[dict[str, list]]
    needs: list[str] = field(default_factory=list)
    description: str = ""
    source: Path | None = None
    # Dask: among runs whose needs are met, higher-priority studies start first (and, inside a
    # study, earlier grid entries); put the studies on the critical path and long runs first.
    priority: int = 0


def load_study(path: str | Path) -> Study:
    """Read and check one params file (keys, grid shape); the notebook must exist."""
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"cannot read params file {path}: {err}") from err
    unknown = sorted(set(spec) - KEYS)
    if unknown:
        raise KeyError(f"{path}: unknown key(s) {unknown}; valid: {sorted(KEYS)}")
    if "notebook" not in spec:
        raise KeyError(f"{path}: 'notebook:' is required (e.g. notebooks/finetune.ipynb)")
    notebook = paths.REPO_ROOT / spec["notebook"]  # an absolute path stays as it is
    if not notebook.is_file():
        raise FileNotFoundError(f"{path}: notebook {notebook} not found")
    grids = spec.get("grid") or [{}]
    grids = grids if isinstance(grids, list) else [grids]
    for g in grids:
        if not isinstance(g.get("fixed", {}), dict):
            raise ValueError(f"{path}: 'fixed:' inside a grid must be a mapping")
        bad = [k for k, v in g.items() if k != "fixed" and (not isinstance(v, list) or not v)]
        if bad:
            raise ValueError(f"{path}: grid values must be non-empty lists; fix {bad}")
    return Study(
        name=spec.get("study", path.stem),
        suite=path.parent.name,
        notebook=notebook,
        defaults=spec.get("defaults") or {},
        grids=grids,
        needs=list(spec.get("needs") or []),
        description=spec.get("description", ""),
        source=path,
        priority=int(spec.get("priority", 0)),
    )


@functools.cache
def declared_parameters(notebook: Path) -> tuple[str, ...]:
    """The names a notebook's ``parameters`` cell declares, as papermill's inspection reads
    them; once per notebook and process (every run of a study asks)."""
    import papermill  # seconds to import (nbformat's schema validator)

    return tuple(papermill.inspect_notebook(str(notebook)))


def check_parameters(study: Study) -> None:
    """Refuse params the notebook does not declare (papermill would only warn)."""
    declared = set(declared_parameters(study.notebook))
    used = (
        set(study.defaults)
        | set(INJECTED)
        | {k for g in study.grids for k in (*g, *g.get("fixed", {})) if k != "fixed"}
    )
    unknown = sorted(used - declared)
    if unknown:
        raise KeyError(
            f"{study.source}: {study.notebook.name} has no parameter(s) {unknown}; its "
            f"parameters: {sorted(declared)}"
        )


def expand(study: Study, outputs: Path | None = None, data_root: Path | None = None) -> list[Run]:
    """Every grid point of a study as a Run, parameters resolved."""
    outputs = outputs or paths.outputs_root()
    data_root = data_root or paths.data_root()
    points = []
    for g in study.grids:
        axes = {k: v for k, v in g.items() if k != "fixed"}
        for values in itertools.product(*axes.values()):
            points.append({**g.get("fixed", {}), **dict(zip(axes, values))})
    # Every grid key names the run (even with one value), so ids stay stable as grids grow;
    # values under a grid's "fixed:" apply to its points without naming them.
    varying = list(dict.fromkeys(k for g in study.grids for k in g if k != "fixed"))
    suite_dir = outputs / study.suite
    runs, seen = [], {}
    for point in points:
        params = {**study.defaults, **point}
        rid = run_id(study.name, {k: params[k] for k in varying if k in params})
        if rid in seen:
            raise ValueError(f"{study.source}: two grid points give run id {rid}")
        seen[rid] = point
        run_dir = suite_dir / study.name / rid
        context = {**params, "suite_dir": suite_dir, "data_root": data_root}
        resolved = {k: _fill(v, context, study) for k, v in params.items()}
        resolved.update(run_dir=str(run_dir), data_root=str(data_root))
        runs.append(Run(rid, study.name, study.suite, study.notebook, resolved, run_dir))
    return runs


def _fill(value, context: dict, study: Study):
    if isinstance(value, dict):
        return {k: _fill(v, context, study) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, context, study) for v in value]
    if not isinstance(value, str) or "{" not in value:
        return value
    try:
        return value.format(**context)
    except KeyError as err:
        raise KeyError(
            f"{study.source}: {value!r} names {err}, which is neither a parameter "
            "nor suite_dir / data_root"
        ) from err


def order_studies(studies: list[Study], outputs: Path | None = None) -> list[Study]:
    """Studies sorted so that each comes after those it needs; needs outside the list must
    already have complete runs on disk."""
    by_name: dict[str, list[Study]] = {}
    for s in studies:
        by_name.setdefault(s.name, []).append(s)
    done: list[Study] = []
    visiting: set[str] = set()

    def visit(s: Study):
        if s in done:
            return
        if s.name in visiting:
            raise ValueError(f"circular 'needs' through study {s.name}")
        visiting.add(s.name)
        for need in s.needs:
            if need in by_name:
                for other in by_name[need]:
                    visit(other)
            else:
                _check_done(s, need, outputs or paths.outputs_root())
        visiting.discard(s.name)
        done.append(s)

    for s in studies:
        visit(s)
    return done


def _check_done(study: Study, need: str, outputs: Path) -> None:
    folder = outputs / study.suite / need
    runs = [d for d in folder.iterdir() if d.is_dir()] if folder.is_dir() else []
    if not runs or not all(is_complete(d) for d in runs):
        raise RuntimeError(
            f"study {study.name} needs {need}, whose runs are not all complete under {folder}; "
            f"run params/{study.suite}/{need}.yaml first (or pass both files)"
        )


def execute(run: Run, force: bool = False) -> str:
    """Execute one run's notebook under its lock: "complete", "failed" or "skipped" (complete,
    or completed meanwhile by a runner that held the lock; its failure returns "failed")."""
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
            return _execute(run)
    finally:
        locks.release(run.run_dir)


def _execute(run: Run) -> str:
    import papermill

    from vlsm_lib.report import render_html

    run.run_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "run_id": run.run_id,
        "study": run.study,
        "suite": run.suite,
        "notebook": _shown(run.notebook),
        "params": portable_params(run.params, run.run_dir),
        # what vlsm_lib.steps.notebook_params reads, so kernels need not import papermill
        "parameter_names": list(declared_parameters(run.notebook)),
        "status": "running",
        "owner": locks.owner(),  # a run left "running" by a dead owner is stale (locks.py)
        "started": now(),
    }
    write_json(run.run_dir / RUN_JSON, info)
    output = run.run_dir / "notebook.ipynb"
    error = None
    # The kernel inherits this environment: no progress bars in reports; it dies with us.
    os.environ.update(TQDM_DISABLE="1", **{locks.RUNNER_PID: str(os.getpid())})
    try:
        papermill.execute_notebook(
            str(run.notebook),
            str(output),
            parameters=run.params,
            kernel_name="python3",
            cwd=str(paths.REPO_ROOT),
            progress_bar=False,
            log_output=False,
        )
    except Exception as err:  # a failing run is recorded; the others go on
        # papermill's error carries the cell's exception: its name and message come first,
        # so that indexes (which show the first line) say what went wrong
        first = f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', '')}"
        error = f"{first.strip()}\n{err}".strip()[:4000]
    if output.is_file():
        try:
            render_html(output)
        except Exception as err:  # a report that cannot render does not void the result
            error = error or f"HTML rendering failed: {err}"
    status = read_run(run.run_dir)
    if error or status.get("status") != "complete":
        info.update(status if status.get("status") == "complete" else {})
        info.update(
            status="failed",
            finished=now(),
            error=error or "the notebook finished without saving its results (save_run)",
        )
        write_json(run.run_dir / RUN_JSON, info)
        return "failed"
    # a complete run keeps its results, not its resume state (a paper-size CRIS: ~1.7 GB)
    (run.run_dir / RESUME_STATE).unlink(missing_ok=True)
    return "complete"


def _shown(path: Path) -> str:
    """A notebook path relative to the repository when it lies inside it."""
    return str(path.relative_to(paths.REPO_ROOT) if path.is_relative_to(paths.REPO_ROOT) else path)


def plan(
    param_files: list[str | Path],
    only: str | None = None,
    outputs: Path | None = None,
    failed: bool = False,
) -> list[tuple[Study, list[Run]]]:
    """Load, check, order and expand studies; ``only`` filters run ids (a glob), ``failed``
    keeps the runs to do again (``results.unfinished``)."""
    studies = [load_study(p) for p in param_files]
    for s in studies:
        check_parameters(s)
    out = []
    for s in order_studies(studies, outputs):
        runs = expand(s, outputs)
        if only:
            runs = [r for r in runs if fnmatch.fnmatch(r.run_id, only)]
        if failed:
            runs = [r for r in runs if unfinished(r.run_dir)]
        out.append((s, runs))
    from vlsm_lib.validate import check_plan  # imports the model registry: only when planning

    check_plan(out)
    return out


def run_local(planned, force: bool = False) -> dict[str, str]:
    from vlsm_lib.progress import Progress

    statuses, progress = {}, Progress(planned)
    for _, runs in planned:
        for run in runs:
            progress.start(run.run_id)
            statuses[run.run_id] = execute(run, force)
            print(progress.finish(run.run_id, statuses[run.run_id]), flush=True)
            _index(run)  # the indexes show the grid's progress while it runs
    return statuses


def _index(run: Run) -> None:
    from vlsm_lib.report import write_root_index, write_study_index

    write_study_index(run.run_dir.parent)
    write_root_index(run.run_dir.parent.parent.parent)
