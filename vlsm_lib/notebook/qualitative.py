"""Qualitative examples (the paper's Fig. 4): a few test images with their truth and the
predictions under the right prompt, a perturbed prompt and the empty prompt.

``save_examples`` runs in the prompt-ablation notebook and writes a small, self-contained folder
(the images are copied, so the figure survives a moved data root)::

    <run>/qualitative/examples.json    [{image_id, prompts: {condition: text}, dice: {...}}, ...]
    <run>/qualitative/<k>_image.png, <k>_truth.png, <k>_<condition>.png   (PNG, 0/255 masks)

``load_examples`` reads such folders back for ``analysis.figures.qualitative``. The images are drawn
with a seeded generator among those whose truth is not empty and whose prompt the perturbation
changes: examples, not a selection of the best or worst cases.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Subset

from vlsm_lib.data import perturb
from vlsm_lib.data.dataset import load_dataset
from vlsm_lib.data.io import read_image, read_mask
from vlsm_lib.engine.evaluate import evaluate
from vlsm_lib.files import atomic_write, write_json

CONDITIONS = ("right", "perturbed", "empty")
FOLDER, INDEX = "qualitative", "examples.json"


def _png(image: Image.Image, path: Path) -> str:
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
    return path.name


def _mask_png(mask: np.ndarray, path: Path) -> str:
    return _png(Image.fromarray(mask.astype(np.uint8) * 255), path)


def save_examples(
    model,
    data_root,
    dataset,
    prompt,
    seed,
    run_dir,
    n=3,
    attribute="size",
    mode="wrong",
    split="test",
) -> list[dict]:
    """Write ``n`` examples under ``run_dir/qualitative/`` (module docstring); returns the
    records written to examples.json."""
    if n <= 0:
        return []
    ds = load_dataset(data_root, dataset, split, model.preprocess, prompt, seed)
    wrong = perturb.transform(attribute, mode)
    rng = np.random.default_rng(seed)
    candidates = [
        i
        for i in range(len(ds))
        if read_mask(ds.paths(i)[1]).any()
        and wrong(ds.prompt_text(i), ds.records[i], np.random.default_rng(i)) != ds.prompt_text(i)
    ]
    if not candidates:
        raise ValueError(
            f"no test image of {dataset!r} has a non-empty mask and a prompt ({prompt}) that "
            f"perturbing {attribute!r} changes; choose another qualitative_attribute or prompt"
        )
    chosen = sorted(rng.choice(candidates, size=min(n, len(candidates)), replace=False).tolist())
    folder = Path(run_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    transforms = {"right": None, "perturbed": wrong, "empty": lambda text, rec, rng: ""}
    records = [
        {"image_id": ds.records[i]["mask_name"], "prompts": {}, "dice": {}, "files": {}}
        for i in chosen
    ]
    for condition, transform in transforms.items():
        ds.prompt_transform = transform
        scores = evaluate(
            model, Subset(ds, chosen), masks_dir=folder / "_masks", surface=False, progress=False
        )
        for k, (rec, row) in enumerate(zip(records, scores.itertuples())):
            pred = read_mask(folder / "_masks" / dataset / Path(row.image_id).with_suffix(".png"))
            rec["files"][condition] = _mask_png(pred, folder / f"{k}_{condition}.png")
            rec["prompts"][condition] = row.prompt_text
            rec["dice"][condition] = float(row.dice)
    for k, (rec, i) in enumerate(zip(records, chosen)):
        image_path, mask_path = ds.paths(i)
        rec["files"]["image"] = _png(read_image(image_path), folder / f"{k}_image.png")
        rec["files"]["truth"] = _mask_png(read_mask(mask_path), folder / f"{k}_truth.png")
        rec.update(dataset=dataset, perturbation=f"{attribute} ({mode})")
    ds.prompt_transform = None
    shutil.rmtree(folder / "_masks")  # copied into <k>_<condition>.png above
    write_json(folder / INDEX, records)
    return records


def load_examples(run_dirs) -> list[dict]:
    """The examples of every run folder in ``run_dirs`` that saved some, each record with
    ``run_id`` and absolute ``paths`` to its PNGs; ordered round-robin (every run's first
    example, then every run's second, ...) so that a figure's first rows show several runs."""
    out = []
    for run_dir in map(Path, run_dirs):
        index = run_dir / FOLDER / INDEX
        if not index.is_file():
            continue
        for k, rec in enumerate(json.loads(index.read_text(encoding="utf-8"))):
            paths = {key: run_dir / FOLDER / name for key, name in rec["files"].items()}
            out.append({**rec, "run_id": run_dir.name, "paths": paths, "rank": k})
    return sorted(out, key=lambda rec: rec["rank"])  # stable: run order within a rank
