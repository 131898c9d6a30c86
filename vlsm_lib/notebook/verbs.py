"""The steps a notebook takes, one per cell: set up the run, read its parameters, build the
model, load the data, summarise the results.

Notebooks hold no logic (no def, no class, no loops); what has a branch or a loop lives in
vlsm_lib, tested. The sweeps are in ``vlsm_lib.engine.evaluate``, pooled-set names in
``vlsm_lib.data.pooled``, statistics in ``vlsm_lib.analysis.stats``.

Which names are a notebook's parameters is papermill's answer (``papermill.inspect_notebook``,
the inspection the runner uses to refuse unknown keys), never a second parser of ours. Importing
papermill takes seconds (nbformat's schema validator compiles a URI grammar on import), which
every kernel would pay for a list the runner already holds. So the runner writes the names into
the run's ``run.json`` (``parameter_names``) before it starts the kernel; a kernel started by
hand (JupyterLab) finds no such file and inspects its notebook itself, once.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pandas as pd
import torch

from vlsm_lib import lifetime, paths
from vlsm_lib.data.dataset import load_dataset
from vlsm_lib.data.pooled import PooledDataset, members
from vlsm_lib.data.subset import distinct_records, take_fraction
from vlsm_lib.engine import feature_store, provenance, runtime
from vlsm_lib.engine.config import comma_list
from vlsm_lib.models import SegModel, create_model
from vlsm_lib.results import kind_of, read_run, save_run, summarise

# In a path parameter, this placeholder stands for the outputs folder ($VLSM_OUTPUTS or
# outputs/), so that a notebook's default can name a run of the demo study.
OUTPUTS = "{outputs}"


def setup(namespace: dict, notebook: str) -> tuple[Path, Path, dict]:
    """A notebook's first step. ``namespace``: its ``globals()`` (the parameters ``run_dir``,
    ``data_root`` and ``seed`` are read from it); ``notebook``: its path in the repository.

    Resolves the folders (an interactive run gets ``outputs/interactive/<notebook>/<time>``),
    seeds every generator and caps torch threads at the machine's cores. Returns (run_dir,
    data_root, params): the folders, and the values of the notebook's parameters with the
    folders resolved (what ``save`` records).
    """
    run_dir, data_root = _folders(namespace["run_dir"], namespace["data_root"], notebook)
    lifetime.exit_with_runner()  # a kernel never outlives the runner that owns its run
    feature_store.activate(run_dir)  # the suite's shared frozen features (feature_store.py)
    runtime.apply()  # CPU settings for this kernel (runtime.py)
    runtime.seed_everything(namespace["seed"])
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    params = notebook_params({**namespace, "run_dir": run_dir, "data_root": data_root}, notebook)
    return run_dir, data_root, params


def _folders(run_dir: str, data_root: str, notebook: str) -> tuple[Path, Path]:
    if not run_dir:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = str(paths.outputs_root() / "interactive" / Path(notebook).stem / stamp)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return Path(run_dir), Path(data_root) if data_root else paths.data_root()


def save(
    run_dir: str | Path,
    params: dict,
    per_image: pd.DataFrame | None = None,
    metrics: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """A notebook's last cell: ``results.save_run`` with the run's provenance (git SHA,
    versions, device, CPU tuning, feature-store hits) in run.json. Returns the run folder."""
    return save_run(run_dir, params, per_image, metrics, {**provenance.record(), **(extra or {})})


def parameter_names(notebook: str | Path, run_dir: str | Path) -> list[str]:
    """The names a notebook declares in its ``parameters`` cell: from ``run_dir/run.json`` when
    the runner started the run, else from papermill's inspection of ``notebook`` (a path
    relative to the repository)."""
    names = read_run(run_dir).get("parameter_names")
    if names is None:  # only kernels started by hand get here
        from vlsm_lib.grid.execute import declared_parameters

        names = list(declared_parameters(paths.REPO_ROOT / notebook))
    return names


def notebook_params(namespace: dict, notebook: str) -> dict:
    """The current values of a notebook's parameters, read from its namespace (``globals()``,
    with ``run_dir`` resolved: ``setup`` calls it)."""
    names = parameter_names(notebook, namespace["run_dir"])
    return {name: namespace[name] for name in names if name in namespace}


def resolve(path: str) -> str:
    """A path parameter with ``{outputs}`` filled in; such a path must exist. Other values
    ("", "pretrained", a path) are returned as they are."""
    if OUTPUTS not in path:
        return path
    resolved = path.replace(OUTPUTS, str(paths.outputs_root()))
    if not Path(resolved).exists():
        raise FileNotFoundError(
            f"{resolved} not found: this default names a run of the demo study; run `make study` "
            "first, or set the parameter to a folder of your own"
        )
    return resolved


def setting(weights: str) -> str:
    """ "finetuned" when ``weights`` is the folder of a finetune run (its run.json says kind
    finetune), else "zero-shot": pretrained weights, or the demo's pretrain runs, which stand
    for them. Prompt-ablation rows carry it, so Fig. 2 keeps the two apart."""
    info = read_run(resolve(weights) or ".")
    return "finetuned" if kind_of(info) == "finetune" else "zero-shot"


def build_model(
    model: str, size: str, weights: str = "", train: str = "", options: dict | None = None
) -> SegModel:
    """``create_model`` with the notebooks' conventions: "" = the default (random weights, the
    model's own train policy); ``weights`` may use ``{outputs}`` (``resolve``)."""
    return create_model(
        model, size=size, weights=resolve(weights) or None, train=train or None, **(options or {})
    )


