"""``vlsm data synth | sheet | prepare | import | check``: the data verbs of the command line
(``cli`` builds the parser and calls ``add_data_parser``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlsm_lib import paths


def _synth(args: argparse.Namespace) -> int:
    from vlsm_lib.data.medshapes.synthetic import write_medshapes

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
    from vlsm_lib.notebook.plots import contact_sheet

    root = Path(args.root) if args.root else paths.data_root()
    fig = contact_sheet(root, args.names, per_dataset=args.per_dataset, split=args.split)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=args.dpi)
    print(args.out)
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from vlsm_lib.data import sources

    if args.list or not args.name:
        for s in sorted(sources.SOURCES.values(), key=lambda s: s.name):
            sizes = "/".join(f"{k} {v:g}" for k, v in s.sizes.items())
            sizes = "test only" if s.sizes == sources.TEST_ONLY else sizes
            print(f"{s.name:16} {s.title}\n{'':16} get it: {s.url}\n{'':16} terms: {s.terms}")
            print(f"{'':16} holds: {s.expects}\n{'':16} splits: {sizes}")
        return 0 if args.list else 2
    if not args.source:
        raise SystemExit("vlsm data prepare NAME needs --source PATH (the download)")
    out = Path(args.out) if args.out else paths.data_root()
    folder = sources.prepare(
        args.name, args.source, out, args.seed, args.attributes, args.anns, args.regenerate_prompts
    )
    print(folder)
    return 0


def _import(args: argparse.Namespace) -> int:
    from vlsm_lib.data.importer import import_folder

    out = Path(args.out) if args.out else paths.data_root()
    folder = import_folder(
        args.images,
        args.masks,
        args.name,
        args.class_name,
        out,
        args.metadata,
        args.split_by,
        tuple(args.description or ()),
        seed=args.seed,
    )
    print(folder)
    return 0


def _check(args: argparse.Namespace) -> int:
    from vlsm_lib.data.check import check

    report = check(args.datasets, near=args.near)
    print(report.text())
    return 1 if report.errors else 0


def _fakes(args: argparse.Namespace) -> int:
    """Write miniature fakes of the official downloads and prepare them with the real readers
    (``sources.fakes.prepare_all``): the paper's datasets, tiny, for a rehearsal."""
    import tempfile

    from vlsm_lib.data.sources.fakes import prepare_all

    out = args.out or str(paths.data_root())
    with tempfile.TemporaryDirectory(prefix="vlsm-fakes-") as scratch:
        try:
            folders = prepare_all(args.downloads or scratch, out, args.names)
        except KeyError as err:
            print(f"vlsm data fakes: {err.args[0]}", file=sys.stderr)
            return 2
    for folder in folders:
        print(folder)
    return 0


def add_data_parser(verbs) -> None:
    """The ``data`` verb and its sub-verbs on ``verbs`` (argparse sub-parsers)."""
    data = verbs.add_parser("data", help="datasets: MedShapes, the paper's, your own; checks")
    data_verbs = data.add_subparsers(dest="data_verb", required=True)
    default_out = "output folder (default: $VLSM_DATA or outputs/data)"

    from vlsm_lib.data.medshapes.synthetic import list_synthetic

    synth = data_verbs.add_parser("synth", help="write the MedShapes synthetic datasets")
    synth.add_argument("--out", help=default_out)
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

    prep = data_verbs.add_parser("prepare", help="one of the paper's datasets from its download")
    prep.add_argument("name", nargs="?", help="dataset (see --list)")
    prep.add_argument("--list", action="store_true", help="the datasets, where to get each")
    prep.add_argument("--source", help="the download: its archive or extracted folder")
    prep.add_argument("--out", help=default_out)
    prep.add_argument("--seed", type=int, default=42, help="seed of the splits")
    prep.add_argument("--attributes", help="CSV image,shape,colour (words for the prompts)")
    prep.add_argument("--anns", help="the reference's annotation files: its splits and prompts")
    prep.add_argument(
        "--regenerate-prompts",
        action="store_true",
        help="with --anns: keep its splits, write the prompts with this project's generator",
    )
    prep.set_defaults(func=_prepare)

    imp = data_verbs.add_parser("import", help="any folder of images and masks as a dataset")
    imp.add_argument("--images", required=True, help="folder of images")
    imp.add_argument("--masks", required=True, help="folder of masks (matched by file stem)")
    imp.add_argument("--name", required=True, help="the dataset's folder name")
    imp.add_argument("--class", dest="class_name", required=True, help='e.g. "polyp"')
    imp.add_argument("--metadata", help="CSV with a column image (+ shape, colour, patient...)")
    imp.add_argument("--split-by", help="metadata column whose values stay in one split")
    imp.add_argument("--description", action="append", help="general description (P7-P9)")
    imp.add_argument("--out", help=default_out)
    imp.add_argument("--seed", type=int, default=42, help="seed of the splits")
    imp.set_defaults(func=_import)

    fakes = data_verbs.add_parser(
        "fakes", help="the paper's 11 datasets from miniature fakes of their downloads"
    )
    fakes.add_argument("names", nargs="*", metavar="NAME", help="some datasets (default all 11)")
    fakes.add_argument("--out", help=default_out)
    fakes.add_argument("--downloads", help="where the fake downloads go (default: a temp folder)")
    fakes.set_defaults(func=_fakes)
    chk = data_verbs.add_parser("check", help="leaks, copies, decoding, counts; exit 1 on errors")
    chk.add_argument("datasets", nargs="+", help="dataset folders, e.g. outputs/data/kvasir_polyp")
    chk.add_argument("--near", type=int, default=4, help="perceptual-hash bits of a near copy")
    chk.set_defaults(func=_check)
