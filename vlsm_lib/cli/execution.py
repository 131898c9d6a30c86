"""Listing and executing a plan (``vlsm run``, ``vlsm rehearse``): locally, on Dask or SLURM."""

from __future__ import annotations

import argparse

from vlsm_lib import paths


def print_plan(planned, show: int) -> int:
    """Print each study's run count and its first ``show`` run ids; returns 0."""
    per_study: dict[str, list] = {}
    for study, runs in planned:
        per_study.setdefault(f"{study.suite}/{study.name}", []).extend(runs)
    for name, runs in per_study.items():
        print(f"{name}: {len(runs)} runs")
        for run in runs[:show]:
            print(f"  {run.run_id}")
    print(f"total: {sum(len(r) for r in per_study.values())} runs")
    return 0


def execute(args: argparse.Namespace, planned) -> int:
    """Execute the plan locally or on Dask; print the counts and the failed runs."""
    from vlsm_lib.grid.progress import warn_if_disk_short
    from vlsm_lib.grid.runner import run_local

    warn_if_disk_short(planned, paths.outputs_root())  # a warning: the user decides
    if args.executor in ("dask", "slurm"):
        from vlsm_lib.grid.cluster import run_dask, slurm_cluster

        cluster = None
        if args.executor == "slurm":  # one sbatch job per worker (--workers)
            cluster = slurm_cluster(
                args.workers,
                args.slurm_queue,
                args.slurm_cores,
                args.slurm_memory,
                args.slurm_walltime,
                args.slurm_gpus,
                args.runs_per_gpu,
            )
        statuses = run_dask(
            planned,
            args.force,
            args.scheduler,
            args.workers,
            args.runs_per_gpu,
            args.gpus,
            lean=not args.eager,
            cluster=cluster,
        )
    else:
        statuses = run_local(planned, args.force, lean=not args.eager)
    counts = {s: list(statuses.values()).count(s) for s in sorted(set(statuses.values()))}
    print("runs:", ", ".join(f"{n} {s}" for s, n in counts.items()) or "none")
    failed = [r for r, s in statuses.items() if s == "failed"]
    for rid in failed:
        print(f"FAILED {rid}")
    print(f"report: {paths.outputs_root() / 'index.html'}")
    return 1 if failed else 0