def inference_model(model: str, size: str, weights: str = "", options: dict | None = None):
    """``build_model`` for a run that trains nothing (zero-shot, prompt ablation): in eval mode,
    every parameter frozen, so both towers' features can come from the suite's feature store
    (``feature_store``) whatever the model's train policy (CRIS's default, ``all``, included);
    its ``describe()`` counts 0 trainable parameters, which is what the run trains."""
    return build_model(model, size, weights, options=options).eval().requires_grad_(False)


def datasets(data_root, dataset, preprocess, prompt, seed, val_split="val", train_fraction=1.0):
    """(train, val) of a dataset or pooled set; ``train_fraction`` < 1 keeps a seeded, stratified
    part of each member's training split (``data.subset``), the validation split whole."""
    names = members(dataset)
    parts = [load_dataset(data_root, n, "train", preprocess, prompt, seed) for n in names]
    parts = [take_fraction(part, train_fraction, seed) for part in parts]
    train = parts[0] if len(parts) == 1 else PooledDataset(parts)
    val = load_dataset(data_root, names, val_split, preprocess, prompt, seed)
    return train, val


def test_sets(data_root, names: str, preprocess, prompt, seed, split="test") -> dict:
    """{dataset name: its test split} for comma-separated ``names``; pooled names expand to
    their members, reported apart."""
    out = {}
    for name in comma_list(names):
        for member in members(name):
            out[member] = load_dataset(data_root, member, split, preprocess, prompt, seed)
    return out


def check_leaks(data_root, allow: bool, *names: str) -> list[str]:
    """Refuse (DataError) a dataset among the comma-separated ``names`` (pooled names expand)
    whose last ``vlsm data check`` found a train/test leak, unless ``allow``; returns the
    datasets looked at."""
    from vlsm_lib.data.check import refuse_leaks

    datasets = [m for n in names for name in comma_list(n) for m in members(name)]
    refuse_leaks(data_root, datasets, allow)
    return datasets


def fit_summary(per_image: pd.DataFrame, result, model=None, train_set=None) -> dict:
    """A finetune run's metrics: the test means (``summarise``), how training went (a
    ``train.FitResult``), the model's trainable and total parameters and the training images."""
    extra = {}
    if model is not None:
        facts = model.describe()
        extra = {"trainable_params": facts["trainable_params"], "params": facts["params"]}
    if train_set is not None:
        extra["train_images"] = distinct_records(train_set)
    return {
        **summarise(per_image),
        **extra,
        "best_epoch": result.best_epoch,
        "best_val_dice": result.best_val_dice,
        "epochs": result.epochs_run,
        "stopped": result.stopped,
        "feature_cache": result.cache,
        "resumed_at_epoch": result.resumed_at,
    }


def ablation_table(by_level, perturbed, use, weights_setting: str, worded=None) -> pd.DataFrame:
    """The prompt-level, perturbation, prompt-use and wording sweeps in one per-image table
    (column ``sweep``: level, perturbation, use, wording), each row marked with the weights'
    ``setting``."""
    parts = [
        by_level.assign(sweep="level"),
        perturbed.assign(sweep="perturbation"),
        use.assign(sweep="use"),
    ]
    if worded is not None:
        parts.append(worded.assign(sweep="wording"))
    table = pd.concat(parts, ignore_index=True)
    return table.assign(setting=weights_setting)


