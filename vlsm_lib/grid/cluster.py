"""Run a plan on Dask: one task per run, dependencies between studies respected.

``vlsm run ... --executor dask`` starts a ``LocalCluster`` (one single-threaded worker process
per ``workers``) when no scheduler address is given, or connects to any running cluster
(``--scheduler tcp://host:8786``). On SLURM (``--executor slurm``), the runner starts the
workers itself through dask-jobqueue (``slurm_cluster``): one ``sbatch`` job per worker, each
one Dask worker process with the job's cores, memory, walltime, queue and GPUs. Workers must see
the same repository and outputs folder (a shared file system) and the same Python environment
(the job runs this interpreter).

GPU packing (``--runs-per-gpu N``): several runs share one GPU when one run leaves it idle
(data loading, small batches, the fixed cost of each run). Every task asks for the Dask resource
``GPU`` = 1/N, so a worker that declares ``GPU=1`` runs at most N at once. Without a scheduler
address the runner starts one worker process per GPU (``gpus``, default: the GPUs torch sees),
each with N threads and ``GPU=1``, and pins each worker's runs to its own GPU
(``CUDA_VISIBLE_DEVICES`` = the worker's index, which the notebook kernels inherit). On an
existing cluster, start the workers with ``dask worker ADDRESS --resources GPU=1`` (one worker
per GPU, ``--nthreads N``, its ``CUDA_VISIBLE_DEVICES`` set by whoever starts it).
"""

from __future__ import annotations

import os
import threading

from vlsm_lib import paths
from vlsm_lib.grid.execute import Reports, execute
from vlsm_lib.grid.kernels import KernelPool, grid_code
from vlsm_lib.grid.progress import Progress
from vlsm_lib.grid.runner import Run, Study, write_indexes

JOB_START_TIMEOUT_S = 1800  # a queued sbatch job may wait for resources before its worker starts
# Per worker process: its kernel pool (fork server, a kernel started ahead) and its report
# thread, made by the first lean task, ended by _finish_worker (client.run) after the grid.
_LEAN: dict = {}
_LEAN_LOCK = threading.Lock()


def _task(run: Run, force: bool, pin_gpu: bool, lean: str | None, *_deps) -> tuple[str, str]:
    """Executed on a worker; the dependencies are only there to order the tasks. ``pin_gpu``:
    the runner's own cluster has a worker per GPU, named 0..n-1: run on the worker's GPU.
    ``lean``: what the worker's fork server imports (``kernels.grid_code``); None: eager."""
    if pin_gpu:
        from dask.distributed import get_worker

        os.environ["CUDA_VISIBLE_DEVICES"] = str(get_worker().name)  # kernels inherit it
    if lean is None:
        return run.run_id, execute(run, force)
    with _LEAN_LOCK:
        if not _LEAN:
            _LEAN.update(kernels=KernelPool(lean), reports=Reports())
    # the worker's next task most likely runs a notebook of the same grid: start its kernel
    _LEAN["kernels"].upcoming = run
    return run.run_id, execute(run, force, _LEAN["kernels"], _LEAN["reports"])


def _finish_worker() -> dict[str, str]:
    """On each worker after the grid: wait for its reports, stop its kernels and fork server;
    {run id: rendering error} of the reports that failed."""
    with _LEAN_LOCK:
        if not _LEAN:
            return {}
        kernels, reports = _LEAN.pop("kernels"), _LEAN.pop("reports")
    kernels.close()
    return reports.join()


def gpu_share(runs_per_gpu: int) -> float:
    """The ``GPU`` resource one task asks for so that ``runs_per_gpu`` fit on a worker with
    ``GPU=1``: 1/N, a hair less, since N float shares of 1/N can add up to more than 1 (N=9)."""
    if runs_per_gpu < 1:
        raise ValueError(f"runs_per_gpu must be >= 1, got {runs_per_gpu}")
    return 1 / runs_per_gpu - 1e-9


def local_cluster(workers: int = 1, runs_per_gpu: int | None = None, gpus: int | None = None):
    """The runner's own LocalCluster: ``workers`` single-threaded processes; with
    ``runs_per_gpu``, one process per GPU (``gpus``, default the GPUs torch sees, at least 1),
    each with that many threads and the resource ``GPU=1``."""
    from dask.distributed import LocalCluster

    options = dict(processes=True, dashboard_address=None)
    if not runs_per_gpu:
        return LocalCluster(n_workers=workers, threads_per_worker=1, **options)
    gpu_share(runs_per_gpu)  # checks it
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count() or 1
    return LocalCluster(
        n_workers=gpus, threads_per_worker=runs_per_gpu, resources={"GPU": 1}, **options
    )


