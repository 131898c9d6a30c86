"""Every run's parameters checked before any run starts (``runner.plan``).

A grid of 580 GPU runs must not discover on run 312 that a value is misspelt. Before executing
anything, each run's parameters are checked against what its notebook and the library accept:

- **types**: a value must have the type of the notebook's default (an int may stand for a
  float; a bool, a string, a dict must be one);
- **training settings**: the ``TrainConfig`` fields among them build a ``TrainConfig`` (its
  checks: positive lr, batch size and epochs, known loss, precision, cache modes);
- **models**: ``model`` is a registry name and ``model_options`` are options its builder
  declares (a typo such as ``clip_weight`` would otherwise train CRIS from a random CLIP);
- **prompts**: ``prompt`` is ``random`` or ``p<N>``, and when the dataset is already on disk
  it is one of its prompt keys;
- **names**: dataset names hold no path separator and do not start with "." (``..``);
- **checkpoints**: a checkpoint a run names exists or is written by a run of the plan, and a
  complete run named as one still holds its checkpoint files.

All problems of all runs are reported together, each naming its run and the fix.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
import re
from pathlib import Path

from vlsm_lib.engine.config import TrainConfig, comma_list, from_dict

INJECTED = ("run_dir", "data_root")


@functools.cache
def notebook_defaults(notebook: Path) -> dict:
    """{parameter: its default value} of a notebook's parameters cell (papermill)."""
    import papermill

    out = {}
    for name, p in papermill.inspect_notebook(str(notebook)).items():
        try:
            out[name] = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            out[name] = None  # a default that is an expression: no type to hold it to
    return out


def _type_problem(key, value, default) -> str | None:
    if default is None or value is None:
        return None
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float)
    else:
        ok = isinstance(value, type(default))
    if ok:
        return None
    return (
        f"{key}={value!r} is a {type(value).__name__}; the notebook expects a "
        f"{type(default).__name__} (default {default!r})"
    )


def _train_problem(params: dict) -> str | None:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    train = {k: v for k, v in params.items() if k in fields}
    if not train:
        return None
    try:
        from_dict(TrainConfig, train)
    except (ValueError, TypeError, KeyError) as err:
        return f"training settings: {err}"
    return None


def _model_problem(params: dict) -> str | None:
    if "model" not in params:
        return None
    from importlib import import_module

    from vlsm_lib.data.subset import check_fraction
    from vlsm_lib.models import MODELS, check_options, tuning

    name = params["model"]
    if name not in MODELS:
        return f"unknown model {name!r}; valid: {', '.join(MODELS)}"
    module, builder, fixed = MODELS[name]
    options = params.get("model_options") or {}
    own = {k: v for k, v in options.items() if k not in tuning.OPTIONS}
    tuned = {k: v for k, v in options.items() if k in tuning.OPTIONS}
    policy = params.get("train") or ""
    known = ("all", "decoder", *tuning.POLICIES)
    if policy and policy not in known:
        return f"unknown train policy {policy!r}; valid: {', '.join(known)}"
    try:
        check_options(name, getattr(import_module(module), builder), fixed, own)
        if tuned or policy in tuning.POLICIES:
            tuning.policy_options(policy, tuned)
        if "train_fraction" in params:
            check_fraction(params["train_fraction"])
    except (TypeError, ValueError) as err:
        return str(err)
    return None


@functools.cache
def _prompt_keys(data_root: str, dataset: str) -> frozenset[str] | None:
    """The prompt keys of a dataset already on disk (its first annotation record), else None;
    read once per dataset, not once per run."""
    from vlsm_lib.data.pooled import members

    keys = None
    for name in (m for d in comma_list(dataset) for m in members(d)):
        files = sorted((Path(data_root) / name / "anns").glob("*.json"))
        if not files:
            return None
        try:
            first = json.loads(files[0].read_text(encoding="utf-8"))[0]["prompts"]
        except (OSError, ValueError, IndexError, KeyError, TypeError):
            return None  # a broken dataset is the data check's business
        keys = set(first) if keys is None else keys & set(first)
    return frozenset(keys) if keys is not None else None


