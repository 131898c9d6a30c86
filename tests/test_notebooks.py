"""Every notebook: one parameters cell, no outputs, no def/class; all execute with smoke params."""

import ast
import json

import pandas as pd
import pytest

from vlsm_lib import paths
from vlsm_lib.results import gather, read_run
from vlsm_lib.runner import plan, run_local

NOTEBOOKS = sorted((paths.REPO_ROOT / "notebooks").glob("*.ipynb"))
SUITES = ["smoke", "demo", "paper"]


def _source(cell) -> str:
    return "".join(cell["source"])  # stored as a list of lines


def _code(cell) -> str:
    # IPython magics and shell escapes are not Python; the checks concern Python code
    return "\n".join(
        line for line in _source(cell).splitlines() if not line.lstrip().startswith(("%", "!"))
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_a_thin_report(path):
    book = json.loads(path.read_text())
    cells = book["cells"]
    assert cells[0]["cell_type"] == "markdown" and _source(cells[0]).startswith("# ")
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one parameters cell"
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        assert not cell.get("outputs") and cell.get("execution_count") is None, "no outputs"
        for node in ast.walk(ast.parse(_code(cell))):
            assert not isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
            ), f"{path.name}: logic belongs in vlsm_lib"
    assert "save_run(" in _source(cells[-1]), "the last cell saves the run"


@pytest.mark.parametrize("suite", SUITES)
def test_every_params_key_is_a_notebook_parameter(suite):
    files = sorted((paths.REPO_ROOT / "params" / suite).glob("*.yaml"))
    assert files
    planned = plan(files)  # raises on unknown keys, bad grids, missing notebooks
    assert sum(len(runs) for _, runs in planned) > 0
    used = {s.notebook.name for s, _ in planned}
    if suite != "paper":
        assert used == {p.name for p in NOTEBOOKS}, "the suite exercises every notebook"


def test_smoke_suite_executes_every_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("VLSM_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("VLSM_DATA", str(tmp_path / "data"))
    files = sorted((paths.REPO_ROOT / "params" / "smoke").glob("*.yaml"))
    statuses = run_local(plan(files))
    suite = tmp_path / "outputs" / "smoke"
    run_dirs = {p.parent.name: p.parent for p in suite.rglob("run.json")}
    assert set(run_dirs) == set(statuses)
    failed = {
        rid: read_run(run_dirs[rid]).get("error", "")[-800:]
        for rid, s in statuses.items()
        if s != "complete"
    }
    assert not failed, failed
    table = gather(suite)
    assert {"zero_shot", "finetune", "prompt_ablation", "domain_shift"} <= set(table.study)
    assert table.dice.between(0, 1).all()
    summary = run_dirs["statistics"] / "summary.csv"
    assert summary.is_file() and pd.read_csv(summary).shape[0] > 0
    for rid, run_dir in run_dirs.items():  # every report shows at least one figure
        assert "data:image/png;base64" in (run_dir / "notebook.html").read_text(), rid
    assert (tmp_path / "outputs" / "index.html").is_file()
