"""The explorer behind ``notebooks/explore.ipynb``: a model, a dataset, your words.

``Explorer`` holds a model (``engine.predict.Predictor``) and a dataset split; ``row(i, a, b)``
draws image i with its truth and the masks for prompts ``a`` and ``b`` side by side (one PNG)
and returns both Dice; ``widget()`` wraps it in ipywidgets: a model and a dataset to pick, an
image slider, the image's own levels P0..PN to pick from, two text boxes whose masks and Dice
follow the typing (debounced). The masks are the ones ``vlsm predict`` writes (the notebooks'
own scoring: threshold at the network's size, resized back).

Under papermill nothing is interactive: the notebook's static cells draw the row for its
parameters and a table of Dice over the image's levels, so the rendered page still says what
the words change.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from vlsm_lib import paths
from vlsm_lib.data.dataset import ImageTextMaskDataset
from vlsm_lib.data.io import read_image, read_mask
from vlsm_lib.engine.metrics import image_metrics
from vlsm_lib.engine.predict import Predictor, load_model, overlay
from vlsm_lib.models.weights import CONFIG, WEIGHTS
from vlsm_lib.results import is_complete

PANEL = 256  # the side of each panel of a row, in pixels
DEBOUNCE_S = 0.3


def checkpoints(outputs: str | Path | None = None) -> list[Path]:
    """The complete runs under ``outputs`` (default ``outputs/``) that hold a checkpoint:
    ``<suite>/<study>/<run>`` folders with model.json and the weights, sorted."""
    root = Path(outputs) if outputs else paths.outputs_root()
    found = sorted(p.parent for p in root.glob(f"*/*/*/{CONFIG}"))
    return [p for p in found if (p / WEIGHTS).is_file() and is_complete(p)]


def datasets(data_root: str | Path) -> list[str]:
    """The dataset folders under ``data_root`` (those with anns/)."""
    return sorted(p.parent.name for p in Path(data_root).glob("*/anns"))


def _panel(image: Image.Image, mask: np.ndarray, colour) -> Image.Image:
    """``image`` with ``mask`` tinted in ``colour``, at the panel size."""
    return overlay(image, mask, colour, alpha=0.45, outline=False).resize(
        (PANEL, PANEL), Image.NEAREST
    )


class Explorer:
    """A model on a dataset split, for one image at a time (module docstring)."""

    def __init__(self, predictor: Predictor, data_root: str | Path, dataset: str, split="test"):
        self.predictor, self.data_root, self.split = predictor, Path(data_root), split
        self.use(dataset)

    def use(self, dataset: str) -> None:
        """Switch to ``dataset`` (its ``split``) under the same data root."""
        pre = self.predictor.model.preprocess
        self.dataset = ImageTextMaskDataset(self.data_root, dataset, self.split, pre, "p0")
        self.name = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def levels(self, i: int) -> dict[str, str]:
        """The image's own prompts by level (a level with alternatives: its first)."""
        prompts = self.dataset.records[i]["prompts"]
        keys = sorted(prompts, key=lambda k: (len(k), k))  # p0 .. p9, then p10 ..
        return {k: prompts[k][0] if isinstance(prompts[k], list) else prompts[k] for k in keys}

    def _scored(self, i: int, prompts: list[str]) -> tuple[Image.Image, np.ndarray, list]:
        """Image i, its truth, and (mask, Dice) for each of ``prompts``: the files read once,
        the prompts predicted in one batch."""
        image_path, mask_path = self.dataset.paths(i)
        image, truth = read_image(image_path), read_mask(mask_path)
        masks = self.predictor.predict_many([image] * len(prompts), prompts)
        scores = [float(image_metrics(m, truth, surface=False)["dice"]) for m in masks]
        return image, truth, list(zip(masks, scores))

    def predict(self, i: int, prompt: str) -> tuple[np.ndarray, float]:
        """Image i's mask for ``prompt`` and its Dice against the truth."""
        return self._scored(i, [prompt])[2][0]

    def row(self, i: int, prompt_a: str, prompt_b: str) -> tuple[bytes, float, float]:
        """One PNG: image, truth (green), mask for ``prompt_a`` (red), for ``prompt_b``
        (blue); and the two Dice."""
        image, truth, ((mask_a, dice_a), (mask_b, dice_b)) = self._scored(i, [prompt_a, prompt_b])
        panels = [
            image.resize((PANEL, PANEL), Image.BILINEAR),
            _panel(image, truth, (0, 200, 0)),
            _panel(image, mask_a, (255, 0, 0)),
            _panel(image, mask_b, (0, 80, 255)),
        ]
        canvas = Image.new("RGB", (PANEL * 4 + 12, PANEL), "white")
        for k, panel in enumerate(panels):
            canvas.paste(panel, (k * (PANEL + 4), 0))
        buffer = io.BytesIO()
        canvas.save(buffer, format="PNG")
        return buffer.getvalue(), dice_a, dice_b

    def level_table(self, i: int) -> pd.DataFrame:
        """Dice of image i under each of its own levels: what the words change for it."""
        levels = self.levels(i)
        scored = self._scored(i, list(levels.values()))[2]
        return pd.DataFrame(
            [
                {"level": level, "prompt": text, "dice": dice, "foreground": mask.mean()}
                for (level, text), (mask, dice) in zip(levels.items(), scored)
            ]
        )

    def widget(self, models: list[str | Path] | None = None, outputs=None, level: str = "p6"):
        """The interactive explorer (ipywidgets); ``models``: checkpoints to offer first (the
        explorer's own), then every complete one under ``outputs``; ``level``: the level
        prompt A starts at."""
        return ExplorerWidget(self, models or [], outputs, level).box


