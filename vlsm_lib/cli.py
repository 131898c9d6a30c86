"""The ``vlsm`` command line: ``vlsm data synth|sheet ...`` (more verbs arrive with the runner)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from vlsm_lib import paths


def _synth(args: argparse.Namespace) -> int:
    from vlsm_lib.data.synthetic import write_medshapes

    counts = {
        k: v
        for k, v in (("train", args.n_train), ("val", args.n_val), ("test", args.n_test))
        if v is not None
    }
    out = Path(args.out) if args.out else paths.data_root()
    folders = write_medshapes(out, seed=args.seed, size=args.size, counts=counts, names=args.only)
    for folder in folders:
        print(folder)
    return 0


def _sheet(args: argparse.Namespace) -> int:
    from vlsm_lib.plots import contact_sheet

    root = Path(args.root) if args.root else paths.data_root()
    fig = contact_sheet(root, args.names, per_dataset=args.per_dataset, split=args.split)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=args.dpi)
    print(args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlsm", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    data = verbs.add_parser("data", help="datasets: generate MedShapes, draw contact sheets")
    data_verbs = data.add_subparsers(dest="data_verb", required=True)

    from vlsm_lib.data.synthetic import list_synthetic

    synth = data_verbs.add_parser("synth", help="write the MedShapes synthetic datasets")
    synth.add_argument("--out", help="output folder (default: $VLSM_DATA or outputs/data)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--size", type=int, default=128, help="base image side in pixels")
    synth.add_argument("--n-train", type=int, help="images in train (default: per dataset)")
    synth.add_argument("--n-val", type=int, help="images in val (default: per dataset)")
    synth.add_argument("--n-test", type=int, help="images in test (default: per dataset)")
    synth.add_argument(
        "--only",
        nargs="+",
        choices=list_synthetic(),
        metavar="NAME",
        help=f"datasets to write (default all): {', '.join(list_synthetic())}",
    )
    synth.set_defaults(func=_synth)

    sheet = data_verbs.add_parser(
        "sheet", help="draw a contact sheet (image, mask outline, prompt)"
    )
    sheet.add_argument("names", nargs="+", help="dataset folder names under the data root")
    sheet.add_argument("--root", help="data root (default: $VLSM_DATA or outputs/data)")
    sheet.add_argument("--split", default="test")
    sheet.add_argument("--per-dataset", type=int, default=4)
    sheet.add_argument("--dpi", type=int, default=110)
    sheet.add_argument("--out", default="outputs/medshapes.png")
    sheet.set_defaults(func=_sheet)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub lookup hangs offline; never wait on it
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
