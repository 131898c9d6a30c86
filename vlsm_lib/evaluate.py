"""``evaluate``: one row per test image, scored at the image's original resolution.

The prediction is thresholded at network resolution (``model.threshold``: 0.5, CRIS 0.35) and
resized back to the mask's original size with nearest-neighbour interpolation (DESIGN §4); the
truth is the original mask file, binarised at > 127. Metrics follow ``vlsm_lib.metrics`` (the
empty-mask rule is documented there). Predicted masks can be written as lossless PNG 0/255.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vlsm_lib import runtime  # noqa: F401  (CPU settings; see runtime.py)
from vlsm_lib.data.dataset import read_mask
from vlsm_lib.metrics import image_metrics
from vlsm_lib.models import SegModel
from vlsm_lib.train import model_forward, to_device

# "source" is the dataset the image comes from (a member of a pooled set); it is not called
# "dataset" so that gathered tables keep that name for the run's training-set parameter.
COLUMNS = [
    "source",
    "image_id",
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
) -> pd.DataFrame:
    """Score ``model`` on every item of ``dataset``; returns one row per item (``COLUMNS``).

    Args:
        masks_dir: when given, predicted masks are written there as PNG 0/255.
        surface: compute HD95 and NSD (slower); otherwise they are NaN.
        tolerance: the NSD tolerance in pixels of the original resolution.
    """
    device = torch.device(device) if device else next(model.parameters()).device
    model.to(device).eval()
    rows = []
    batches = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in tqdm(
        batches,
        desc="evaluate",
        leave=False,
        disable=not progress or bool(os.environ.get("TQDM_DISABLE")),
    ):
        logits = model_forward(model, to_device(batch, device)).float()
        preds = (torch.sigmoid(logits) > model.threshold)[:, 0].cpu().numpy()
        for k, pred in enumerate(preds):
            h, w = int(batch["height"][k]), int(batch["width"][k])
            pred = to_original(pred, h, w)
            truth = read_mask(batch["mask_path"][k])
            scores = image_metrics(pred, truth, tolerance=tolerance, surface=surface)
            rows.append(
                {
                    "source": batch["dataset"][k],
                    "image_id": batch["image_id"][k],
                    "prompt_text": batch["prompt"][k],
                    **scores,
                    "height": h,
                    "width": w,
                }
            )
            if masks_dir is not None:
                save_prediction(pred, Path(masks_dir), batch["dataset"][k], batch["image_id"][k])
    return pd.DataFrame(rows, columns=COLUMNS)
