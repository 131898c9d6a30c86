"""Figure functions in one house style; each returns a matplotlib Figure."""

from __future__ import annotations

import textwrap
from pathlib import Path

# No backend is forced: notebooks get the inline backend, scripts on a headless machine Agg.
import matplotlib.pyplot as plt
import numpy as np

from vlsm_lib.analysis.figures import house_style
from vlsm_lib.data.dataset import load_records
from vlsm_lib.data.io import read_image, read_mask
from vlsm_lib.files import atomic_write

OUTLINE = "#00e5ff"


def _richest_prompt(prompts: dict, preferred: tuple[str, ...]) -> tuple[str, str]:
    """(key, text) of the first preferred key present; a list value shows its first alternative."""
    for key in preferred:
        if key in prompts:
            text = prompts[key]
            return key, text[0] if isinstance(text, list) else text
    key = sorted(prompts, key=lambda k: int(k[1:]))[-1]
    text = prompts[key]
    return key, text[0] if isinstance(text, list) else text


def contact_sheet(
    root: str | Path,
    names: list[str],
    per_dataset: int = 4,
    split: str = "test",
    prompt_keys: tuple[str, ...] = ("p6", "p5", "p4"),
    tile: float = 2.2,
) -> plt.Figure:
    """A grid of dataset samples: image, mask outline (cyan) and prompt, one row per dataset.

    Args:
        root: folder holding the datasets (``<root>/<name>/anns/<split>.json``).
        names: datasets, one row each; the first ``per_dataset`` records of ``split`` are shown.
        prompt_keys: the first of these present in a record is printed under its tile.
    """
    fig, axes = plt.subplots(
        len(names),
        per_dataset,
        figsize=(tile * per_dataset, tile * 1.45 * len(names)),
        squeeze=False,
    )
    for row, name in zip(axes, names):
        base = Path(root) / name
        records = load_records(base / "anns" / f"{split}.json")[:per_dataset]
        for col, ax in enumerate(row):
            ax.set_axis_off()
            if col >= len(records):
                continue
            rec = records[col]
            # the project's readers: a 0/1 or grey-as-RGB mask shows as it trains
            image = np.asarray(read_image(base / "images" / rec["img_name"]))
            mask = read_mask(base / "masks" / rec["mask_name"])
            ax.imshow(image)
            if mask.any():
                ax.contour(mask, levels=[0.5], colors=OUTLINE, linewidths=1.0)
            key, text = _richest_prompt(rec["prompts"], prompt_keys)
            caption = "\n".join(textwrap.wrap(f"{key}: {text.strip()}", 34)[:4])
            ax.text(0.0, -0.03, caption, transform=ax.transAxes, va="top", ha="left", fontsize=6.5)
            if col == 0:
                ax.set_title(name, loc="left", fontsize=9, fontweight="bold")
    fig.tight_layout(h_pad=0.4, w_pad=0.3)
    return fig


def training_curves(history: list[dict]) -> plt.Figure:
    """Train / validation loss and validation Dice per epoch (``FitResult.history``)."""
    house_style()
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(epochs, [r["train_loss"] for r in history], label="train loss")
    left.plot(epochs, [r["val_loss"] for r in history], label="validation loss")
    left.set_xlabel("epoch")
    left.legend()
    right.plot(epochs, [r["val_dice"] for r in history], color="C2")
    right.set_xlabel("epoch")
    right.set_ylabel("validation Dice")
    right.set_ylim(0, 1)
    fig.tight_layout()
    return fig


def predictions(examples: list[dict]) -> plt.Figure:
    """Qualitative grid of ``engine.evaluate.predict_examples``: each image with its truth
    (cyan) and the prediction (magenta) outlined, its prompt above."""
    fig, axes = plt.subplots(1, len(examples), figsize=(2.4 * len(examples), 2.9), squeeze=False)
    for ax, example in zip(axes[0], examples):
        ax.imshow(example["image"])
        for mask, colour in ((example["truth"], OUTLINE), (example["prediction"], "#ff2bd6")):
            if mask.any():
                ax.contour(mask, levels=[0.5], colors=colour, linewidths=1.0)
        ax.set_axis_off()
        text = "\n".join(textwrap.wrap(example["prompt"] or "(empty prompt)", 30)[:3])
        ax.set_title(text, fontsize=7)
    fig.tight_layout()
    return fig


def metric_by(
    table, x: str, hue: str | None = None, metric: str = "dice", kind: str = "bar"
) -> plt.Figure:
    """Mean metric (95% bootstrap CI) of per-image rows grouped by ``x`` (and ``hue``)."""
    sns = house_style()
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * table[x].nunique() + 2), 3.4))
    if kind == "line":
        sns.pointplot(data=table, x=x, y=metric, hue=hue, ax=ax, errorbar=("ci", 95))
    else:
        sns.barplot(data=table, x=x, y=metric, hue=hue, ax=ax, errorbar=("ci", 95))
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", rotation=30)
    if hue:
        ax.legend(fontsize=7, title=hue, title_fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def save_figure(
    fig: plt.Figure, folder: str | Path, name: str, dpi: int = 150, formats=("png", "svg")
) -> list[Path]:
    """Write ``fig`` as ``<folder>/<name>.png`` and ``.svg`` (atomically); returns the paths."""
    paths = []
    for suffix in formats:
        path = Path(folder) / f"{name}.{suffix}"
        atomic_write(path, lambda tmp, s=suffix: fig.savefig(tmp, format=s, dpi=dpi))
        paths.append(path)
    return paths
