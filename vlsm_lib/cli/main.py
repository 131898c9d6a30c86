"""The ``vlsm`` command line: ``vlsm run | gather | report | data | weights | bench | rehearse |
predict``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from vlsm_lib import paths
from vlsm_lib.cli.execution import execute, print_plan


def _run(args: argparse.Namespace) -> int:
    """``vlsm run``: check the options, plan, then estimate, list or execute the runs."""
    from vlsm_lib.grid.runner import plan

    conflict = _run_conflict(args)
    if conflict:
        print(f"vlsm run: {conflict}", file=sys.stderr)
        return 2
    if args.no_store:  # the kernels (and a LocalCluster's workers) inherit it
        from vlsm_lib.engine.feature_store import STORE_ENV

        os.environ[STORE_ENV] = "off"
    try:
        overrides = _overrides(args.set)
    except ValueError as err:
        print(f"vlsm run: {err}", file=sys.stderr)
        return 2
    planned = plan(
        _params_files(args.params),
        only=args.only,
        failed=args.failed,
        suite=args.suite,
        overrides=overrides,
    )
    if args.dry_run and args.estimate:
        return _print_estimate(args, planned)
    if args.dry_run:
        return print_plan(planned, args.show)
    return execute(args, planned)


def _run_conflict(args: argparse.Namespace) -> str:
    """What is wrong with the combination of ``vlsm run``'s options ("" when nothing)."""
    estimating = args.dry_run and args.estimate
    wrong = [
        (args.estimate and not args.dry_run, "--estimate goes with --dry-run"),
        (
            args.runs_per_gpu and args.executor == "local" and not estimating,
            "--runs-per-gpu needs --executor dask or slurm (or --dry-run --estimate)",
        ),
        (
            args.runs_per_gpu and args.workers != 1 and args.executor == "dask" and not estimating,
            "--runs-per-gpu starts one worker per GPU (--gpus), not --workers: drop --workers",
        ),
        (args.gpus and not args.runs_per_gpu and not estimating, "--gpus goes with --runs-per-gpu"),
        (args.runs_per_gpu is not None and args.runs_per_gpu < 1, "--runs-per-gpu must be >= 1"),
    ]
    return next((why for bad, why in wrong if bad), "")


def _overrides(pairs: list[str]) -> dict:
    """``--set key=value`` pairs as a dict; each value read as YAML (``--set max_epochs=1``
    is an int, ``--set weights=`` the empty string, ``--set model_options={}`` a mapping)."""
    import yaml

    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {pair!r}: write key=value (e.g. --set max_epochs=1)")
        out[key] = "" if value == "" else yaml.safe_load(value)
    return out


def _params_files(names: list[str]) -> list[Path]:
    """The params files named: files as they are, folders as their ``*.yaml``, sorted."""
    return [
        f
        for p in names
        for f in (sorted(Path(p).glob("*.yaml")) if Path(p).is_dir() else [Path(p)])
    ]


