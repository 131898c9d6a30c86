"""The paper suite rehearsed, unchanged, at miniature scale (``vlsm rehearse``, ``make rehearsal``).

1. ``vlsm data fakes``: miniature fakes of the 11 official downloads, prepared by the real
   readers into a rehearsal data root (Kvasir a second time from stand-ins of the reference's
   annotation files, for the reference-faults study).
2. Every study file of ``params/paper`` as it is, under the override layer ``OVERRIDES`` (tiny
   models, random weights, one epoch) and in the suite ``paper_rehearsal``: run ids, ``needs:``
   and the checkpoints one study takes from another stay the paper's. It ends in the suite's
   statistics run (Table 2 beside the paper's numbers, findings, figures, the HTML index).
3. ``params/rehearsal``: one finetune of each VLSM at paper size (random weights built from the
   real configurations, 352 / 224 / 416 px, two training images, one epoch), in its own suite
   ``paper_size_rehearsal`` so that it never lands in the paper suite's tables.

``slice_plan`` keeps a slice of step 2 that the tests run in minutes: in each study the runs
that first bring a model, dataset, train policy or data root of the study (so every notebook
kind, all 11 datasets and every policy), the runs of other studies that those start from (the
prompt ablation's and the domain shift's checkpoints), and the statistics run.
"""

from __future__ import annotations

from pathlib import Path

from vlsm_lib import paths

SUITE = "paper_rehearsal"
PAPER_SIZE_SUITE = "paper_size_rehearsal"
OVERRIDES = {"size": "tiny", "weights": "", "max_epochs": 1, "min_epochs": 1, "model_options": {}}
# The parameters whose every value a slice covers in each study.
COVERED = ("model", "dataset", "train", "data_root")


def paper_params() -> list[Path]:
    return sorted((paths.REPO_ROOT / "params" / "paper").glob("*.yaml"))


def paper_size_params() -> list[Path]:
    return sorted((paths.REPO_ROOT / "params" / "rehearsal").glob("*.yaml"))


def slice_plan(planned: list) -> list:
    """A slice of ``planned`` (``runner.plan``'s list of (study, runs)), closed over the runs
    that the kept ones start from (module docstring); order and studies kept."""
    keep: set[str] = set()
    for _, runs in planned:
        seen: set[tuple] = set()
        for run in runs:
            pairs = {(k, repr(run.params.get(k))) for k in COVERED if k in run.params}
            if not pairs <= seen or not seen:
                keep.add(run.run_id)
                seen |= pairs
    by_id = {r.run_id: r for _, runs in planned for r in runs}
    by_dir = {str(r.run_dir): r.run_id for r in by_id.values()}
    todo = list(keep)
    while todo:  # the checkpoints the kept runs start from, and theirs
        run = by_id[todo.pop()]
        for value in run.params.values():
            source = by_dir.get(value) if isinstance(value, str) else None
            if source and source not in keep:
                keep.add(source)
                todo.append(source)
    return [(study, [r for r in runs if r.run_id in keep]) for study, runs in planned]


def prepare_data(data_root: Path) -> list[Path]:
    """Step 1: the 11 fakes prepared into ``data_root`` (kept when already there: the readers
    are deterministic, and a second rehearsal resumes)."""
    import tempfile

    from vlsm_lib.data.sources.fakes import FAKES, REFERENCE_PROMPTS, prepare_all

    wanted = [data_root / n / "dataset.json" for n in FAKES]
    wanted.append(data_root / REFERENCE_PROMPTS / "kvasir_polyp" / "dataset.json")
    if all(p.is_file() for p in wanted):
        return [p.parent for p in wanted]
    with tempfile.TemporaryDirectory(prefix="vlsm-fakes-") as scratch:
        return prepare_all(scratch, data_root)


def plans(data_root: Path, sliced: bool = False, paper_size: bool = True) -> list[list]:
    """The plans of steps 2 and 3 (step 3 left out with ``paper_size`` False), for data under
    ``data_root``."""
    from vlsm_lib.grid.runner import plan

    paper = plan(paper_params(), suite=SUITE, overrides=OVERRIDES, data_root=data_root)
    out = [slice_plan(paper) if sliced else paper]
    if paper_size:
        out.append(plan(paper_size_params(), suite=PAPER_SIZE_SUITE, data_root=data_root))
    return out