class ExplorerWidget:
    """The widgets of ``Explorer.widget`` and their callbacks."""

    def __init__(self, explorer: Explorer, models: list, outputs=None, level: str = "p6"):
        import ipywidgets as w

        self.ex = explorer
        found = [*map(str, models), *map(str, checkpoints(outputs))]
        choices = list(dict.fromkeys(found))  # the explorer's own first, then every other
        self.model = w.Dropdown(
            options=choices or [""], description="model", layout={"width": "95%"}
        )
        self.data = w.Dropdown(
            options=datasets(explorer.data_root), value=explorer.name, description="dataset"
        )
        self.image = w.IntSlider(0, 0, max(len(explorer) - 1, 0), description="image")
        self.level = w.Dropdown(options=[], description="level")
        self.prompt_a = w.Text(description="prompt A", continuous_update=True,
                               layout={"width": "95%"})  # fmt: skip
        self.prompt_b = w.Text(description="prompt B", continuous_update=True,
                               layout={"width": "95%"})  # fmt: skip
        self.prompt_a.add_class("vlsm-prompt-a")
        self.prompt_b.add_class("vlsm-prompt-b")
        self.view = w.Image(format="png")
        self.view.add_class("vlsm-row")
        self.dice = w.HTML()
        self.dice.add_class("vlsm-dice")
        self.status = w.HTML()
        self._pending, self._quiet = None, False
        self._fill_levels()
        if level in dict(self.level.options).values():
            self.level.value = level
        self.prompt_a.value = self._level_text(self.level.value)
        self.model.observe(self._on_model, "value")
        self.data.observe(self._on_data, "value")
        self.image.observe(self._on_image, "value")
        self.level.observe(self._on_level, "value")
        self.prompt_a.observe(self._debounced, "value")
        self.prompt_b.observe(self._debounced, "value")
        legend = w.HTML("image | truth (green) | prompt A (red) | prompt B (blue)")
        self.box = w.VBox(
            [self.model, self.data, self.image, self.level, self.prompt_a, self.prompt_b,
             legend, self.view, self.dice, self.status]
        )  # fmt: skip
        self.refresh()

    def _fill_levels(self) -> None:
        """The image's levels in the level list, the chosen level kept where it has one."""
        chosen = self.level.value
        self.texts = self.ex.levels(self.image.value) if len(self.ex) else {}
        self._quiet = True  # the list changes; the prompt follows only a level the user picks
        self.level.options = [(f"{k}: {v[:60]}", k) for k, v in self.texts.items()]
        if chosen in self.texts:
            self.level.value = chosen
        self._quiet = False

    def _level_text(self, key) -> str:
        return self.texts.get(key, "") if key else ""

    def refresh(self) -> None:
        """Draw the row and the Dice for the current image and prompts."""
        self._pending = None
        if not len(self.ex):
            self.status.value = f"{self.ex.name} has no {self.ex.split} images"
            return
        png, dice_a, dice_b = self.ex.row(
            self.image.value, self.prompt_a.value, self.prompt_b.value
        )
        self.view.value = png
        self.dice.value = (
            f"<b>Dice A</b> <span class='dice-a'>{dice_a:.3f}</span> &nbsp; "
            f"<b>Dice B</b> <span class='dice-b'>{dice_b:.3f}</span> &nbsp; "
            f"(A - B: {dice_a - dice_b:+.3f})"
        )

    def _debounced(self, _change=None) -> None:
        """Redraw once the typing pauses for ``DEBOUNCE_S`` (at once outside an event loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.refresh()
            return
        if self._pending is not None:
            self._pending.cancel()
        self._pending = loop.call_later(DEBOUNCE_S, self.refresh)

    def _on_model(self, change) -> None:
        self.status.value = f"loading {change['new']} ..."
        self.ex.predictor = load_model(change["new"], device=self.ex.predictor.device)
        self.ex.use(self.ex.name)
        self.status.value = f"model: {change['new']}"
        self.refresh()

    def _on_data(self, change) -> None:
        self.ex.use(change["new"])
        self.image.max = max(len(self.ex) - 1, 0)
        self.image.value = 0
        self._fill_levels()
        self.refresh()

    def _on_image(self, _change) -> None:
        """A prompt that was the old image's level text follows the level to the new image;
        typed words stay as they are."""
        followed = self.prompt_a.value == self._level_text(self.level.value)
        self._fill_levels()
        if followed:
            self.prompt_a.unobserve(self._debounced, "value")
            self.prompt_a.value = self._level_text(self.level.value)
            self.prompt_a.observe(self._debounced, "value")
        self.refresh()

    def _on_level(self, change) -> None:
        if not self._quiet:
            self.prompt_a.value = self._level_text(change["new"])
