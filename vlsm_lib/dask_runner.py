"""Run a plan on Dask: one task per run, dependencies between studies respected.

``vlsm run ... --executor dask`` starts a ``LocalCluster`` (one single-threaded worker process
per ``workers``) when no scheduler address is given, or connects to any running cluster
(``--scheduler tcp://host:8786``). On SLURM, start the cluster with dask-jobqueue
(``pip install dask-jobqueue``; ``SLURMCluster(cores=8, memory="64GB", processes=1,
job_extra_directives=["--gres=gpu:1"]).scale(jobs=4)``) and pass its ``scheduler_address``.
Workers must see the same repository and outputs folder (a shared file system) and have this
package installed.
"""

from __future__ import annotations

from vlsm_lib.progress import Progress
from vlsm_lib.runner import Run, Study, _index, execute


def _task(run: Run, force: bool, *_dependencies) -> tuple[str, str]:
    """Executed on a worker; the dependencies are only there to order the tasks."""
    return run.run_id, execute(run, force)


def run_dask(
    planned: list[tuple[Study, list[Run]]],
    force: bool = False,
    scheduler: str | None = None,
    workers: int = 1,
) -> dict[str, str]:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    try:
        futures, by_study = [], {}
        for study, runs in planned:
            needed = [f for need in study.needs for f in by_study.get(need, [])]
            mine = [
                client.submit(
                    _task,
                    run,
                    force,
                    *needed,
                    key=f"run-{run.run_id}",
                    pure=False,
                    priority=study.priority * 100_000 + len(runs) - i,  # then grid order
                )
                for i, run in enumerate(runs)
            ]
            by_study.setdefault(study.name, []).extend(mine)
            futures += mine
        statuses, progress = {}, Progress(planned)
        # submitted: under way or waiting for a worker
        progress.start(*(run.run_id for _, runs in planned for run in runs))
        for future in as_completed(futures):
            rid, status = future.result()
            statuses[rid] = status
            print(progress.finish(rid, status), flush=True)
        for _, runs in planned:
            if runs:
                _index(runs[0])
        return statuses
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
