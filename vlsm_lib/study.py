"""The verbs the study notebooks call, one per cell: setup, datasets, sweeps, parameters.

Notebooks hold no logic (no def, no class, no loops over runs); what has a branch or a loop lives
here, tested.
"""

from __future__ import annotations

import os
import random
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vlsm_lib import paths, runtime  # noqa: F401  (runtime: CPU settings; see runtime.py)
from vlsm_lib.data import perturb as perturbations
from vlsm_lib.data.dataset import load_dataset
from vlsm_lib.evaluate import evaluate

# Named pooled training sets: name -> member datasets (each keeps its own prompts).
POOLED = {
    "synth_pooled": ["synth_polyp", "synth_skin", "synth_ultrasound", "synth_xray"],
    "pooled_polyp": ["kvasir_polyp", "clinicdb_polyp", "bkai_polyp"],
    "pooled_all": [
        "kvasir_polyp",
        "clinicdb_polyp",
        "bkai_polyp",
        "dfu",
        "isic",
        "camus",
        "busi",
        "chexlocalize",
    ],
}


def setup(run_dir: str, data_root: str, seed: int, notebook: str) -> tuple[Path, Path]:
    """Resolve folders (interactive runs get ``outputs/interactive/<notebook>/<time>``), seed
    every generator and cap torch threads at the machine's cores. Returns (run_dir, data_root).
    """
    if not run_dir:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = str(paths.outputs_root() / "interactive" / Path(notebook).stem / stamp)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    return Path(run_dir), Path(data_root) if data_root else paths.data_root()


def parameter_names(notebook: str | Path) -> list[str]:
    """Names assigned in a notebook's ``parameters`` cell (without importing papermill, which
    costs seconds in every kernel)."""
    import ast
    import json

    book = json.loads((paths.REPO_ROOT / notebook).read_text())
    for cell in book["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"])
            return [
                t.id
                for node in ast.parse(source).body
                if isinstance(node, ast.Assign)
                for t in node.targets
                if isinstance(t, ast.Name)
            ]
    raise ValueError(f"{notebook} has no cell tagged 'parameters'")


def notebook_params(namespace: dict, notebook: str) -> dict:
    """The current values of a notebook's declared parameters, read from its namespace."""
    return {name: namespace[name] for name in parameter_names(notebook) if name in namespace}


def members(dataset: str) -> list[str]:
    """A dataset name, a pooled name (``POOLED``) or names joined by '+' -> dataset names."""
    if dataset in POOLED:
        return list(POOLED[dataset])
    return [d for d in dataset.split("+") if d]


def split_names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def datasets(data_root, dataset, preprocess, prompt, seed, val_split="val"):
    """(train, val) of a dataset or pooled set."""
    names = members(dataset)
    train = load_dataset(data_root, names, "train", preprocess, prompt, seed)
    val = load_dataset(data_root, names, val_split, preprocess, prompt, seed)
    return train, val


def test_sets(data_root, names, preprocess, prompt, seed, split="test") -> dict:
    """{dataset name: its test split}; pooled names expand to their members, reported apart."""
    out = {}
    for name in names:
        for member in members(name):
            out[member] = load_dataset(data_root, member, split, preprocess, prompt, seed)
    return out


def evaluate_sets(model, sets: dict, masks_dir=None, surface=True, batch_size=16) -> pd.DataFrame:
    """``evaluate`` over several test sets; one table with a ``test_set`` column."""
    frames = []
    for name, ds in sets.items():
        table = evaluate(model, ds, batch_size=batch_size, masks_dir=masks_dir, surface=surface)
        table.insert(0, "test_set", name)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def prompt_sweep(model, data_root, dataset, seed, split="test", keys="all", surface=False):
    """Per-image scores of one model at every prompt level of a dataset (column prompt_key)."""
    probe = load_dataset(data_root, dataset, split, model.preprocess, "p0", seed)
    levels = probe.prompt_keys if keys == "all" else split_names(keys)
    frames = []
    for key in levels:
        ds = load_dataset(data_root, dataset, split, model.preprocess, key, seed)
        table = evaluate(model, ds, surface=surface, progress=False)
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
    rows = []
    cases = [("none", "none")] + [
        (a, m) for a in split_names(attributes) for m in perturbations.MODES
    ]
    for attribute, mode in cases:
        ds = load_dataset(data_root, dataset, split, model.preprocess, prompt, seed)
        original = [ds.prompt_text(i) for i in range(len(ds))]
        if attribute != "none":
            ds.prompt_transform = perturbations.transform(attribute, mode)
        table = evaluate(model, ds, surface=surface, progress=False)
        table.insert(0, "test_set", dataset)
        table.insert(0, "mode", mode)
        table.insert(0, "attribute", attribute)
        table["original_prompt"] = original
        table["changed"] = table["prompt_text"] != table["original_prompt"]
        rows.append(table)
    return pd.concat(rows, ignore_index=True)


def perturbation_effect(table: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice change against the unperturbed prompt, per attribute and mode, over the
    images whose prompt actually changed."""
    base = table[table.attribute == "none"].set_index("image_id")["dice"]
    out = []
    for (attribute, mode), group in table[table.attribute != "none"].groupby(["attribute", "mode"]):
        changed = group[group.changed]
        delta = changed["dice"].to_numpy() - base.loc[changed.image_id].to_numpy()
        out.append(
            {
                "attribute": attribute,
                "mode": mode,
                "n_changed": len(changed),
                "delta_dice": float(np.mean(delta)) if len(delta) else float("nan"),
            }
        )
    return pd.DataFrame(out)
