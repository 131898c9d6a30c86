"""``vlsm predict``: a model over a folder, a glob or files of images, into one output folder.

    OUT/masks/<name>.png       binary masks, 0/255, at each image's own size
    OUT/overlays/<name>.png    the image with the mask in red (its outline brighter)
    OUT/predictions.csv        image, prompt, foreground fraction; with truths (--masks) Dice,
                               IoU and HD95 (pixels of the original image)
    OUT/skipped.csv            images that could not be read, and why (when any)
    OUT/predict.json           the model, its source, the options, the counts

``<name>`` is the image's path below the folder it was found in (a folder argument) or its
file name, with ``.png``. Everything is written into ``OUT``'s sibling ``.OUT.partial`` and
renamed to ``OUT`` at the end, so a folder named ``OUT`` is always complete; an interrupted
call leaves only the ``.partial`` folder, which the next call replaces. An existing ``OUT`` is
refused unless ``overwrite``.
"""

from __future__ import annotations

import csv
import glob
import json
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vlsm_lib.data.io import DataError, read_image, read_mask
from vlsm_lib.engine.metrics import image_metrics
from vlsm_lib.engine.predict import Predictor, overlay
from vlsm_lib.results import now

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
COLUMNS = ["image", "prompt", "foreground", "dice", "iou", "hd95", "mask", "truth"]


@dataclass
class Item:
    """One image to predict: where it is, the name of its outputs, its prompt and truth."""

    path: Path
    name: str
    prompt: str = ""
    truth: Path | None = None


@dataclass
class Summary:
    out: Path
    predicted: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    scored: int = 0


def collect(sources: list[str]) -> list[Item]:
    """The images named by ``sources``: folders (every image file below, sorted), globs and
    files. Two images that would write the same output name are an error naming both."""
    items: list[Item] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES)
            items += [Item(p, p.relative_to(path).with_suffix(".png").as_posix()) for p in found]
        elif any(ch in source for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(source, recursive=True))
            items += [Item(p, p.with_suffix(".png").name) for p in found if p.is_file()]
        elif path.is_file():
            items.append(Item(path, path.with_suffix(".png").name))
        else:
            raise DataError(f"{source}: no such image, folder or glob match; check the path")
    if not items:
        raise DataError(f"no image files ({', '.join(SUFFIXES)}) in {', '.join(sources)}")
    names: dict[str, Path] = {}
    for item in items:
        if item.name in names and names[item.name] != item.path:
            raise DataError(
                f"{names[item.name]} and {item.path} would both write {item.name}; pass their "
                "folder instead (outputs then keep the sub-folders) or rename one"
            )
        names[item.name] = item.path
    return list({item.path: item for item in items}.values())


def _keys(item: Item) -> list[str]:
    return [str(item.path), item.path.name, item.path.stem, item.name, Path(item.name).stem]


