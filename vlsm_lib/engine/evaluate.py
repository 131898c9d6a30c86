"""``evaluate``: one row per test image, scored at the image's original resolution; sweeps.

The prediction is thresholded at network resolution (``model.threshold``: 0.5, CRIS 0.35) and
resized back to the mask's original size with nearest-neighbour interpolation; the
truth is the original mask file, binarised at > 127. Metrics follow ``vlsm_lib.engine.metrics`` (the
empty-mask rule is documented there). Predicted masks can be written as lossless PNG 0/255.

The sweeps run ``evaluate`` several times and stack the tables: over test sets
(``evaluate_sets``), prompt levels (``prompt_sweep``), perturbed prompt attributes
(``perturbation_sweep``) and rewordings (``wording_sweep``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, default_collate
from tqdm.auto import tqdm

from vlsm_lib.data import perturb, wording
from vlsm_lib.data.dataset import load_dataset
from vlsm_lib.data.io import read_image, read_mask
from vlsm_lib.data.transforms import to_device
from vlsm_lib.engine import runtime
from vlsm_lib.engine.config import comma_list
from vlsm_lib.engine.feature_cache import forward_for
from vlsm_lib.engine.metrics import image_metrics
from vlsm_lib.models import SegModel

# "source" is the dataset the image comes from (a member of a pooled set); it is not called
# "dataset" so that gathered tables keep that name for the run's training-set parameter.
COLUMNS = [
    "source",
    "image_id",
    "cluster",
    "prompt_text",
    "dice",
    "iou",
    "hd95",
    "nsd",
    "tp",
    "fp",
    "fn",
    "tn",
    "gt_empty",
    "pred_empty",
    "height",
    "width",
]


def to_original(pred: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) bool prediction at network size -> (height, width) bool, nearest neighbour."""
    if pred.shape == (height, width):
        return pred
    img = Image.fromarray(pred.astype(np.uint8) * 255).resize((width, height), Image.NEAREST)
    return np.asarray(img) > 127


def save_prediction(pred: np.ndarray, folder: Path, dataset: str, image_id: str) -> Path:
    """Write a (H, W) bool mask as PNG 0/255 under ``folder/dataset/``, keeping sub-folders."""
    path = (folder / dataset / image_id).with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pred.astype(np.uint8) * 255).save(path)
    return path


@torch.no_grad()
def evaluate(
    model: SegModel,
    dataset,
    batch_size: int = 16,
    masks_dir: str | Path | None = None,
    surface: bool = True,
    tolerance: float = 2.0,
    device: str | torch.device | None = None,
    progress: bool = True,
    forward=None,
) -> pd.DataFrame:
    """Score ``model`` on every item of ``dataset``; returns one row per item (``COLUMNS``).

    Args:
        masks_dir: when given, predicted masks are written there as PNG 0/255.
        surface: compute HD95 and NSD (slower); otherwise they are NaN.
        tolerance: the NSD tolerance in pixels of the original resolution.
        forward: ``batch -> logits``; default ``feature_cache.forward_for`` (the suite's shared
            feature store when one is active and the model has a frozen tower).
    """
    runtime.apply()  # CPU settings on the thread that computes (runtime.py)
    device = torch.device(device) if device else model.device
    model.to(device).eval()
    forward = forward or forward_for(model, len(dataset))[0]
    rows = []
    batches = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in tqdm(
        batches,
        desc="evaluate",
        leave=False,
        disable=not progress or bool(os.environ.get("TQDM_DISABLE")),
    ):
        preds = model.binarize(forward(to_device(batch, device)))[:, 0].cpu().numpy()
        for k, pred in enumerate(preds):
            h, w = int(batch["height"][k]), int(batch["width"][k])
            pred = to_original(pred, h, w)
            truth = read_mask(batch["mask_path"][k])
            scores = image_metrics(pred, truth, tolerance=tolerance, surface=surface)
            rows.append(
                {
                    "source": batch["dataset"][k],
                    "image_id": batch["image_id"][k],
                    "cluster": batch["cluster"][k],
                    "prompt_text": batch["prompt"][k],
                    **scores,
                    "height": h,
                    "width": w,
                }
            )
            if masks_dir is not None:
                save_prediction(pred, Path(masks_dir), batch["dataset"][k], batch["image_id"][k])
    return pd.DataFrame(rows, columns=COLUMNS)


