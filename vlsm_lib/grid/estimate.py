"""How long a grid takes, before it is launched: ``vlsm run ... --dry-run --estimate``.

Per run, in seconds::

    seconds = F + E × (n_train / r_train + n_val / r_fwd) + P × n_test / r_fwd

- F: the fixed cost per run (kernel start, imports, HTML): ``--fixed-seconds``, default 2.0 s,
  the order of the lean start's cost per run; ``benchmarks/grid.py`` measures it on a machine
  (its ``fixed`` grid), and benchmarks/README.md keeps what it measured where.
- E: a finetune's epochs: ``--epochs`` when given (those expected under early stopping, at most
  max_epochs), else min(max_epochs, min_epochs + patience): a model that stops improving by
  min_epochs, then waits out its patience. 0 for notebooks that do not train.
- n_train: images per epoch (the whole training split, as a train_fraction repeats its records;
  at most max_steps_per_epoch × batch_size when set); n_val: the validation split; n_test: the
  run's test sets together (a pooled name counts its members); counts from ``data.counts``
  (the dataset on disk, else the paper's; neither: unknown, left out of the total and named).
- r_train: cached_img_s of the bench file when the run's train policy keeps the image tower
  frozen and cached (``cacheable_parts()`` holds "image": decoder, text_prompt; no augment,
  feature_cache not off; never CNNs), else train_img_s (also visual_prompt, which caches only
  the text). r_fwd: fwd_img_s. A model's bench row: the one of the run's policy, else its first.
- P: passes over the test sets: zero_shot, finetune, domain_shift 1; prompt_ablation the prompt
  levels + the perturbation cases (1 + attributes × 2 modes) + the 4 prompt-use conditions
  (``evaluate``'s three sweeps; its few qualitative images left out); statistics, medshapes 0.

Shared feature store (``store=True``; ``--no-store``: off, the formula as written): runs whose
model keeps an image tower of the same weights frozen (zero-shot and prompt-ablation runs of
every VLSM, which freeze the whole model; decoder finetunes and the evaluations of their
checkpoints; BiomedCLIPSeg and -D share a tower) share its
outputs, so a pass over a split that such a run already encoded only decodes, at
r_cached_fwd = 3 × cached_img_s (a cached training step is forward + backward, about 3
forward-equivalents: an approximation). Only the first pass pays r_fwd.

Packing (``--runs-per-gpu N`` on ``--gpus G``): wall = total / (N × G), which assumes that runs
sharing a GPU do not slow each other: an optimistic bound. N × the largest peak memory of the
plan's models (train_peak_mb if it trains in the plan, else fwd_peak_mb, at the bench's batch
size) is checked against 90 % of ``--gpu-memory-gb`` (headroom for the CUDA context).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pandas as pd

from vlsm_lib import paths
from vlsm_lib.data.counts import level_count, split_size
from vlsm_lib.data.pooled import members
from vlsm_lib.engine.bench import check_models, load, usable
from vlsm_lib.engine.config import comma_list
from vlsm_lib.models import MODELS, create_model
from vlsm_lib.results import TRAINS

FIXED_SECONDS = 2.0
CACHED_FWD = 3.0  # forward-equivalents in a cached training step (r_cached_fwd = 3 × cached)
HEADROOM = 0.9  # the share of a card's memory runs may fill
EVALUATES = ("zero_shot", "finetune", "prompt_ablation", "domain_shift")


def rates(bench, model: str, policy: str = "") -> dict:
    """{fwd, train, cached, cached_fwd} in images/s for ``model``; cached NaN when unmeasured."""
    rows = usable(bench, model)
    same = rows[rows["train"] == policy] if policy and "train" in rows else rows.iloc[:0]
    row = (same if len(same) else rows).iloc[0]
    cached = rows["cached_img_s"].dropna() if "cached_img_s" in rows else pd.Series([])
    r = {"fwd": float(row["fwd_img_s"]), "train": float(row["train_img_s"])}
    r["cached"] = float(cached.iloc[0]) if len(cached) else math.nan
    r["cached_fwd"] = CACHED_FWD * r["cached"]
    return r


@functools.cache
def _policy(model: str, train: str) -> tuple[str, bool]:
    """(the policy ``train`` names, "" the model's default; whether it keeps the image tower
    frozen, so that its outputs can be cached: ``cacheable_parts()`` holds "image")."""
    built = create_model(model, size="tiny", train=train or None)
    return built.policy, "image" in built.cacheable_parts()


@functools.cache
def _has_towers(model: str) -> bool:
    """Whether the model has encoder towers: a run that trains nothing freezes them all
    (``notebook.verbs.inference_model``), so they can come from the store."""
    return bool(create_model(model, size="tiny").encoder_prefixes)


def _settings(run) -> dict:
    from vlsm_lib.grid.preflight import notebook_defaults

    return {**notebook_defaults(run.notebook), **run.params}


def _trained(weights, by_dir: dict) -> tuple[str, str, str] | None:
    """(model, train policy, the weights it started from) of the run whose checkpoint
    ``weights`` names: a run of the plan or a run folder on disk (its model.json); else None."""
    run = by_dir.get(str(weights))
    if run is not None:
        p = _settings(run)
        return p["model"], p.get("train") or "", p.get("weights") or ""
    meta = Path(str(weights)) / "model.json"
    if str(weights) and meta.is_file():
        info = json.loads(meta.read_text(encoding="utf-8"))
        return info["name"], info.get("train") or "", info.get("weights") or ""
    return None


def _tower(weights, by_dir: dict) -> str:
    """Where the image tower of a model loaded from ``weights`` comes from: the weights its
    checkpoint's run started from when that run kept the tower frozen, else the checkpoint."""
    trained = _trained(weights, by_dir)
    if trained is None or not _policy(*trained[:2])[1]:
        return str(weights)
    return _tower(trained[2], by_dir)


