"""Params files -> runs -> papermill execution (local or Dask) -> HTML reports and indexes.

A params file ``params/<suite>/<study>.yaml``::

    notebook: notebooks/finetune.ipynb
    study: finetune              # optional; default: the file name (several files may share)
    kind: finetune               # optional; default: the notebook's name (results.KINDS)
    needs: [pretrain]            # studies of the same suite whose runs must complete first
    defaults: {epochs: 10, ...}  # every key must be a parameter of the notebook
    grid: {model: [clipseg, cris], dataset: [synth_polyp]}   # or a list of such mappings;
                                 # a mapping may hold "fixed: {key: value}" for its points only

Each grid point is a run ``outputs/<suite>/<study>/<run_id>/`` (ids in ``vlsm_lib.results``). The
runner injects ``run_dir`` and ``data_root`` (a study may set its own ``data_root``, e.g.
``"{data_root}/reference_prompts"``); string values may name other runs with ``{suite_dir}``,
``{data_root}`` and any parameter, e.g. ``weights:
"{suite_dir}/pretrain/pretrain__{model}__synth_shapes__random__s0"``. Keys a notebook does not
declare are refused, values checked before any run starts (``preflight``); declared names go into
``run.json`` (``parameter_names``: ``notebook.verbs``). Complete runs are skipped unless ``force``;
a failing run is recorded (status failed, its error), the others go on; each run is executed under
its lock (``locks``).
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vlsm_lib import paths
from vlsm_lib.grid.execute import Reports, declared_parameters, execute
from vlsm_lib.results import KINDS, SEED_TOKEN, is_complete, run_id, token_part, unfinished

INJECTED = ("run_dir", "data_root")
KEYS = {"notebook", "study", "kind", "needs", "defaults", "grid", "description", "priority"}


@dataclass
class Run:
    run_id: str
    study: str
    suite: str
    notebook: Path
    params: dict[str, Any]
    run_dir: Path
    kind: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)  # what the override layer changed


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
    kind: str = ""  # what its runs are (results.KINDS), whatever the study is called


def load_study(path: str | Path, suite: str | None = None) -> Study:
    """Read and check one params file (keys, grid shape); the notebook must exist. ``suite``:
    write its runs under ``outputs/<suite>`` instead of the params folder's name."""
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
    kind = spec.get("kind", notebook.stem)
    if kind not in KINDS and kind != notebook.stem:
        raise ValueError(
            f"{path}: unknown kind {kind!r}; valid: {', '.join(KINDS)} (or leave 'kind:' out: "
            f"the notebook's name, {notebook.stem!r}, is the default)"
        )
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
        suite=suite or path.parent.name,
        notebook=notebook,
        defaults=spec.get("defaults") or {},
        grids=grids,
        needs=list(spec.get("needs") or []),
        description=spec.get("description", ""),
        source=path,
        priority=int(spec.get("priority", 0)),
        kind=kind,
    )


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


