"""What a grid costs beyond its work: the shared feature store and the lean run start, on and off.

Three small grids run through the runner (``runner.run_local``, papermill, the notebooks),
each twice in one invocation: **off** is the runner without both (``VLSM_FEATURE_STORE=off``
and ``lean=False``: papermill starts and shuts down its own kernel, each run computes its own
frozen features, reports are rendered inline) and **on** is the default (the suite's feature
store, kernels forked from a server that imported the grid's modules and started ahead, reports
rendered in the background). Each variant writes into its own fresh outputs folder; the data
(MedShapes ``synth_polyp``) is written once and shared.

- ``fixed``: zero-shot tiny CLIPSeg on a one-image dataset, six prompt levels (six runs): the
  cost of a run that does almost no work, per run.
- ``levels``: zero-shot paper-size CLIPSeg (``weights: ""``: the architecture with seeded
  random weights, built offline) on the same 16 images at ten prompt levels (ten runs).
- ``finetune``: ten decoder-only finetunes (2 epochs) of paper-size CLIPSeg on 24 training
  images (8 validation, 16 test), differing only in the prompt level.
- ``demo`` (only when asked: ``--only demo``, about 20 min): the demo study as ``make study``
  runs it (``vlsm run params/demo --executor dask --workers 2``, one torch thread per worker),
  off (``--no-store --eager``) then on, each into fresh outputs and data folders (its MedShapes
  written afresh too); every per-image row of every run compared (Dice and IoU), and the store's
  hits and misses summed over the on variant's runs.

Wall time is measured from the runner's start to its return: every run ``complete`` and its
report written (the runner waits for the background reports). Results are compared too: the
largest per-image Dice difference between off and on over every run. ``fixed`` runs the
variants in the order off, on, on, off (medians); the paper-size grids once each, ``levels``
on first, ``finetune`` off first, so that neither variant always runs on a warmer machine.

    .venv/bin/python benchmarks/grid.py                   # all three (20-40 min on 2 cores)
    .venv/bin/python benchmarks/grid.py --only fixed      # one of them
    .venv/bin/python benchmarks/grid.py --only demo       # the demo study, off then on
    .venv/bin/python benchmarks/grid.py --quick           # smoke: tiny models, 3 runs each
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import pandas as pd

from vlsm_lib.data.medshapes.synthetic import write_dataset

REPO = Path(__file__).resolve().parent.parent
LEVELS = [f"p{i}" for i in range(10)]


def params(folder: Path, scenario: str, quick: bool) -> Path:
    """The params file of a scenario; its suite is the scenario's name."""
    levels = LEVELS[:3] if quick else LEVELS
    size = "tiny" if quick else "paper"
    text = {
        "fixed": (
            "notebook: notebooks/zero_shot.ipynb\n"
            "defaults: {size: tiny, weights: '', dataset: one_image}\n"
            f"grid: {{model: [clipseg], prompt: {(LEVELS[:3] if quick else LEVELS[:6])}}}\n"
        ),
        "levels": (
            "notebook: notebooks/zero_shot.ipynb\n"
            f"defaults: {{size: {size}, weights: '', dataset: images16}}\n"
            f"grid: {{model: [clipseg], prompt: {levels}}}\n"
        ),
        "finetune": (
            "notebook: notebooks/finetune.ipynb\n"
            f"defaults: {{size: {size}, weights: '', train: decoder, dataset: images16,\n"
            "  max_epochs: 2, min_epochs: 2, batch_size: 8, progress: false}\n"
            f"grid: {{model: [clipseg], prompt: {levels}}}\n"
        ),
    }[scenario]
    path = folder / "params" / scenario / f"{scenario}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace("'", '"'))
    return path


def write_data(root: Path, quick: bool) -> None:
    size = 64 if quick else 352
    for name, counts in [
        ("one_image", {"train": 1, "val": 1, "test": 1}),
        ("images16", {"train": 24, "val": 8, "test": 16}),
    ]:
        folder = write_dataset("synth_polyp", root / "tmp", seed=3, size=size, counts=counts)
        folder.rename(root / name)