def work(run, by_dir: dict, epochs: int | None = None) -> dict:
    """What one run does: model, policy, cached (trains from cached features), store (the key
    of its image tower in the shared store; None: it does not use the store), epochs, train
    (names, split, images per epoch cap), evals [(names, split, passes)], passes (P)."""
    p, kind = _settings(run), run.kind or run.notebook.stem
    kind = "finetune" if kind in TRAINS else kind  # a pretrain or transfer-mode run trains alike
    w = {"model": p.get("model") or "", "policy": "", "cached": False, "store": None}
    w.update(epochs=0, train=None, evals=[], passes=0, levels_unknown=False)
    if kind not in EVALUATES or not p.get("model"):
        return w
    root, test = p.get("data_root") or paths.data_root(), p.get("test_split", "test")
    weights = p.get("checkpoint") if kind == "domain_shift" else p.get("weights", "")
    # the policy the notebook builds its model with: its train parameter (finetune), the
    # checkpoint's (domain_shift: load_checkpoint), else the model's default (build_model)
    train = (_trained(weights, by_dir) or ("", ""))[1] if kind == "domain_shift" else ""
    w["policy"], frozen = _policy(p["model"], p.get("train", train) or train)
    if kind in ("zero_shot", "prompt_ablation"):  # they train nothing: the model is frozen
        frozen = _has_towers(p["model"])
    if kind == "finetune":
        cached = frozen and not p.get("augment") and p.get("feature_cache") != "off"
        e = min(p["max_epochs"], p["min_epochs"] + p["patience"] if epochs is None else epochs)
        cap = p["max_steps_per_epoch"] * p["batch_size"] if p.get("max_steps_per_epoch") else 0
        names, tests = members(p["dataset"]), _tests(p["test_sets"] or p["dataset"])
        w.update(cached=cached, epochs=e, train=(names, "train", cap))
        w["evals"] = [(names, p["val_split"], e), (tests, test, 1)]
        frozen = cached
    elif kind == "prompt_ablation":
        from vlsm_lib.data.perturb import MODES
        from vlsm_lib.engine.evaluate import USE_CONDITIONS

        levels = p["levels"]
        n = level_count(root, p["dataset"], test) if levels == "all" else len(comma_list(levels))
        cases = 1 + len(comma_list(p["attributes"])) * len(MODES)
        w["levels_unknown"] = n is None
        w["evals"] = [(_tests(p["dataset"]), test, (n or 0) + cases + len(USE_CONDITIONS))]
    else:  # zero_shot, domain_shift: each test set once
        w["evals"] = [(_tests(p["dataset"] if kind == "zero_shot" else p["targets"]), test, 1)]
    family = MODELS[p["model"]][:2]  # BiomedCLIPSeg and -D: one tower, one set of entries
    options = json.dumps(p.get("model_options") or {}, sort_keys=True)
    w["store"] = (family, _tower(weights, by_dir), options, str(root)) if frozen else None
    w.update(root=root, passes=w["evals"][-1][2])  # the last: the test sets
    return w


