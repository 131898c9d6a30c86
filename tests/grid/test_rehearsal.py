"""The rehearsal of the paper suite: its slice covers what it says, and runs end to end."""

import json

import pandas as pd
import pytest

from vlsm_lib.cli import main
from vlsm_lib.data.sources.fakes import FAKES, REFERENCE_PROMPTS
from vlsm_lib.grid import rehearsal
from vlsm_lib.grid.runner import plan
from vlsm_lib.results import KINDS


def _datasets(run) -> set[str]:
    named = {run.params.get("dataset", "")} | set(str(run.params.get("test_sets", "")).split(","))
    return named & set(FAKES)


def test_the_slice_covers_every_study_value_and_the_checkpoints_its_runs_start_from(tmp_path):
    paper = plan(
        rehearsal.paper_params(),
        outputs=tmp_path,
        suite=rehearsal.SUITE,
        overrides=rehearsal.OVERRIDES,
    )
    sliced = rehearsal.slice_plan(paper)
    assert [s.name for s, _ in sliced] == [s.name for s, _ in paper]
    kept = {str(r.run_dir) for _, runs in sliced for r in runs}
    for (study, runs), (_, all_runs) in zip(sliced, paper):
        assert runs, f"{study.name}: no run in the slice"
        for key in rehearsal.COVERED:
            wanted = {repr(r.params.get(key)) for r in all_runs if key in r.params}
            assert {repr(r.params.get(key)) for r in runs if key in r.params} == wanted, key
        for run in runs:
            for value in run.params.values():
                if isinstance(value, str) and value.startswith(f"{tmp_path / rehearsal.SUITE}/"):
                    assert value in kept, f"{run.run_id} starts from {value}, not in the slice"
    assert set().union(*(_datasets(r) for _, runs in sliced for r in runs)) == set(FAKES)
    n = sum(len(r) for _, r in sliced)
    assert n < sum(len(r) for _, r in paper) / 5  # a slice, not the grid


def test_the_rehearsal_lists_its_runs_without_preparing_data(outputs, tmp_path, capsys):
    data = tmp_path / "data"
    args = ["rehearse", "--slice", "--data", str(data), "--dry-run", "--show", "0"]
    assert main([*args, "--executor", "dask", "--runs-per-gpu", "2"]) == 0
    out = capsys.readouterr().out
    sliced = sum(
        len(r)
        for _, r in rehearsal.slice_plan(
            plan(rehearsal.paper_params(), suite=rehearsal.SUITE, overrides=rehearsal.OVERRIDES)
        )
    )
    assert f"total: {sliced} runs" in out and "total: 4 runs" in out  # the paper-size finetunes
    assert not data.exists()
    assert main(["rehearse", "--dry-run", "--no-paper-size", "--data", str(data)]) == 0
    assert "total: 1093 runs" in capsys.readouterr().out


@pytest.mark.slow
def test_the_rehearsal_slice_runs_end_to_end_into_table_2_beside_the_paper(outputs, tmp_path):
    """`vlsm rehearse --slice`: the fakes prepared, every notebook kind, all 11 datasets, the
    paper-size finetunes and the statistics run, every run complete."""
    data = tmp_path / "rehearsal_data"
    assert main(["rehearse", "--slice", "--data", str(data)]) == 0
    runs = [json.loads(p.read_text()) for p in outputs.glob("*/*/*/run.json")]
    planned = rehearsal.plans(data, sliced=True)
    assert len(runs) == sum(len(r) for part in planned for _, r in part)
    assert {r["status"] for r in runs} == {"complete"}
    paper = [r for r in runs if r["suite"] == rehearsal.SUITE]
    assert {r["kind"] for r in paper} == {s.kind for s, _ in planned[0]} and len(KINDS) > 1
    assert all(r["overrides"]["size"] == "tiny" for r in paper if "size" in r["params"])
    assert any(r["params"]["data_root"] == str(data / REFERENCE_PROMPTS) for r in paper)
    sized = [r for r in runs if r["suite"] == rehearsal.PAPER_SIZE_SUITE]
    assert sorted(r["params"]["model"] for r in sized) == sorted(
        ["clipseg", "biomedclipseg", "biomedclipseg_d", "cris"]
    )
    for r in sized:
        metrics = json.loads(
            (outputs / r["suite"] / r["study"] / r["run_id"] / "metrics.json").read_text()
        )
        assert r["params"]["size"] == "paper" and metrics["epochs"] == 1
    results = outputs / rehearsal.SUITE / "statistics" / "statistics" / "results"
    grid = pd.read_csv(results / "table2_grid.csv")
    assert set(FAKES) <= set(grid.columns)  # every test set of Table 2
    table2 = pd.read_csv(results / "table2.csv")
    assert table2["paper_dice"].notna().sum() > 10 and set(table2["test_set"]) == set(FAKES)
    assert (results / "findings.csv").is_file() and (outputs / "index.html").is_file()