def _prompt_problem(params: dict) -> str | None:
    prompt = params.get("prompt")
    if not isinstance(prompt, str):
        return None
    if prompt != "random" and not re.fullmatch(r"p\d+", prompt):
        return f"prompt={prompt!r}: a prompt is 'random' or a level p0, p1, ..."
    keys = _prompt_keys(params.get("data_root", ""), params.get("dataset", ""))
    if keys and prompt != "random" and prompt not in keys:
        order = sorted(keys, key=lambda k: int(k[1:]) if k[1:].isdigit() else 99)
        return f"prompt={prompt!r} is not a prompt key of {params['dataset']}: {', '.join(order)}"
    return None


def _name_problem(params: dict) -> str | None:
    """Dataset names are folder names under the data root: no path may escape it."""
    for key in ("dataset", "test_sets", "targets"):
        for name in comma_list(params.get(key) or "") if isinstance(params.get(key), str) else []:
            if "/" in name or "\\" in name or name.startswith("."):
                return f"{key}={params[key]!r}: {name!r} is not a dataset name (no paths, no '..')"
    return None


CHECKPOINT_KEYS = ("weights", "checkpoint", "decoder_weights", "clip_weights")


def _paths(params: dict):
    """(key, value) of the parameters that may name a checkpoint, options included."""
    for key, value in [*params.items(), *(params.get("model_options") or {}).items()]:
        if key in CHECKPOINT_KEYS and isinstance(value, str) and "/" in value:
            yield key, value


def _checkpoint_problem(params: dict, planned: set[str], suites: set[str]) -> str | None:
    """A checkpoint inside the plan's suite folders (``suites``) that a run names must exist or
    be written by a run of this plan; a complete run named as a checkpoint must still hold its
    files."""
    for key, value in _paths(params):
        path = Path(value)
        if str(path) in planned or not any(str(path).startswith(s + "/") for s in suites):
            continue  # written by this plan, or outside the suites (public weights: the loader)
        if not path.exists():
            return f"{key}={value!r} does not exist and no run of this plan writes it"
        info = path / "run.json"
        if path.is_dir() and info.is_file() and not (path / "checkpoint.safetensors").is_file():
            if json.loads(info.read_text(encoding="utf-8") or "{}").get("status") == "complete":
                return (
                    f"{key}={value!r}: that run is complete but its checkpoint.safetensors "
                    f"is missing; run it again (vlsm run ... --only {path.name} --force)"
                )
    return None


def problems(run, planned: set[str] = frozenset(), suites: set[str] = frozenset()) -> list[str]:
    """What is wrong with one run's parameters (empty: nothing); ``planned``: the run folders
    the plan will write, ``suites``: their suite folders."""
    defaults = notebook_defaults(run.notebook)
    found = [
        _type_problem(k, v, defaults.get(k)) for k, v in run.params.items() if k not in INJECTED
    ]
    found += [_train_problem(run.params), _model_problem(run.params)]
    found += [_prompt_problem(run.params), _name_problem(run.params)]
    found += [_checkpoint_problem(run.params, planned, suites)]
    return [p for p in found if p]


def check_plan(planned) -> None:
    """Raise ValueError listing every run with a problem (``problems``) before any starts."""
    folders = {str(run.run_dir) for _, runs in planned for run in runs}
    suites = {str(Path(f).parents[1]) for f in folders}  # once, not once per run
    bad = [
        (s, run, p) for s, runs in planned for run in runs for p in problems(run, folders, suites)
    ]
    if bad:
        lines = [f"{s.source}: {run.run_id}: {p}" for s, run, p in bad[:20]]
        more = f"\n... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise ValueError("parameters refused before any run started:\n" + "\n".join(lines) + more)