def run_grid(params_file: Path, outputs: Path, on: bool) -> tuple[float, pd.DataFrame]:
    """(wall seconds of run_local, the grid's per-image table)."""
    from vlsm_lib.grid.runner import plan, run_local
    from vlsm_lib.results import gather

    os.environ["VLSM_OUTPUTS"] = str(outputs)
    if on:
        os.environ.pop("VLSM_FEATURE_STORE", None)
    else:
        os.environ["VLSM_FEATURE_STORE"] = "off"
    planned = plan([params_file])
    t0 = time.perf_counter()
    statuses = run_local(planned, lean=on)
    wall = time.perf_counter() - t0
    if set(statuses.values()) != {"complete"}:
        raise RuntimeError(f"{params_file.stem} ({'on' if on else 'off'}): {statuses}")
    study = outputs / params_file.parent.name / params_file.stem
    missing = [
        d.name for d in study.iterdir() if d.is_dir() and not (d / "notebook.html").is_file()
    ]
    if missing:
        raise RuntimeError(f"reports missing after the runner returned: {missing}")
    return wall, gather(study)


METRICS = ["dice", "iou"]


def compare(off: pd.DataFrame, on: pd.DataFrame, keys: list[str] | None = None) -> dict:
    """Rows of each side, rows matched on ``keys`` (default: every column both share but the
    metrics), and the largest difference of each metric over the matched rows."""
    keys = keys or [c for c in off.columns if c in on.columns and c not in METRICS]
    both = off.merge(on, on=keys, suffixes=("_off", "_on"))
    return {
        "rows_off": len(off),
        "rows_on": len(on),
        "rows_matched": len(both),
        **{
            f"max_{m}_diff": float((both[f"{m}_off"] - both[f"{m}_on"]).abs().max())
            for m in METRICS
        },
    }


def timing(off_s: list[float], on_s: list[float], runs: int) -> dict:
    """A scenario's times: each variant's walls, the medians per run and their ratio."""
    off, on = common.med(off_s), common.med(on_s)
    return {
        "runs": runs,
        "off_s": off_s,
        "on_s": on_s,
        "off_per_run_s": off / runs,
        "on_per_run_s": on / runs,
        "ratio": off / on,
    }