def ablation_metrics(by_level, effect, use_index, prompt: str, wording=None) -> dict:
    """The test means at ``prompt``, the mean Dice at every level (``dice_<level>``), the
    Dice change of each perturbation (``delta_<attribute>_<mode>``; ``effect`` comes from
    ``effects.perturbation_effect``), the prompt-use index against each control
    (``use_index_<control>``, from ``effects.prompt_use_index``) and the change of each
    rewording (``wording_<variant>``, from ``effects.wording_effect``)."""
    out = summarise(by_level[by_level.prompt_key == prompt])
    for level, dice in by_level.groupby("prompt_key")["dice"].mean().items():
        out[f"dice_{level}"] = dice
    for row in effect.itertuples():
        out[f"delta_{row.attribute}_{row.mode}"] = row.delta
    for row in use_index.itertuples():
        out[f"use_index_{row.control}"] = row.use_index
    for row in (wording if wording is not None else pd.DataFrame()).itertuples():
        out[f"wording_{row.variant}"] = row.delta
    return out


def split_counts(n_train: int, n_val: int, n_test: int) -> dict[str, int]:
    """{split: images} for the splits given a size; 0 keeps each dataset's default."""
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    return {split: n for split, n in sizes.items() if n}


def synthetic_names(names: str) -> list[str]:
    """Comma-separated MedShapes dataset names; "" = all of them."""
    from vlsm_lib.data.medshapes.synthetic import (
        list_synthetic,  # slow to import: only medshapes needs it
    )

    return comma_list(names) or list_synthetic()


# What the statistics notebook saves under <run>/results/: a file name -> the notebook variable
# that holds it. Tables are written as CSV, Markdown and LaTeX (``stats.save_tables``), figures
# as PNG and SVG (``plots.save_figure``); the tests and the results page read this declaration.
STATISTICS_TABLES = {
    "findings": "findings_table",
    "summary": "summary",
    "table2": "table_2",
    "table2_grid": "table_2_grid",
    "finetune_vs_zero_shot": "finetuned",
    "prompt_effect": "text_use",
    "prompt_levels": "levels",
    "perturbation": "perturbation",
    "prompt_use_index": "use_index",
    "wording": "robustness",
    "domain_shift": "shift",
    "wilcoxon_models": "wilcoxon_models",
    "friedman": "friedman",
    "transfer_modes": "transfer_modes",
    "policy_tests": "policy_tests",
    "reference_faults": "fault_table",
}
STATISTICS_FIGURES = {
    "prompt_levels": "levels_figure",
    "perturbation": "perturbation_figure",
    "prompt_use_index": "use_figure",
    "wording": "wording_figure",
    "qualitative": "qualitative_figure",
    "cd_diagram": "cd_diagram",
    "transfer_modes": "trainable_figure",
    "train_fraction": "fraction_figure",
}


def save_statistics(results_dir: str | Path, namespace: dict) -> list[str]:
    """Write the statistics notebook's tables and figures (``STATISTICS_TABLES``,
    ``STATISTICS_FIGURES``) from its namespace (``globals()``); returns the files written."""
    from vlsm_lib.analysis.stats import save_tables
    from vlsm_lib.notebook.plots import save_figure

    wanted = [*STATISTICS_TABLES.values(), *STATISTICS_FIGURES.values()]
    missing = [name for name in wanted if name not in namespace]
    if missing:
        raise KeyError(f"the statistics notebook has not made {missing}; run its cells in order")
    save_tables(results_dir, **{f: namespace[v] for f, v in STATISTICS_TABLES.items()})
    for name, variable in STATISTICS_FIGURES.items():
        save_figure(namespace[variable], results_dir, name)
    return sorted(p.name for p in Path(results_dir).iterdir())


def write_results_page(run_dir, page: str, title: str, table: pd.DataFrame, note: str = ""):
    """The statistics notebook's results page (``reports.results_page``) at ``page``, a path
    relative to the repository ("" writes none); returns its path or None."""
    if not page:
        return None
    from vlsm_lib.reports.results_page import write_results_page as write

    path = Path(page) if Path(page).is_absolute() else paths.REPO_ROOT / page
    return write(run_dir, path, title, int(table["run_id"].nunique()), note)
