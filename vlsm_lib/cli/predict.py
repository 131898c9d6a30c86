"""``vlsm predict``: a checkpoint or a model applied to your images (``engine.predict_files``)."""

from __future__ import annotations

import argparse
import sys
import warnings


def _predict(args: argparse.Namespace) -> int:
    from vlsm_lib.data.io import DataError
    from vlsm_lib.engine.predict import load_model
    from vlsm_lib.engine.predict_files import attach_prompts, attach_truths, collect, predict_files

    if args.prompt is not None and args.prompts:
        print("vlsm predict: give --prompt or --prompts, not both", file=sys.stderr)
        return 2
    try:
        items = collect(args.images)
        attach_prompts(items, args.prompt, args.prompts)
        no_truth = attach_truths(items, args.masks) if args.masks else []
        predictor = load_model(args.model, weights=args.weights, size=args.size, device=args.device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            summary = predict_files(
                predictor,
                items,
                args.out,
                overwrite=args.overwrite,
                batch_size=args.batch,
                progress=not args.quiet,
                about={"source": str(args.model), "weights": args.weights},
            )
    except (DataError, FileExistsError, KeyError, ValueError) as err:
        print(f"vlsm predict: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    for warning in {str(w.message) for w in caught}:
        print(f"warning: {warning}", file=sys.stderr)
    if no_truth:
        print(
            f"warning: no truth under {args.masks} for {len(no_truth)} image(s) (scored NaN): "
            f"{', '.join(no_truth[:5])}",
            file=sys.stderr,
        )
    for image, reason in summary.skipped:
        print(f"skipped {image}: {reason}", file=sys.stderr)
    print(
        f"{summary.predicted} masks, {len(summary.skipped)} skipped"
        + (f", {summary.scored} scored against truths" if args.masks else "")
        + f" -> {summary.out}"
    )
    return 0 if summary.predicted else 1


def add_predict_parser(verbs) -> None:
    """The ``predict`` verb on ``verbs`` (argparse sub-parsers)."""
    from vlsm_lib.models import SIZES

    predict = verbs.add_parser(
        "predict",
        help="masks of your images for your words, from a checkpoint or a model",
        description="Apply a checkpoint folder (a finetune run's folder) or a model name (with "
        "--weights) to images: a folder, a glob or files. Writes OUT/masks (PNG 0/255 at each "
        "image's size), OUT/overlays, OUT/predictions.csv (foreground fraction; Dice, IoU, "
        "HD95 with --masks) and OUT/predict.json; OUT appears only when complete.",
    )
    predict.add_argument("model", help="checkpoint folder, or a model name (clipseg, cris, ...)")
    predict.add_argument("images", nargs="+", help="image files, folders or globs")
    predict.add_argument("--out", required=True, help="output folder (refused if it exists)")
    predict.add_argument("--prompt", help='one prompt for every image (default "": P0)')
    predict.add_argument("--prompts", metavar="CSV", help="one per image: columns image, prompt")
    predict.add_argument("--masks", metavar="DIR", help="truths (same names) to score against")
    predict.add_argument(
        "--weights", help="with a model name: pretrained, a checkpoint, or none (random)"
    )
    predict.add_argument("--size", choices=SIZES, default="paper", help="with a model name")
    predict.add_argument("--batch", type=int, default=8, help="images per batch (default 8)")
    predict.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(func=_predict)
