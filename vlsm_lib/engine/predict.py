"""A model applied to your own images and words (``vlsm_lib.load_model``, ``vlsm predict``).

    model = vlsm_lib.load_model("outputs/demo/finetune/finetune__cris__synth_polyp__p6")
    mask = model.predict("frame.png", "one small pink round polyp, located in top left")

``load_model`` takes a checkpoint folder (a finetune run's folder: ``model.json`` and
``checkpoint.safetensors``) or a registered model name with ``weights`` (``"pretrained"``, a
checkpoint, or none: random). ``Predictor.predict`` takes a PIL image, a numpy array ((H, W) grey
or (H, W, 3) RGB, uint8 or floats in [0, 1]) or a path, and returns a bool mask at the image's
own size; ``probabilities=True`` returns the foreground probability map (float32) instead.

The mask is computed exactly as the finetune and zero-shot notebooks score a test image
(``engine.evaluate``): the image squashed to the network size by the model's ``Preprocess``,
the logits thresholded there (0.5; CRIS 0.35), the mask resized back nearest-neighbour. So a
prediction's Dice equals the run's own per-image Dice for the same image and prompt (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vlsm_lib.data.io import DataError, read_image
from vlsm_lib.engine.evaluate import to_original
from vlsm_lib.models import SegModel, create_model, list_models, load_checkpoint
from vlsm_lib.models.weights import CONFIG

ImageLike = Image.Image | np.ndarray | str | Path


def as_image(image: ImageLike) -> Image.Image:
    """An RGB PIL image from a PIL image, a numpy array or a path (``data.io.read_image``)."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
            raise ValueError(
                f"an image array must be (H, W), (H, W, 3) or (H, W, 4); got {array.shape}"
            )
        if array.dtype != np.uint8:
            if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1):
                raise ValueError(
                    f"a {array.dtype} image array must hold values in [0, 1] (or pass uint8 "
                    f"0-255); got {np.nanmin(array)}..{np.nanmax(array)}"
                )
            array = np.round(np.nan_to_num(array) * 255).astype(np.uint8)
        return Image.fromarray(array).convert("RGB")
    raise TypeError(f"an image is a PIL image, a numpy array or a path; got {type(image)}")


def overlay(
    image: Image.Image, mask: np.ndarray, colour=(255, 0, 0), alpha: float = 0.4, outline=True
) -> Image.Image:
    """``image`` with ``mask`` tinted in ``colour`` (``alpha`` of it) and, with ``outline``,
    the mask's border drawn in full ``colour``."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    tint = np.asarray(colour, dtype=np.float32)
    rgb[mask] = (1 - alpha) * rgb[mask] + alpha * tint
    if outline:
        inner = mask.copy()
        inner[1:, :] &= mask[:-1, :]
        inner[:-1, :] &= mask[1:, :]
        inner[:, 1:] &= mask[:, :-1]
        inner[:, :-1] &= mask[:, 1:]
        rgb[mask & ~inner] = tint
    return Image.fromarray(rgb.astype(np.uint8))


class Predictor:
    """A model ready to predict (``load_model``); ``.model`` is the ``SegModel`` itself."""

    def __init__(self, model: SegModel, device: str | torch.device | None = None):
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(device).eval()
        self.device = torch.device(device)

    @property
    def reads_text(self) -> bool:
        """False for image-only models (the CNN baselines): they ignore any prompt."""
        return self.model.preprocess.tokenizer is not None

    def __repr__(self) -> str:
        return f"Predictor({self.model.name}, size={self.model.size}, device={self.device})"

    @torch.no_grad()
    def logits(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        """(B, 1, h, w) logits at the network's size for RGB PIL ``images`` and ``prompts``."""
        pre = self.model.preprocess
        pixels = torch.stack([pre.image(im) for im in images]).to(self.device)
        if self.reads_text:
            ids, mask = pre.text(list(prompts))
            ids, mask = ids.to(self.device), mask.to(self.device)
        else:
            ids = mask = None
        return self.model(pixels, ids, mask)

    def predict_many(
        self,
        images: Sequence[ImageLike],
        prompts: Sequence[str] | str = "",
        probabilities: bool = False,
        batch_size: int = 8,
    ) -> list[np.ndarray]:
        """``predict`` over several images (one prompt for all, or one each), in batches."""
        prompts = [prompts] * len(images) if isinstance(prompts, str) else list(prompts)
        if len(prompts) != len(images):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts; give one each")
        out = []
        for start in range(0, len(images), batch_size):
            chunk = [as_image(im) for im in images[start : start + batch_size]]
            logits = self.logits(chunk, prompts[start : start + batch_size]).float().cpu()
            for image, one in zip(chunk, logits):
                w, h = image.size
                if probabilities:
                    up = torch.nn.functional.interpolate(
                        torch.sigmoid(one)[None], size=(h, w), mode="bilinear", align_corners=False
                    )
                    out.append(up[0, 0].numpy().astype(np.float32))
                else:
                    out.append(to_original(self.model.binarize(one)[0].numpy(), h, w))
        return out

    def predict(self, image: ImageLike, prompt: str = "", probabilities: bool = False):
        """A (H, W) bool mask of ``image`` for ``prompt`` at the image's size, or with
        ``probabilities`` the float32 foreground probabilities."""
        return self.predict_many([image], [prompt], probabilities)[0]


def load_model(
    source: str | Path,
    weights: str | None = None,
    size: str = "paper",
    device: str | torch.device | None = None,
    **options,
) -> Predictor:
    """A ``Predictor`` from a checkpoint folder, or from a model name (``size``, ``weights``
    and the family's ``options`` as ``create_model``). Device: CUDA when present."""
    path = Path(source)
    if (path / CONFIG).is_file():
        if weights or options:
            raise ValueError(
                f"{path} is a checkpoint: it names its own weights and options; pass a model "
                "name to build one with weights= and options"
            )
        return Predictor(load_checkpoint(path), device)
    if str(source) in list_models():
        return Predictor(create_model(str(source), size=size, weights=weights, **options), device)
    if path.exists():
        raise DataError(
            f"{path} holds no model.json and checkpoint.safetensors: pass a finetune run's "
            "folder (or a folder save_checkpoint wrote)"
        )
    raise KeyError(
        f"{source!r} is neither a checkpoint folder nor a model name; models: "
        f"{', '.join(list_models())}"
    )
