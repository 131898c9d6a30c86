"""Figure functions in one house style; each returns a matplotlib Figure."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files and HTML reports
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

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
        records = json.loads((base / "anns" / f"{split}.json").read_text())[:per_dataset]
        for col, ax in enumerate(row):
            ax.set_axis_off()
            if col >= len(records):
                continue
            rec = records[col]
            image = np.asarray(Image.open(base / "images" / rec["img_name"]).convert("RGB"))
            mask = np.asarray(Image.open(base / "masks" / rec["mask_name"]).convert("L")) > 127
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