def _print_estimate(args: argparse.Namespace, planned) -> int:
    from vlsm_lib.grid import estimate

    if not args.bench:  # benching paper-size models takes a while: say so before it starts
        models = ", ".join(estimate.plan_models(planned))
        print(
            f"no --bench file: measuring {models} at {estimate.plan_size(planned)} size on this "
            "machine's device now (vlsm bench: minutes per paper-size model on a CPU, and GBs of "
            "memory). For a quick estimate pass a bench file instead, e.g. --bench "
            "benchmarks/bench_paper_cpu.csv, or one `vlsm bench --out` wrote on your GPU.",
            file=sys.stderr,
            flush=True,
        )
    try:
        bench = estimate.load_bench(args.bench, planned)
        text = estimate.as_text(
            planned,
            bench,
            args.gpu,
            memory_gb=args.gpu_memory_gb,
            store=not args.no_store,
            fixed_seconds=args.fixed_seconds,
            epochs=args.epochs,
            runs_per_gpu=args.runs_per_gpu or 1,
            gpus=args.gpus or 1,
        )
    except (ValueError, OSError) as err:
        print(f"vlsm run: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0


def _gather(args: argparse.Namespace) -> int:
    from vlsm_lib.results import gather

    folder = Path(args.study)
    if not folder.is_dir():
        folder = paths.outputs_root() / args.study
    table = gather(folder)
    out = Path(args.out) if args.out else folder / "gathered"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out.with_suffix(".parquet"), index=False)
    table.to_csv(out.with_suffix(".csv"), index=False)
    print(
        f"{len(table)} rows from {table['run_id'].nunique()} runs -> "
        f"{out.with_suffix('.parquet')}, {out.with_suffix('.csv')}"
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from vlsm_lib.reports.index import write_root_index, write_study_index

    root = Path(args.outputs) if args.outputs else paths.outputs_root()
    for study_dir in sorted(p.parent.parent for p in root.glob("*/*/*/run.json")):
        write_study_index(study_dir)
    print(write_root_index(root))
    return 0


def _bench(args: argparse.Namespace) -> int:
    """``vlsm bench``: bench.run over the models, its table printed, every column to --out."""
    import torch

    from vlsm_lib.engine import bench
    from vlsm_lib.files import atomic_write

    if args.threads:
        torch.set_num_threads(args.threads)
    options = {k: getattr(args, k) for k in ("size", "batch", "steps", "warmup", "train", "device")}
    options.update(matmul_precision=args.matmul_precision, amp=not args.no_amp)
    try:
        df = bench.run(args.models, verbose=True, **options)
    except (KeyError, ValueError) as err:
        print(f"vlsm bench: {err}", file=sys.stderr)
        return 2
    print(bench.format_table(df))
    if args.out:
        atomic_write(args.out, lambda tmp: df.to_csv(tmp, index=False))
        print(args.out)
    return 1 if df["error"].astype(bool).any() else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlsm", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    run = verbs.add_parser("run", help="execute the runs of params files (papermill)")
    run.add_argument("params", nargs="+", help="params/<suite>/<study>.yaml files or folders")
    run.add_argument("--executor", choices=["local", "dask", "slurm"], default="local")
    run.add_argument("--scheduler", help="address of a running Dask scheduler")
    run.add_argument(
        "--workers", type=int, default=1, help="LocalCluster workers (dask); sbatch jobs (slurm)"
    )
    slurm = run.add_argument_group("SLURM (with --executor slurm: dask-jobqueue)")
    slurm.add_argument("--slurm-queue", help="partition (default: the cluster's default)")
    slurm.add_argument("--slurm-cores", type=int, default=1, help="cores per job (default 1)")
    slurm.add_argument("--slurm-memory", default="8GB", help="memory per job (default 8GB)")
    slurm.add_argument("--slurm-walltime", default="04:00:00", help="per job (default 04:00:00)")
    slurm.add_argument("--slurm-gpus", type=int, default=0, help="GPUs per job (--gres=gpu:N)")
    run.add_argument("--only", help="run ids matching this glob only")
    run.add_argument(
        "--suite", help="write the runs under outputs/SUITE (default: the params folder)"
    )
    run.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a parameter of every run whose notebook has it (not references to the "
        "suite's runs); recorded in run.json. Repeat for several",
    )
    run.add_argument("--dry-run", action="store_true", help="list the runs, execute nothing")
    run.add_argument("--show", type=int, default=3, help="run ids shown per study (dry run)")
    run.add_argument("--force", action="store_true", help="re-run complete runs too")
    run.add_argument(
        "--failed", action="store_true", help="only the runs that failed or were left stale"
    )
    run.add_argument(
        "--runs-per-gpu", type=int, metavar="N", help="dask: at most N runs share a GPU at once"
    )
    run.add_argument("--gpus", type=int, help="GPUs of the LocalCluster (default: all torch sees)")
    run.add_argument(
        "--no-store",
        action="store_true",
        help="without the shared feature store (VLSM_FEATURE_STORE=off; the estimate too)",
    )
    run.add_argument(
        "--eager",
        action="store_true",
        help="kernels neither forked nor started ahead, reports rendered inline (execute.py)",
    )
    est = run.add_argument_group("estimate (with --dry-run --estimate; formula: estimate.py)")
    est.add_argument("--estimate", action="store_true", help="print the grid's expected hours")
    est.add_argument(
        "--bench", nargs="+", metavar="CSV", help="vlsm bench --out files (default: bench now)"
    )
    est.add_argument("--gpu", default="", metavar="NAME", help="label for the estimate: H200")
    est.add_argument("--gpu-memory-gb", type=float, help="card memory checked against packing")
    est.add_argument(
        "--fixed-seconds", type=float, default=2.0, help="fixed cost per run (default 2.0)"
    )
    est.add_argument(
        "--epochs", type=int, help="expected epochs (default min(max, min_epochs + patience))"
    )
    run.set_defaults(func=_run)

    gather = verbs.add_parser("gather", help="one table (parquet + CSV) of a study's runs")
    gather.add_argument("study", help="study folder, or <suite>/<study> under outputs/")
    gather.add_argument("--out", help="output path without suffix (default: <study>/gathered)")
    gather.set_defaults(func=_gather)

    from vlsm_lib.models import SIZES, list_models

    bench = verbs.add_parser(
        "bench",
        help="throughput and peak memory of models (forward, training step)",
        description="Time each model's forward (no grad) and training step (train.step: forward, "
        "Dice+BCE, backward, clipping, AdamW) on random inputs at its input size, and measure "
        "peak memory. Run it on the GPU you will train on, at the batch size you will use.",
    )
    names = ", ".join(list_models())
    bench.add_argument(
        "--models", nargs="+", choices=list_models(), metavar="NAME", help=f"default all: {names}"
    )
    bench.add_argument("--size", choices=SIZES, default="paper", help="model size (default paper)")
    bench.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    bench.add_argument("--steps", type=int, default=5, help="timed steps per phase (default 5)")
    bench.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    bench.add_argument("--train", metavar="POLICY", help="train policy (default: each model's)")
    bench.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    bench.add_argument(
        "--matmul-precision",
        choices=("highest", "high", "medium"),
        help="asked of torch.set_float32_matmul_precision, as fit applies it (default: as is)",
    )
    bench.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    bench.add_argument("--no-amp", action="store_true", help="no fp16 autocast on CUDA")
    bench.add_argument("--out", metavar="CSV", help="also write every column to this CSV file")
    bench.set_defaults(func=_bench)

    report = verbs.add_parser("report", help="rewrite the HTML indexes of outputs/")
    report.add_argument("outputs", nargs="?", help="outputs folder (default: outputs/)")
    report.set_defaults(func=_report)
    from vlsm_lib.cli.data import add_data_parser
    from vlsm_lib.cli.predict import add_predict_parser
    from vlsm_lib.cli.rehearse import add_rehearse_parser
    from vlsm_lib.cli.weights import add_weights_parser

    add_data_parser(verbs)
    add_weights_parser(verbs)
    add_rehearse_parser(verbs)
    add_predict_parser(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] != ["weights", "fetch"]:  # the one command that needs the hub
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub lookup hangs offline; never wait
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