def evaluate_sets(model, sets: dict, masks_dir=None, surface=True, batch_size=16) -> pd.DataFrame:
    """``evaluate`` over several test sets; one table with a ``test_set`` column."""
    frames = []
    for name, ds in sets.items():
        table = evaluate(model, ds, batch_size=batch_size, masks_dir=masks_dir, surface=surface)
        table.insert(0, "test_set", name)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def prompt_sweep(model, data_root, dataset, seed, split="test", keys="all", surface=False):
    """Per-image scores of one model at every prompt level of a dataset (column prompt_key);
    ``keys``: "all" or a comma-separated list such as "p0,p6"."""
    probe = load_dataset(data_root, dataset, split, model.preprocess, "p0", seed)
    levels = probe.prompt_keys if keys == "all" else comma_list(keys)
    forward = forward_for(model, len(probe))[0]  # the images are encoded once for all levels
    frames = []
    for key in levels:
        ds = load_dataset(data_root, dataset, split, model.preprocess, key, seed)
        table = evaluate(model, ds, surface=surface, progress=False, forward=forward)
        table.insert(0, "prompt_key", key)
        table.insert(0, "test_set", dataset)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def perturbation_sweep(
    model,
    data_root,
    dataset,
    prompt,
    seed,
    split="test",
    attributes="size,count,location,shape,colour",
    surface=False,
):
    """Per-image scores with each attribute replaced by a wrong value and by a random word,
    plus the unperturbed prompt (attribute "none"); ``changed`` says if the text changed."""
    cases = [({"attribute": "none", "mode": "none"}, None)]
    cases += [
        ({"attribute": a, "mode": m}, perturb.transform(a, m))
        for a in comma_list(attributes)
        for m in perturb.MODES
    ]
    # one dataset for every case: its images are decoded once, only the prompt transform changes
    ds = load_dataset(data_root, dataset, split, model.preprocess, prompt, seed)
    return _transform_sweep(model, ds, dataset, cases, surface)


def _transform_sweep(model, ds, test_set: str, cases: list, surface: bool) -> pd.DataFrame:
    """``evaluate`` of ``ds`` once per case, (label columns, prompt transform or None), the
    tables stacked: the case's labels and ``test_set`` first, the untransformed text in
    ``original_prompt`` and whether the case changed it in ``changed``. The images are
    encoded once for every case (``forward_for``)."""
    original = [ds.prompt_text(i) for i in range(len(ds))]
    forward = forward_for(model, len(ds))[0]
    rows = []
    for labels, transform in cases:
        ds.prompt_transform = transform
        table = evaluate(model, ds, surface=surface, progress=False, forward=forward)
        table.insert(0, "test_set", test_set)
        for k, (column, value) in enumerate(labels.items()):
            table.insert(k, column, value)
        table["original_prompt"] = original
        table["changed"] = table["prompt_text"] != table["original_prompt"]
        rows.append(table)
    return pd.concat(rows, ignore_index=True)


def wording_level(by_level: pd.DataFrame, level: str = "best") -> str:
    """The level the wording sweep starts from: ``level`` itself, or with "best" the level of
    ``by_level`` (a ``prompt_sweep`` table) with the highest mean Dice among those whose text
    is not empty (ties: the higher level, which has more words to vary). One level for every
    image: a per-image best would be the maximum of ten texts, and any rewording would look
    worse against it for that reason alone."""
    if level != "best":
        return level
    spoken = by_level[by_level["prompt_text"].astype(str).str.strip() != ""]
    if spoken.empty:
        raise ValueError("every prompt level is empty: there are no words to vary")
    means = spoken.groupby("prompt_key", sort=False)["dice"].mean()
    order = {k: i for i, k in enumerate(by_level["prompt_key"].drop_duplicates())}
    return max(means.index, key=lambda k: (round(float(means[k]), 12), order[k]))