def run_demo(work: Path, on: bool) -> tuple[float, pd.DataFrame, dict]:
    """(wall seconds of ``vlsm run params/demo`` as make study runs it, the suite's per-image
    table, the store's hits and misses summed over its runs)."""
    name = "on" if on else "off"
    outputs = work / f"demo-out-{name}"
    env = {
        **os.environ,
        "VLSM_OUTPUTS": str(outputs),
        "VLSM_DATA": str(work / f"demo-data-{name}"),
        "OMP_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("VLSM_FEATURE_STORE", None)
    vlsm = Path(sys.executable).with_name("vlsm")
    cmd = [str(vlsm), "run", "params/demo", "--executor", "dask", "--workers", "2"]
    cmd += [] if on else ["--no-store", "--eager"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"demo ({name}) exited {done.returncode}:\n{done.stderr[-3000:]}")
    return (wall, *demo_results(outputs / "demo", work))


def demo_results(suite: Path, work: Path) -> tuple[pd.DataFrame, dict]:
    """The suite's per-image table without the columns that name a path under ``work`` (they
    differ between the variants), and its runs' store hits and misses summed."""
    from vlsm_lib.results import gather, read_run

    store: dict[str, int] = {"runs": 0}
    for run_dir in sorted(f.parent for f in suite.rglob("run.json")):
        info = read_run(run_dir)
        if info.get("status") != "complete":
            raise RuntimeError(f"demo: {run_dir.name} is {info.get('status')}")
        store["runs"] += 1
        for key, n in (info.get("feature_store") or {}).items():
            if key.endswith(("_hits", "_misses")):
                store[key] = store.get(key, 0) + n
    table = gather(suite)
    keep = [
        c
        for c in table.columns
        if table[c].dtype.kind not in "fc"
        and not table[c].astype(str).str.contains(str(work), regex=False).any()
    ]
    return table[keep + METRICS], store


def main() -> None:
    p = common.parser(__doc__, "outputs/benchmarks/grid.json")
    p.add_argument("--only", choices=["fixed", "levels", "finetune", "demo"], action="append")
    args = p.parse_args()
    res = common.start(args)
    scenarios = args.only or ["fixed", "levels", "finetune"]
    if args.quick and "demo" in scenarios:
        p.error("the demo has no quick form: run --only demo without --quick")
    work = Path(tempfile.mkdtemp(prefix="vlsm-grid-"))
    os.environ["VLSM_DATA"] = str(work / "data")
    if set(scenarios) - {"demo"}:
        write_data(work / "data", args.quick)
    res["scenarios"] = {}
    for scenario in scenarios:
        if scenario == "demo":
            walls, tables = {}, {}
            for on in (False, True):
                name = "on" if on else "off"
                common.log(f"[demo] {name}")
                walls[name], tables[name], store = run_demo(work, on)
                common.log(f"[demo] {name}: {walls[name]:.1f} s, {store}")
            res["scenarios"]["demo"] = {
                **timing([walls["off"]], [walls["on"]], store["runs"]),
                "store": store,
                "runs_scored": int(tables["off"]["run_id"].nunique()),
                **compare(tables["off"], tables["on"]),
            }
            continue
        path = params(work, scenario, args.quick)
        order = {"fixed": [False, True, True, False], "levels": [True, False]}.get(
            scenario, [False, True]
        )
        times: dict[str, list[float]] = {"off": [], "on": []}
        tables: dict[str, pd.DataFrame] = {}
        for k, on in enumerate(order):
            name = "on" if on else "off"
            common.log(f"[{scenario}] {name} ({k + 1}/{len(order)})")
            wall, table = run_grid(path, work / f"out-{scenario}-{k}", on)
            times[name].append(wall)
            tables[name] = table
            common.log(f"[{scenario}] {name}: {wall:.1f} s")
        same = compare(tables["off"], tables["on"], ["run_id", "test_set", "image_id"])
        if not same["rows_off"] == same["rows_on"] == same["rows_matched"]:
            raise RuntimeError(f"{scenario}: off and on scored different images: {same}")
        res["scenarios"][scenario] = {
            **timing(times["off"], times["on"], tables["on"]["run_id"].nunique()),
            "max_dice_diff": same["max_dice_diff"],
        }
    common.finish(res, args.out, markdown)


def markdown(res: dict) -> str:
    rows = [
        "| grid | runs | off: wall (per run) | on: wall (per run) | off / on | max abs Dice diff |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in res["scenarios"].items():
        rows.append(
            f"| {name} | {s['runs']} | {common.med(s['off_s']):.1f} s ({s['off_per_run_s']:.1f} s) "
            f"| {common.med(s['on_s']):.1f} s ({s['on_per_run_s']:.1f} s) | "
            f"**{s['ratio']:.2f}x** | {s['max_dice_diff']:.2g} |"
        )
    demo = res["scenarios"].get("demo")
    if demo:
        rows.append(
            f"\nDemo: {demo['rows_matched']} of {demo['rows_off']} (off) and {demo['rows_on']} "
            f"(on) per-image rows of {demo['runs_scored']} scoring runs matched; largest Dice "
            f"difference {demo['max_dice_diff']:.2g}, IoU {demo['max_iou_diff']:.2g}. Store "
            f"over the on variant's runs: {demo['store']}."
        )
    return (
        "# Grid: feature store and lean start, off against on\n\n"
        + common.header(res)
        + ("\n" + "\n".join(rows) + "\n")
    )


if __name__ == "__main__":
    main()
