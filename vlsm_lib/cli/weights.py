"""``vlsm weights list | fetch | check``: the paper suite's public weights (``models.catalog``)."""

from __future__ import annotations

import argparse
import sys


def _list(args: argparse.Namespace) -> int:
    from vlsm_lib.models.catalog import select

    for w in select(args.names):
        files = "; ".join(" or ".join(alternatives) for alternatives in w.files) or "one file"
        where = (
            w.source + (f" @ {w.revision[:7]}" if w.revision else "")
            if w.source
            else f"by hand, to $VLSM_DATA/{w.local}"
        )
        print(f"{w.name}: {where}")
        print(f"  used by: {', '.join(w.used_by)}; files: {files}")
        print(f"  size: {w.size or 'as the source lists it'}; licence: {w.licence}")
        if w.note:
            print(f"  note: {w.note}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from vlsm_lib.models.catalog import fetch, select

    chosen = [w for w in select(args.names) if w.source]
    for w in chosen:
        try:
            paths = fetch(w)
        except (RuntimeError, ValueError) as err:
            print(f"vlsm weights fetch: {err}", file=sys.stderr)
            return 1
        print(f"{w.name}: {len(paths)} file(s) in the cache ({paths[0].parent})")
    for w in select(args.names):
        if not w.source:
            print(f"{w.name}: not fetched, {w.note}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from vlsm_lib.models.catalog import missing, select

    chosen = select(args.names)
    absent = [line for w in chosen for line in missing(w, args.data_root)]
    for line in absent:
        print(f"MISSING {line}")
    if absent:
        print("fetch them with `vlsm weights fetch` on a machine with internet", file=sys.stderr)
        return 1
    if args.load:
        return _load(args)
    print("complete: " + ", ".join(w.name for w in chosen))
    return 0


def _load(args: argparse.Namespace) -> int:
    """Build each paper model from its weights: the key and shape checks of models.weights."""
    from vlsm_lib.models import create_model
    from vlsm_lib.models.catalog import select
    from vlsm_lib.models.weights import WeightsUnavailable

    models = dict.fromkeys(m for w in select(args.names) for m in w.used_by if m != "cris")
    failed = 0
    for name in models:
        try:
            create_model(name, size="paper", weights="pretrained")
            print(f"loaded {name}")
        except WeightsUnavailable as err:
            failed += 1
            print(f"FAILED {name}: {err}")
    return 1 if failed else 0


def _named(command):
    """``command`` after the names are checked: an unknown one is refused, listing the valid."""

    def run(args: argparse.Namespace) -> int:
        from vlsm_lib.models.catalog import select

        try:
            select(args.names)
        except KeyError as err:
            print(f"vlsm weights: {err.args[0]}", file=sys.stderr)
            return 2
        return command(args)

    return run


def add_weights_parser(verbs) -> None:
    """The ``weights`` verb and its sub-verbs on ``verbs`` (argparse sub-parsers)."""
    from vlsm_lib.models.catalog import NAMES

    weights = verbs.add_parser("weights", help="the paper's public weights: list, fetch, check")
    sub = weights.add_subparsers(dest="weights_verb", required=True)
    names = {"nargs": "*", "metavar": "NAME", "help": f"some of {', '.join(NAMES)} (all)"}
    listing = sub.add_parser("list", help="every weights file the paper suite needs")
    listing.add_argument("names", **names)
    listing.set_defaults(func=_named(_list))
    fetching = sub.add_parser("fetch", help="download the hub ones into the Hugging Face cache")
    fetching.add_argument("names", **names)
    fetching.set_defaults(func=_named(_fetch))
    checking = sub.add_parser("check", help="are they complete in the cache; exit 1 if not")
    checking.add_argument("names", **names)
    checking.add_argument(
        "--data-root", help="where the files fetched by hand lie (default: $VLSM_DATA)"
    )
    checking.add_argument(
        "--load", action="store_true", help="also build each paper model from its weights"
    )
    checking.set_defaults(func=_named(_check))