def expand(
    study: Study,
    outputs: Path | None = None,
    data_root: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> list[Run]:
    """Every grid point of a study as a Run, parameters resolved; ``overrides`` applied
    (``override``) after the run ids are made, so that ids and references stay the study's."""
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
    runs, seen, configs = [], {}, {}
    for point in points:
        params = {**study.defaults, **point}
        rid = run_id(study.name, {k: params[k] for k in varying if k in params})
        if rid in seen:
            raise ValueError(f"{study.source}: two grid points give run id {rid}")
        seen[rid] = point
        _same_config(study, rid, params, configs)
        params, changed = override(params, overrides or {}, study)
        run_dir = suite_dir / study.name / rid
        context = {**params, "suite_dir": suite_dir, "data_root": data_root}
        resolved = {k: _fill(v, context, study) for k, v in params.items()}
        # data_root is injected unless the study sets its own (e.g. "{data_root}/reference_prompts")
        resolved["run_dir"] = str(run_dir)
        resolved.setdefault("data_root", str(data_root))
        runs.append(
            Run(
                rid, study.name, study.suite, study.notebook, resolved, run_dir, study.kind, changed
            )
        )
    return runs


SUITE_REFERENCE = "{suite_dir}"


def _same_config(study: Study, rid: str, params: dict, configs: dict) -> None:
    """Refuse two runs whose ids differ in the seed alone but whose other parameters differ
    too: the statistics take such runs for the seeds of one configuration and would average
    two recipes (``stats.with_config``). ``configs``: config id -> (run id, params) so far."""
    config = re.sub(token_part(SEED_TOKEN), "", rid)
    unseeded = {k: v for k, v in params.items() if k != "seed"}
    first = configs.setdefault(config, (rid, unseeded))
    differ = sorted(k for k in set(unseeded) | set(first[1]) if unseeded.get(k) != first[1].get(k))
    if differ:
        raise ValueError(
            f"{study.source}: runs {first[0]} and {rid} differ in {', '.join(differ)} besides "
            "their seed, yet their ids name the same configuration; put the differing keys on a "
            "grid axis (their values then name the runs) or in a study of their own"
        )


def override(params: dict, overrides: dict, study: Study) -> tuple[dict, dict]:
    """``params`` with each override whose key the study's notebook declares, and what changed.

    A value that names a run of the suite (it starts with ``{suite_dir}``: a prompt ablation's
    finetuned checkpoint, a domain shift's) is kept: the references between studies are the
    study's whatever the overrides, so that a rehearsal runs the paper's grid as it is."""
    declared = set(declared_parameters(study.notebook))
    changed = {}
    for key, value in overrides.items():
        old = params.get(key)
        if key not in declared or (isinstance(old, str) and old.startswith(SUITE_REFERENCE)):
            continue
        changed[key] = value
    return {**params, **changed}, changed


def check_overrides(studies: list[Study], overrides: dict) -> None:
    """Refuse an override that no planned notebook declares (it would change nothing)."""
    declared = (
        set().union(*(declared_parameters(s.notebook) for s in studies)) if studies else set()
    )
    unknown = sorted(set(overrides) - declared - set(INJECTED))
    if unknown or set(overrides) & set(INJECTED):
        bad = unknown or sorted(set(overrides) & set(INJECTED))
        raise KeyError(
            f"--set {', '.join(bad)}: no parameter of the planned notebooks (run_dir and "
            f"data_root are the runner's); their parameters: {sorted(declared)}"
        )


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


def plan(
    param_files: list[str | Path],
    only: str | None = None,
    outputs: Path | None = None,
    failed: bool = False,
    suite: str | None = None,
    overrides: dict[str, Any] | None = None,
    data_root: Path | None = None,
) -> list[tuple[Study, list[Run]]]:
    """Load, check, order and expand studies; ``only`` filters run ids (a glob), ``failed``
    keeps the runs to do again (``results.unfinished``). ``suite`` writes every study under
    ``outputs/<suite>``; ``overrides`` (``vlsm run --set key=value``) replace parameters of
    every run whose notebook declares them (``override``), and are recorded in run.json.
    ``data_root``: the data root injected into the runs (default ``$VLSM_DATA``)."""
    studies = [load_study(p, suite) for p in param_files]
    for s in studies:
        check_parameters(s)
    check_overrides(studies, overrides or {})
    out = []
    for s in order_studies(studies, outputs):
        runs = expand(s, outputs, data_root, overrides=overrides)
        if only:
            runs = [r for r in runs if fnmatch.fnmatch(r.run_id, only)]
        if failed:
            runs = [r for r in runs if unfinished(r.run_dir)]
        out.append((s, runs))
    from vlsm_lib.grid.preflight import check_plan  # imports the model registry: only when planning

    check_plan(out)
    return out


def run_local(planned, force: bool = False, lean: bool = True) -> dict[str, str]:
    """Execute the planned runs one after another; {run id: status}. ``lean``: each run's
    kernel is started ahead while the previous run executes and reports render in the
    background (``execute``, ``kernels``); False: papermill's own start, reports inline."""
    from vlsm_lib.grid.kernels import KernelPool, grid_code
    from vlsm_lib.grid.progress import Progress

    statuses, progress = {}, Progress(planned)
    todo = [run for _, runs in planned for run in runs]
    kernels, reports = (KernelPool(grid_code(todo)), Reports()) if lean else (None, None)
    try:
        for i, run in enumerate(todo):
            progress.start(run.run_id)
            if kernels is not None:  # the next run to execute gets its kernel started now
                later = (r for r in todo[i + 1 :] if force or not is_complete(r.run_dir))
                kernels.upcoming = next(later, None)
            statuses[run.run_id] = execute(run, force, kernels, reports)
            print(progress.finish(run.run_id, statuses[run.run_id]), flush=True)
            write_indexes(run)  # the indexes show the grid's progress while it runs
    finally:
        if kernels is not None:
            kernels.close()
        if reports is not None:
            for name in reports.join():  # a report that failed to render failed its run
                statuses[name] = "failed"
            if todo:
                write_indexes(todo[-1])
    return statuses


def write_indexes(run: Run) -> None:
    """Write the HTML index of ``run``'s study and of the whole outputs folder."""
    from vlsm_lib.reports.index import write_root_index, write_study_index

    write_study_index(run.run_dir.parent)
    write_root_index(run.run_dir.parent.parent.parent)