def wording_sweep(model, data_root, dataset, level, seed, split="test", kinds="all", surface=False):
    """Per-image scores with the prompt of ``level`` as written (variant "original") and
    rewritten as a person might (``wording.KINDS``, seeded per image); ``changed`` says if the
    text changed, ``original_prompt`` holds the level's text."""
    kinds = wording.KINDS if kinds == "all" else comma_list(kinds)
    cases = [({"variant": "original"}, None)]
    cases += [({"variant": kind}, wording.transform(kind)) for kind in kinds]
    ds = load_dataset(data_root, dataset, split, model.preprocess, level, seed)
    table = _transform_sweep(model, ds, dataset, cases, surface)
    table.insert(table.columns.get_loc("original_prompt"), "base_level", level)
    return table


USE_CONDITIONS = ("right", "empty", "shuffled", "other_class")


def _class_phrases(record: dict) -> list[str]:
    """The record's class phrase(s): its p1 prompt (a list holds alternatives)."""
    value = record["prompts"].get("p1", "")
    return [v for v in (value if isinstance(value, list) else [value]) if v]


def other_class_prompt(text: str, record: dict, other_class: str) -> str:
    """``text`` naming ``other_class`` instead of the record's own class: its class phrase (p1)
    replaced where the prompt contains it, else ``other_class`` alone."""
    for phrase in _class_phrases(record):
        if phrase in text:
            return text.replace(phrase, other_class)
    return other_class


def _default_other_class(ds) -> str:
    # A class of another of the study's datasets: polyp, or skin melanoma for polyp sets.
    own = " ".join(p for r in ds.records[:20] for p in _class_phrases(r)).lower()
    return "skin melanoma" if "polyp" in own else "polyp"


def prompt_use_sweep(
    model, data_root, dataset, prompt, seed, split="test", other_class="", surface=False
):
    """Per-image scores with the right prompt and three controls (column ``condition``):
    ``empty`` (""), ``shuffled`` (another test image's prompt of the same level: a seeded
    derangement, so no image keeps its own) and ``other_class`` (the prompt naming another
    dataset's class: ``other_class_prompt``; "" picks "polyp", or "skin melanoma" for polyp
    sets). The prompt-use index is the right prompt's Dice minus each control's
    (``effects.prompt_use_index``): near zero, the model does not read its prompt."""
    ds = load_dataset(data_root, dataset, split, model.preprocess, prompt, seed)
    right = [ds.prompt_text(i) for i in range(len(ds))]
    position = {id(rec): i for i, rec in enumerate(ds.records)}
    order = np.random.default_rng(seed).permutation(len(ds))
    donor = np.empty(len(ds), int)
    donor[order] = np.roll(order, -1)  # each image takes the next one's prompt in a random cycle
    other_class = other_class or _default_other_class(ds)
    transforms = {
        "right": None,
        "empty": lambda text, rec, rng: "",
        "shuffled": lambda text, rec, rng: right[donor[position[id(rec)]]],
        "other_class": lambda text, rec, rng: other_class_prompt(text, rec, other_class),
    }
    frames, forward = [], forward_for(model, len(ds))[0]
    for condition, transform in transforms.items():
        ds.prompt_transform = transform
        table = evaluate(model, ds, surface=surface, progress=False, forward=forward)
        table.insert(0, "test_set", dataset)
        table.insert(0, "condition", condition)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def predict_examples(model: SegModel, dataset, n: int = 6, seed: int = 0) -> list[dict]:
    """``n`` test items drawn with a seeded generator, predicted in one batch: for each, the
    image at the network's input size (uint8, h x w x 3), its truth and the prediction (bool,
    h x w) and its prompt. The model runs through ``feature_cache.forward_for``: images already
    in the suite's feature store are not encoded again."""
    idx = np.random.default_rng(seed).choice(len(dataset), size=min(n, len(dataset)), replace=False)
    items = [dataset[int(i)] for i in idx]
    model.eval()
    with torch.no_grad():
        logits = forward_for(model, len(items))[0](to_device(default_collate(items), model.device))
    preds = model.binarize(logits)[:, 0].cpu().numpy()
    out = []
    for item, pred in zip(items, preds):
        size = item["pixel_values"].shape[-1:-3:-1]  # (w, h) for PIL
        image = read_image(item["img_path"]).resize(size)
        truth = item["mask"][0].numpy() > 0.5
        out.append({"image": np.asarray(image), "truth": truth, "prediction": pred})
        out[-1]["prompt"] = item["prompt"]
    return out