def slurm_cluster(
    jobs: int = 1,
    queue: str | None = None,
    cores: int = 1,
    memory: str = "8GB",
    walltime: str = "04:00:00",
    gpus: int = 0,
    runs_per_gpu: int | None = None,
):
    """A dask-jobqueue ``SLURMCluster`` scaled to ``jobs`` sbatch jobs, each one worker process
    with ``cores`` threads (``runs_per_gpu`` threads and the resource ``GPU=1`` when GPUs are
    shared), ``memory``, ``walltime``, on partition ``queue``, with ``--gres=gpu:<gpus>``. Each
    job inherits the runner's environment (sbatch's default), so its kernels see the same
    outputs and data folders; their output files go to ``outputs/slurm/``."""
    import sys

    from dask_jobqueue import SLURMCluster

    threads = runs_per_gpu or cores
    extra = [f"--gres=gpu:{gpus}"] if gpus else []
    cluster = SLURMCluster(
        queue=queue,
        cores=threads,
        processes=1,
        memory=memory,
        walltime=walltime,
        python=sys.executable,
        job_extra_directives=extra,
        worker_extra_args=["--resources", "GPU=1"] if runs_per_gpu else [],
        scheduler_options={"dashboard_address": None},
        log_directory=str(paths.outputs_root() / "slurm"),  # the jobs' output files
    )
    cluster.scale(jobs=jobs)
    return cluster


def _check_gpu_workers(client, scheduler: str) -> None:
    """Tasks asking for GPU wait forever on a cluster where no worker declares it: say so."""
    workers = client.scheduler_info().get("workers", {}).values()
    if not any(w.get("resources", {}).get("GPU") for w in workers):
        raise RuntimeError(
            f"no worker of the cluster at {scheduler} declares a GPU resource, so --runs-per-gpu "
            "runs could never start; start its workers with `dask worker "
            f"{scheduler} --resources GPU=1 --nthreads N` (one per GPU)"
        )


def _submit(client, planned, force: bool, pin: bool, code, resources) -> list:
    """One task per run, each waiting for the runs of the studies it needs; higher-priority
    studies first, then grid order."""
    futures, by_study = [], {}
    for study, runs in planned:
        needed = [f for need in study.needs for f in by_study.get(need, [])]
        mine = [
            client.submit(
                _task,
                run,
                force,
                pin,
                code,
                *needed,
                key=f"run-{run.run_id}",
                pure=False,
                resources=resources,
                priority=study.priority * 100_000 + len(runs) - i,
            )
            for i, run in enumerate(runs)
        ]
        by_study.setdefault(study.name, []).extend(mine)
        futures += mine
    return futures


def run_dask(
    planned: list[tuple[Study, list[Run]]],
    force: bool = False,
    scheduler: str | None = None,
    workers: int = 1,
    runs_per_gpu: int | None = None,
    gpus: int | None = None,
    lean: bool = True,
    cluster=None,
) -> dict[str, str]:
    """Execute the plan on Dask (module docstring); {run id: status}. ``runs_per_gpu``: at most
    that many runs share a GPU; then ``workers`` is not used (one worker per GPU: ``gpus``).
    ``lean``: each worker forks its runs' kernels from its own fork server, starts the next
    kernel ahead and renders reports in the background (``execute``); the runner waits for
    every worker's reports before it returns."""
    from dask.distributed import Client, as_completed

    own = cluster is None and not scheduler  # the runner's LocalCluster
    cluster = local_cluster(workers, runs_per_gpu, gpus) if own else cluster
    client = Client(scheduler or cluster)
    # pin runs to GPUs only on our own cluster with several of them (worker names 0..n-1)
    pin = bool(runs_per_gpu) and own and len(cluster.workers) > 1
    resources = {"GPU": gpu_share(runs_per_gpu)} if runs_per_gpu else None
    code = grid_code([run for _, runs in planned for run in runs]) if lean else None
    statuses: dict[str, str] = {}
    try:
        if runs_per_gpu and scheduler:
            _check_gpu_workers(client, scheduler)
        if not own and not scheduler:  # jobs in a queue: wait for the first worker
            client.wait_for_workers(1, timeout=JOB_START_TIMEOUT_S)
        futures = _submit(client, planned, force, pin, code, resources)
        progress = Progress(planned)
        # submitted: under way or waiting for a worker
        progress.start(*(run.run_id for _, runs in planned for run in runs))
        for future in as_completed(futures):
            rid, status = future.result()
            statuses[rid] = status
            print(progress.finish(rid, status), flush=True)
        return statuses
    finally:
        if lean:  # every worker's reports written, its kernels stopped
            for failed in client.run(_finish_worker).values():
                statuses.update(dict.fromkeys(failed, "failed"))
        for _, runs in planned:
            if runs:
                write_indexes(runs[0])
        client.close()
        if cluster is not None:
            cluster.close()