def _tests(names: str) -> list[str]:
    return [m for name in comma_list(names) for m in members(name)]


def estimate(planned, bench, fixed_seconds=FIXED_SECONDS, epochs=None, store=True):
    """One row per run: run_id, study, model, policy, cached, n_train, n_val, n_test, epochs,
    passes, seconds, unknown (splits left out: no data on disk, no paper count). ``attrs``
    ["notes"]: models whose cached rate the bench file lacks (counted at train_img_s)."""
    source = bench.attrs.get("source", "FILE.csv")
    check_models(bench, plan_models(planned), plan_size(planned), source)
    by_dir = {str(r.run_dir): r for _, runs in planned for r in runs}
    encoded, rows, notes, memo = set(), [], set(), {}
    for study, runs in planned:
        for run in runs:
            w = work(run, by_dir, epochs)
            seconds, unknown = fixed_seconds, []
            if w["levels_unknown"]:
                unknown.append(f"prompt levels of {run.params['dataset']}")
            row = {"run_id": run.run_id, "study": f"{study.suite}/{study.name}"}
            row.update(model=w["model"], policy=w["policy"], n_train=0, n_val=0, n_test=0)
            if w["evals"]:
                key = (w["model"], w["policy"])
                r = memo[key] = memo.get(key) or rates(bench, *key)
                if math.isnan(r["cached"]):  # benched without its cached phase: no cache, no store
                    notes.update([w["model"]] if w["cached"] else [])
                    w["cached"], w["store"] = False, None
                seconds += _seconds(w, r, row, unknown, encoded if store else None)
            row.update(cached=w["cached"], epochs=w["epochs"], passes=w["passes"])
            rows.append({**row, "seconds": seconds, "unknown": ", ".join(dict.fromkeys(unknown))})
    table = pd.DataFrame(rows)
    table.attrs["notes"] = sorted(notes)
    return table


def _seconds(w: dict, r: dict, row: dict, unknown: list, encoded: set | None) -> float:
    """The formula's terms after F for one run; fills ``row``'s image counts. ``encoded``:
    the store's (tower, dataset, split) keys so far; None: no store."""
    seconds = 0.0
    if w["train"]:
        names, split, cap = w["train"]
        n = sum(_count(w["root"], name, split, unknown) for name in names)
        row["n_train"] = min(n, cap) if cap else n
        seconds += w["epochs"] * row["n_train"] / (r["cached"] if w["cached"] else r["train"])
    for i, (names, split, passes) in enumerate(w["evals"]):
        column = "n_val" if w["train"] and i == 0 else "n_test"
        for name in names:
            n = _count(w["root"], name, split, unknown)
            row[column] += n
            fresh = passes
            if encoded is not None and w["store"] is not None:
                key = (*w["store"], name, split)
                fresh = 0 if key in encoded else min(passes, 1)
                encoded.add(key)
            seconds += n * fresh / r["fwd"]
            if passes > fresh:  # decoded from the store (never reached without a cached rate)
                seconds += n * (passes - fresh) / r["cached_fwd"]
    return seconds


def _count(root, name: str, split: str, unknown: list[str]) -> int:
    n = split_size(root, name, split)
    if n is None:
        unknown.append(f"{name} ({split})")
    return n or 0


def plan_models(planned) -> list[str]:
    """The models the plan's runs train or evaluate, in plan order."""
    runs = [r for _, rs in planned for r in rs if r.notebook.stem in EVALUATES]
    return list(dict.fromkeys(r.params["model"] for r in runs if r.params.get("model")))


def plan_size(planned) -> str:
    """The model size most runs ask for (paper for the paper suite)."""
    sizes = [r.params["size"] for _, runs in planned for r in runs if "size" in r.params]
    return max(set(sizes), key=sizes.count) if sizes else "paper"