def attach_prompts(items: list[Item], prompt: str | None, prompts_csv: str | None) -> None:
    """One prompt for all, or one per image from a CSV with ``image`` and ``prompt`` columns
    (``image``: the path, the file name or the stem). Images without a row are an error that
    names them, before any model runs."""
    if prompts_csv is None:
        for item in items:
            item.prompt = prompt or ""
        return
    try:
        with open(prompts_csv, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise DataError(f"cannot read the prompts file {prompts_csv}: {err}") from err
    if not rows or not {"image", "prompt"} <= set(rows[0]):
        raise DataError(f"{prompts_csv}: needs the columns image and prompt (a header row)")
    table = {row["image"]: row["prompt"] or "" for row in rows}
    missing = []
    for item in items:
        key = next((k for k in _keys(item) if k in table), None)
        if key is None:
            missing.append(str(item.path))
        else:
            item.prompt = table[key]
    if missing:
        raise DataError(
            f"{prompts_csv} has no prompt for {len(missing)} image(s): {', '.join(missing[:10])}"
            "; add a row (image, prompt) for each"
        )


def attach_truths(items: list[Item], masks: str) -> list[str]:
    """Each image's truth under ``masks`` (the same output name or stem, any image suffix);
    returns the images that have none (scored as NaN)."""
    folder = Path(masks)
    if not folder.is_dir():
        raise DataError(f"--masks {masks}: no such folder")
    by_key: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in SUFFIXES:
            by_key.setdefault(p.relative_to(folder).with_suffix("").as_posix(), p)
            by_key.setdefault(p.stem, p)
    missing = []
    for item in items:
        item.truth = by_key.get(Path(item.name).with_suffix("").as_posix()) or by_key.get(
            item.path.stem
        )
        if item.truth is None:
            missing.append(str(item.path))
    return missing


def _score(pred: np.ndarray, truth: Path | None) -> dict:
    if truth is None:
        return {"dice": np.nan, "iou": np.nan, "hd95": np.nan}
    gt = read_mask(truth)
    if gt.shape != pred.shape:
        raise DataError(
            f"truth {truth} is {gt.shape[1]}x{gt.shape[0]}, its image "
            f"{pred.shape[1]}x{pred.shape[0]} (WxH); re-export the mask at the image size"
        )
    scores = image_metrics(pred, gt, surface=True)
    return {k: scores[k] for k in ("dice", "iou", "hd95")}


def predict_files(
    predictor: Predictor,
    items: list[Item],
    out: str | Path,
    overwrite: bool = False,
    batch_size: int = 8,
    progress: bool = True,
    about: dict | None = None,
) -> Summary:
    """Predict every item and write the outputs (module docstring); returns what was done."""
    from tqdm.auto import tqdm

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it, or another --out")
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "masks").mkdir(parents=True)
    (partial / "overlays").mkdir()
    summary, rows = Summary(out), []
    readable: list[tuple[Item, Image.Image]] = []
    for item in items:
        try:
            readable.append((item, read_image(item.path)))
        except DataError as err:
            summary.skipped.append((str(item.path), str(err)))
    if predictor.reads_text is False and any(item.prompt for item, _ in readable):
        warnings.warn(
            f"{predictor.model.name} is an image-only model: it ignores the prompts", stacklevel=2
        )
    bar = tqdm(total=len(readable), desc="predict", disable=not progress)
    for start in range(0, len(readable), batch_size):
        chunk = readable[start : start + batch_size]
        masks = predictor.predict_many([im for _, im in chunk], [it.prompt for it, _ in chunk])
        for (item, image), mask in zip(chunk, masks):
            target = partial / "masks" / item.name
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask.astype(np.uint8) * 255).save(target)
            shown = partial / "overlays" / item.name
            shown.parent.mkdir(parents=True, exist_ok=True)
            overlay(image, mask).save(shown)
            scores = _score(mask, item.truth)
            summary.scored += item.truth is not None
            rows.append(
                {
                    "image": str(item.path),
                    "prompt": item.prompt,
                    "foreground": float(mask.mean()),
                    **scores,
                    "mask": f"masks/{item.name}",
                    "truth": str(item.truth or ""),
                }
            )
        bar.update(len(chunk))
    bar.close()
    summary.predicted = len(rows)
    import pandas as pd

    pd.DataFrame(rows, columns=COLUMNS).to_csv(partial / "predictions.csv", index=False)
    if summary.skipped:
        pd.DataFrame(summary.skipped, columns=["image", "reason"]).to_csv(
            partial / "skipped.csv", index=False
        )
    facts = {
        **(about or {}),
        "model": predictor.model.name,
        "size": predictor.model.size,
        "device": str(predictor.device),
        "predicted": summary.predicted,
        "skipped": len(summary.skipped),
        "scored": summary.scored,
        "finished": now(),
    }
    (partial / "predict.json").write_text(json.dumps(facts, indent=1), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return summary
