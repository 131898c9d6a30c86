"""MedShapes: the embedded synthetic benchmark, one miniature twin per modality of the paper.

``write_medshapes(out, seed=...)`` writes every dataset in the reference's on-disk format
(``<out>/<name>/{images,masks,anns/<split>.json}``), so the whole study runs offline:

==================  ==========================================================================
synth_polyp         endoscopy (Kvasir, ClinicDB, BKAI): 1-3 polyps on reddish mucosa
synth_skin          dermoscopy (ISIC): one brown irregular lesion, hairs
synth_ultrasound    breast ultrasound (BUSI): hypoechoic mass in a fan, or none (empty mask)
synth_xray          chest X-ray (CheXlocalize): opacity / lesion / effusion, one mask each
synth_polyp_b, _c   domain-shifted polyps (CVC-300, ColonDB, ETIS stand-ins), test only
synth_polyp_ref     two polyps; the mask is the one the prompt names (by size or location)
synth_polyp_ref_wide  the same on landscape frames (W = 1.25 H, as Kvasir's); its twin
synth_polyp_ref_wide_refloc  holds the same images with the reference's location words
synth_shapes        natural-scene referring expressions, the demo's pretraining domain
==================  ==========================================================================

Every image is a pure function of (seed, dataset, split, index): the same seed writes
byte-identical files. Each record carries the reference's keys (``img_name``, ``mask_name``,
``prompts``, ``bbox``, ``cat``, ``segment_id``, ``sentences``) plus ``attrs``: the attributes the
prompts were written from (count, sizes, locations from the mask; shape, colour... as drawn).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from vlsm_lib.data.medshapes import scenes

GENERATOR_VERSION = 1
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SynthSpec:
    """One MedShapes dataset: its renderer, shape relative to --size, and default split sizes."""

    name: str
    modality: str
    render: Callable[..., scenes.Scene]
    counts: dict[str, int] = field(default_factory=lambda: {"train": 160, "val": 32, "test": 48})
    aspect: tuple[float, float] = (1.0, 1.0)  # (H, W) relative to the base size
    stands_for: str = ""
    images_of: str = ""  # draw the images of this dataset (a twin with other prompts)

    def shape(self, size: int) -> tuple[int, int]:
        return int(round(size * self.aspect[0])), int(round(size * self.aspect[1]))


SPECS = {
    s.name: s
    for s in (
        SynthSpec(
            "synth_polyp", "endoscopy", scenes.polyp, stands_for="Kvasir-SEG, ClinicDB, BKAI"
        ),
        SynthSpec("synth_skin", "dermoscopy", scenes.skin, stands_for="ISIC 2016"),
        SynthSpec("synth_ultrasound", "breast ultrasound", scenes.ultrasound, stands_for="BUSI"),
        SynthSpec("synth_xray", "chest X-ray", scenes.xray, stands_for="CheXlocalize"),
        SynthSpec(
            "synth_polyp_b",
            "endoscopy, shifted",
            partial(scenes.polyp, shift="b"),
            {"test": 48},
            (0.75, 1.0),
            "CVC-300 / ColonDB (unseen domain)",
        ),
        SynthSpec(
            "synth_polyp_c",
            "endoscopy, shifted",
            partial(scenes.polyp, shift="c"),
            {"test": 48},
            (1.0, 1.25),
            "ETIS-Larib (unseen domain)",
        ),
        SynthSpec(
            "synth_polyp_ref",
            "endoscopy, referring",
            scenes.polyp_ref,
            {"train": 100, "val": 20, "test": 30},
            stands_for="no public dataset: tests text use",
        ),
        SynthSpec(
            "synth_shapes",
            "natural scenes",
            scenes.shapes,
            {"train": 240, "val": 40, "test": 40},
            stands_for="RefCOCO-style pretraining data",
        ),
        SynthSpec(
            "synth_polyp_ref_wide",
            "endoscopy, referring",
            scenes.polyp_ref,
            {"train": 100, "val": 20, "test": 30},
            (1.0, 1.25),
            "the reference's location fault: the right words",
        ),
        SynthSpec(
            "synth_polyp_ref_wide_refloc",
            "endoscopy, referring",
            partial(scenes.polyp_ref, reference_location=True),
            {"train": 100, "val": 20, "test": 30},
            (1.0, 1.25),
            "the reference's location fault: its words",
            images_of="synth_polyp_ref_wide",
        ),
    )
}


def list_synthetic() -> list[str]:
    return list(SPECS)


def _spec(name: str) -> SynthSpec:
    if name not in SPECS:
        raise KeyError(f"unknown MedShapes dataset {name!r}; valid: {', '.join(SPECS)}")
    return SPECS[name]


def bbox(mask: np.ndarray) -> list[int]:
    """[x1, y1, x2, y2] of the foreground; the reference's [W, H, 0, 0] for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return [mask.shape[1], mask.shape[0], 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG", optimize=False)