def load_bench(files, planned) -> pd.DataFrame:
    """The bench table of the plan's models; ``attrs["source"]``: where from (``bench.load``)."""
    return load(files, plan_models(planned), plan_size(planned))


def as_text(
    planned, bench, gpu="", runs_per_gpu=1, gpus=1, memory_gb=None, store=True, **formula
) -> str:
    """The estimate as plain text: hours per study with and without the store, serial and
    packed totals, the rates used per model, warnings. ``formula``: fixed_seconds, epochs."""
    both = {on: estimate(planned, bench, store=on, **formula) for on in (True, False)}
    used = both[store]
    epochs, source = formula.get("epochs"), bench.attrs.get("source", "a bench table")
    lines = [
        f"estimate for {gpu or 'the bench device'} from {source}: seconds per run = F + E × "
        f"(n_train / r_train + n_val / r_fwd) + P × n_test / r_fwd; F = "
        f"{formula.get('fixed_seconds', FIXED_SECONDS):g} s, E = "
        + (f"{epochs} (--epochs)" if epochs else "min(max_epochs, min_epochs + patience)")
    ]
    hours = pd.DataFrame({"runs": used.groupby("study", sort=False).size()})
    for on, name in ((True, "GPU-h"), (False, "GPU-h without store")):
        hours[name] = (both[on].groupby("study", sort=False)["seconds"].sum() / 3600).round(2)
    lines.append(hours.to_string())
    serial, other = (both[on]["seconds"].sum() / 3600 for on in (store, not store))
    lines += [
        f"serial: {serial:.2f} GPU-hours for {len(used)} runs, feature store "
        f"{'on' if store else 'off'} ({'off' if store else 'on'}: {other:.2f})",
        f"packed: {runs_per_gpu} run(s) per GPU on {gpus} GPU(s): "
        f"{serial / runs_per_gpu / gpus:.2f} hours wall (assumes runs sharing a GPU do not slow "
        "each other: an optimistic bound)",
    ]
    lines += _models(used, bench, runs_per_gpu, memory_gb)
    for model in used.attrs["notes"]:
        lines.append(
            f"note: the bench has no cached_img_s for {model}: its cached runs count at "
            f"train_img_s, without the store (bench it with --models {model} --train decoder)"
        )
    unknown = used[used["unknown"] != ""]
    if len(unknown):
        names = ", ".join(dict.fromkeys(n for u in unknown["unknown"] for n in u.split(", ")))
        lines.append(
            f"WARNING: unknown image counts (not under {paths.data_root()}, no paper count): "
            f"{names}; the total leaves them out (runs concerned: {len(unknown)}). Prepare them "
            "(vlsm data prepare NAME ...) to count them."
        )
    return "\n".join(lines)


def _models(used, bench, runs_per_gpu, memory_gb) -> list[str]:
    """The per-model table (rates used, peak memory, runs, hours) and the memory check."""
    rows = []
    for model, runs in used[used["model"] != ""].groupby("model", sort=False):
        r, row = rates(bench, model), usable(bench, model).iloc[0]
        peak = row.get("train_peak_mb" if (runs["epochs"] > 0).any() else "fwd_peak_mb")
        hours = runs["seconds"].sum() / 3600
        rows.append([model, row.get("batch"), *r.values(), peak, len(runs), hours])
    if not rows:
        return []
    speeds = [f"{k}_img_s" for k in r]  # fwd, train, cached, cached_fwd
    table = pd.DataFrame(rows, columns=["model", "batch", *speeds, "peak_mb", "runs", "GPU-h"])
    lines = [
        "per model (images/s at the bench's batch; peak_mb: train_peak_mb when the model "
        "trains in this plan, else fwd_peak_mb):",
        table.round(2).to_string(index=False, na_rep="-"),
    ]
    peak = pd.to_numeric(table["peak_mb"]).max()
    card = HEADROOM * memory_gb * 1e9 / 2**20 if memory_gb else math.nan
    if runs_per_gpu * peak > card:  # False when either is unknown (NaN)
        lines.append(
            f"WARNING: {runs_per_gpu} runs x {peak:.0f} MiB exceed 90 % of {memory_gb:g} GB; "
            f"the most that fit: --runs-per-gpu {max(int(card // peak), 1)}"
        )
    return lines
