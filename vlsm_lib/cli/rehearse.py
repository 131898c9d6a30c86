"""``vlsm rehearse``: the paper suite at miniature scale, end to end (``grid.rehearsal``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from vlsm_lib import paths


def _rehearse(args: argparse.Namespace) -> int:
    from vlsm_lib.cli.execution import execute, print_plan
    from vlsm_lib.grid import rehearsal

    data_root = Path(args.data or paths.outputs_root() / "rehearsal_data").resolve()
    start = time.monotonic()
    if not args.dry_run:
        print(f"data: the 11 fakes, prepared by the real readers into {data_root}", flush=True)
        rehearsal.prepare_data(data_root)
    planned = rehearsal.plans(data_root, sliced=args.slice, paper_size=not args.no_paper_size)
    if args.dry_run:
        return max(print_plan(p, args.show) for p in planned)
    failed = 0
    for part in planned:
        failed |= execute(args, part)
    minutes, seconds = divmod(round(time.monotonic() - start), 60)
    runs = sum(len(r) for part in planned for _, r in part)
    print(f"rehearsal: {runs} runs in {minutes} min {seconds:02d} s")
    return failed


def add_rehearse_parser(verbs) -> None:
    """The ``rehearse`` verb on ``verbs`` (argparse sub-parsers)."""
    rehearse = verbs.add_parser(
        "rehearse",
        help="the paper suite, unchanged, at miniature scale (fakes, tiny, one epoch)",
        description="Prepare the 11 datasets from miniature fakes of their official downloads, "
        "run every study of params/paper under the override layer --set size=tiny --set "
        "weights= --set max_epochs=1 --set min_epochs=1 --set model_options={} into "
        "outputs/paper_rehearsal (ending in its statistics run), then one paper-size finetune "
        "of each VLSM (params/rehearsal) into outputs/paper_size_rehearsal. Complete runs are "
        "kept: a second call resumes.",
    )
    rehearse.add_argument("--data", help="rehearsal data root (default: outputs/rehearsal_data)")
    rehearse.add_argument(
        "--slice",
        action="store_true",
        help="a slice: every notebook kind, dataset and policy, the checkpoints they start "
        "from and the statistics run (grid/rehearsal.py)",
    )
    rehearse.add_argument(
        "--no-paper-size", action="store_true", help="leave out the paper-size finetunes"
    )
    rehearse.add_argument("--executor", choices=["local", "dask"], default="dask")
    rehearse.add_argument("--workers", type=int, default=2, help="Dask workers (default 2)")
    rehearse.add_argument(
        "--runs-per-gpu",
        type=int,
        metavar="N",
        help="dask: one worker per GPU, at most N runs sharing it (instead of --workers)",
    )
    rehearse.add_argument("--dry-run", action="store_true", help="list the runs, execute nothing")
    rehearse.add_argument("--show", type=int, default=3, help="run ids shown per study (dry run)")
    rehearse.add_argument("--force", action="store_true", help="re-run complete runs too")
    rehearse.set_defaults(func=_rehearse, scheduler=None, runs_per_gpu=None, gpus=None, eager=False)