def write_split(
    spec: SynthSpec, root: Path, split: str, n: int, seed: int, size: int
) -> list[dict]:
    """Render n scenes of one split; write images, masks and ``anns/<split>.json``."""
    h, w = spec.shape(size)
    # the dataset's place in SPECS seeds its images: new datasets go last, so the others'
    # files stay byte-identical
    ds_index, split_index = list(SPECS).index(spec.images_of or spec.name), SPLITS.index(split)
    records = []
    for i in tqdm(range(n), desc=f"{spec.name}/{split}", leave=False):
        rng = np.random.default_rng([seed, ds_index, split_index, i])
        scene = spec.render(rng, h, w)
        stem = f"{split}_{i:04d}"
        _write_png(root / "images" / f"{stem}.png", scene.image)
        for k, target in enumerate(scene.targets):
            mask_name = f"{stem}.png" if len(scene.targets) == 1 else f"{stem}_{k}.png"
            _write_png(root / "masks" / mask_name, target.mask.astype(np.uint8) * 255)
            records.append(
                {
                    "bbox": bbox(target.mask),
                    "cat": 0 if target.mask.any() else 1,
                    "segment_id": Path(mask_name).stem,
                    "img_name": f"{stem}.png",
                    "mask_name": mask_name,
                    "sentences": [{"idx": 0, "sent_id": len(records), "sent": ""}],
                    "sentences_num": 1,
                    "prompts": target.prompts,
                    "attrs": target.attrs,
                }
            )
    (root / "anns").mkdir(parents=True, exist_ok=True)
    with open(root / "anns" / f"{split}.json", "w") as f:
        json.dump(records, f, indent=1)
    return records


def write_dataset(
    name: str,
    out: str | Path,
    seed: int = 0,
    size: int = 128,
    counts: dict[str, int] | None = None,
) -> Path:
    """Write one MedShapes dataset under ``out/name``; returns that folder.

    Args:
        counts: images per split, overriding each dataset's defaults for the splits it names
            (splits a dataset does not have, e.g. train for synth_polyp_b, are ignored).
    """
    spec = _spec(name)
    counts = {s: (counts or {}).get(s, n) for s, n in spec.counts.items()}
    root = Path(out) / name
    for split, n in counts.items():
        write_split(spec, root, split, n, seed, size)
    meta = {
        "name": name,
        "modality": spec.modality,
        "stands_for": spec.stands_for,
        "generator": "vlsm_lib.data.medshapes.synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "size": list(spec.shape(size)),
        "images_per_split": counts,
    }
    (root / "medshapes.json").write_text(json.dumps(meta, indent=1))
    return root


def write_medshapes(
    out: str | Path,
    seed: int = 0,
    size: int = 128,
    counts: dict[str, int] | None = None,
    names: list[str] | None = None,
) -> list[Path]:
    """Write every (or the named) MedShapes dataset under ``out``; returns their folders."""
    names = names or list(SPECS)
    for name in names:
        _spec(name)  # fail before writing anything
    return [write_dataset(n, out, seed, size, counts) for n in tqdm(names, desc="MedShapes")]
