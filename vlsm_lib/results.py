"""Runs as folders: ids that parse back, ``save_run`` / ``load_run``, ``gather``.

A run folder ``outputs/<suite>/<study>/<run_id>/`` holds the executed ``notebook.ipynb`` and
``notebook.html``, ``run.json`` (resolved parameters, git SHA, package versions, device, times,
status), ``per_image.parquet`` (one row per test image), ``metrics.json`` and, when trained,
``checkpoint.safetensors`` + ``model.json``. ``status: complete`` is written last, atomically:
anything else is not a result.

Run ids: ``<study>__<v1>__<v2>...`` over the parameters that vary in the study's grid, in the
grid's key order. Models, datasets and prompts appear as their values, the seed as ``s<N>``, any
other key as ``<key>-<value>`` (e.g. ``finetune__clipseg__synth_polyp__p6__s42``).
"""

from __future__ import annotations

import json
import re
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from vlsm_lib import locks
from vlsm_lib.files import atomic_write, write_json

RUN_JSON, PER_IMAGE, METRICS_JSON = "run.json", "per_image.parquet", "metrics.json"
PROGRESS_JSON = "progress.json"  # a suite's grid under way (grid.progress writes, reports read)
# The per-image metric columns every table reports, in this order (a list: pandas selects with it).
METRICS = ["dice", "iou", "hd95", "nsd"]
PLAIN_KEYS = ("model", "dataset", "prompt")  # written as bare values in run ids
# What a run is, whatever its study is called: the runner writes it into run.json from the
# study's params file (``kind:``; by default the notebook's name), and every table selects runs
# by it, never by a study name. Runs of one kind that differ in study stay apart all the same.
KINDS = (
    "medshapes",
    "pretrain",  # a finetune that makes starting weights (the demo's stand-in for pretraining)
    "finetune",
    "transfer_modes",  # finetunes under other train policies and fractions
    "reference_faults",  # finetunes with one of the reference's faults put back
    "zero_shot",
    "prompt_ablation",
    "domain_shift",
    "statistics",
)
TRAINS = ("pretrain", "finetune", "transfer_modes", "reference_faults")  # kinds that train
SEED_TOKEN, PROMPT_TOKEN = r"s\d+", r"p\d+|random"  # how run ids write seeds and prompts


def token_part(token: str) -> str:
    """The pattern of a run id's ``token`` (``SEED_TOKEN``, ``PROMPT_TOKEN``) with its "__":
    a run id without its seed part names its configuration."""
    return rf"__({token})(?=__|$)"


_SAFE = re.compile(r"^[A-Za-z0-9_.+=-]+$")


def _token(key: str, value: Any) -> str:
    text = str(value)
    if key == "seed":
        text = f"s{value}"
    elif key not in PLAIN_KEYS:
        text = f"{key}-{value}"
    if "__" in text or not _SAFE.match(text) or text.startswith("."):
        raise ValueError(
            f"parameter {key}={value!r} cannot go into a run id (letters, digits, _ . + = - only, "
            "no '__', not starting with '.': no path can escape the study folder); rename it"
        )
    return text


def run_id(study: str, varying: dict[str, Any]) -> str:
    """``study__...`` from the varying parameters, in their order."""
    if "__" in study or not _SAFE.match(study):
        raise ValueError(f"study name {study!r} must be letters, digits, _ . + = - without '__'")
    return "__".join([study] + [_token(k, v) for k, v in varying.items()])


def parse_run_id(rid: str, models: tuple[str, ...], prompts_re: str = PROMPT_TOKEN):
    """Inverse of ``run_id`` for ids built from model / dataset / prompt / seed / key-value;
    ``models`` are the model names (``vlsm_lib.models.list_models()``).

    Returns {"study": ..., "model": ..., "dataset": ..., "prompt": ..., "seed": int, ...}.
    """
    study, *tokens = rid.split("__")
    out: dict[str, Any] = {"study": study}
    for tok in tokens:
        if re.fullmatch(SEED_TOKEN, tok):
            out["seed"] = int(tok[1:])
        elif re.fullmatch(prompts_re, tok):
            out["prompt"] = tok
        elif tok in models:
            out["model"] = tok
        elif re.fullmatch(r"[a-z][a-z0-9_]*-.+", tok) and "dataset" in out:
            key, value = tok.split("-", 1)
            out[key] = value
        else:
            out["dataset"] = tok
    return out


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def kind_of(info: dict) -> str:
    """A run's kind from its run.json; a run saved without one (by hand, or before kinds were
    recorded) is taken to be of the kind its study is named after."""
    return str(info.get("kind") or info.get("study") or "")


def read_run(run_dir: str | Path) -> dict:
    """run.json as a dict; {"status": "missing"} when absent or unreadable."""
    try:
        return json.loads((Path(run_dir) / RUN_JSON).read_text())
    except (OSError, ValueError):
        return {"status": "missing"}


def shown_status(info: dict, run_dir: str | Path) -> str:
    """A run's status for reports: run.json's, except that a run left "running" by an owner
    that is gone (no live lock: ``locks``) is "stale"."""
    status = str(info.get("status") or "unknown").lower()
    return "stale" if status == "running" and not locks.is_held(run_dir) else status


def unfinished(run_dir: str | Path) -> bool:
    """A run to do again (``vlsm run --failed``): failed, or stale (``shown_status``)."""
    info = read_run(run_dir)
    return info.get("status") == "failed" or shown_status(info, run_dir) == "stale"


def is_complete(run_dir: str | Path) -> bool:
    return read_run(run_dir).get("status") == "complete"


SUITE_DIR = "{suite_dir}"


def portable_params(params: dict, run_dir: str | Path) -> dict:
    """``params`` with every absolute path inside the run's suite folder (two levels above the
    run) written ``{suite_dir}/...``: run.json and per-image tables then read the same on
    every machine the suite is copied to (paths outside it, like the data root, stay)."""
    suite = Path(run_dir).resolve().parents[1]

    def one(value):
        if isinstance(value, dict):
            return {k: one(v) for k, v in value.items()}
        if isinstance(value, str) and value.startswith("/"):
            path = Path(value).resolve()
            if path.is_relative_to(suite):
                return f"{SUITE_DIR}/{path.relative_to(suite).as_posix()}".rstrip("/.")
        return value

    return one(params)


def save_run(
    run_dir: str | Path,
    params: dict,
    per_image: pd.DataFrame | None = None,
    metrics: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write a run's results, then mark it complete (last, atomically). ``extra`` adds keys to
    run.json (``notebook.verbs.save`` adds the run's provenance).

    ``per_image`` gets the run's parameters as columns (run_id, study, model, dataset, ...), so
    gathered tables need no join. Returns the run folder.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    params = portable_params(params, run_dir)
    info = read_run(run_dir)
    rid = info.get("run_id", run_dir.name)
    study = info.get("study", run_dir.parent.name)
    if per_image is not None:
        table = per_image.copy()
        for key, value in reversed([("run_id", rid), ("study", study), *_flat(params).items()]):
            if key not in table.columns:
                table.insert(0, key, value)
        atomic_write(run_dir / PER_IMAGE, lambda tmp: table.to_parquet(tmp, index=False))
    if metrics is not None:
        write_json(run_dir / METRICS_JSON, metrics)
    started = info.get("started") or now()
    info.update(
        {
            "run_id": rid,
            "params": params,
            "started": started,
            "finished": now(),
            **(extra or {}),
        }
    )
    info["status"] = "complete"
    write_json(run_dir / RUN_JSON, info)
    return run_dir


def _flat(params: dict) -> dict:
    """Scalar parameters only (lists and dicts stay in run.json)."""
    return {k: v for k, v in params.items() if isinstance(v, (str, int, float, bool))}


def summarise(per_image: pd.DataFrame) -> dict:
    """Mean metrics over images (empty-truth images counted as the empty rule says)."""
    out = {"n_images": int(len(per_image))}
    for col in METRICS:
        if col in per_image:
            out[col] = float(per_image[col].mean())  # NaN hd95 (one empty mask) skipped
    if "gt_empty" in per_image:
        out["n_gt_empty"] = int(per_image["gt_empty"].sum())
    return out


def complete_runs(folder: str | Path) -> list[Path]:
    """The folders of the complete runs with a per-image table under ``folder`` (a run, study
    or suite folder), sorted."""
    return [t.parent for t in sorted(Path(folder).rglob(PER_IMAGE)) if is_complete(t.parent)]


REQUIRED_COLUMNS = ("run_id", "test_set", "image_id", "dice")  # what statistics cannot do without


def gather(study_dir: str | Path, complete_only: bool = True) -> pd.DataFrame:
    """One table, one row per test image, over the runs of a study folder (or a suite folder).

    A run that cannot be used (run.json not JSON, a truncated or unreadable per_image.parquet,
    a table from an older version without the columns statistics need) is left out with a
    warning naming it and why; the list is in ``table.attrs["unusable"]``."""
    frames, unusable = [], []
    for table in sorted(Path(study_dir).rglob(PER_IMAGE)):  # one pass, run.json read once
        try:
            info = json.loads((table.parent / RUN_JSON).read_text())
        except (OSError, ValueError) as err:
            unusable.append((table.parent, f"run.json unreadable ({type(err).__name__})"))
            continue
        if complete_only and info.get("status") != "complete":
            continue
        try:
            frame = pd.read_parquet(table)
        except Exception as err:  # pyarrow raises several types for a damaged file
            unusable.append((table.parent, f"{PER_IMAGE} unreadable ({type(err).__name__})"))
            continue
        for key in ("study", "suite"):  # runs saved outside the runner may lack them
            if key not in frame and key in info:
                frame.insert(0, key, info[key])
        if "kind" not in frame:
            frame.insert(frame.columns.get_loc("study") + 1 if "study" in frame else 0,
                         "kind", kind_of(info))  # fmt: skip
        missing = [c for c in REQUIRED_COLUMNS if c not in frame]
        if missing:
            unusable.append((table.parent, f"{PER_IMAGE} lacks {missing} (an older version?)"))
            continue
        frames.append(frame)
    if unusable:
        warnings.warn(
            f"{len(unusable)} run(s) left out of the gathered table: "
            + "; ".join(f"{run}: {why}" for run, why in unusable),
            stacklevel=2,
        )
    if not frames:
        raise FileNotFoundError(f"no complete runs with {PER_IMAGE} under {study_dir}")
    out = pd.concat(frames, ignore_index=True)
    out.attrs["unusable"] = [(str(run), why) for run, why in unusable]
    return out
