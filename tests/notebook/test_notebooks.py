"""Every notebook: a thin report (one import cell, one parameters cell, no logic, no outputs);
every params key is a notebook parameter; all notebooks execute with the smoke params."""

import ast
import dataclasses
import json
import re

import pandas as pd
import papermill
import pytest

from vlsm_lib import paths
from vlsm_lib.engine.config import TrainConfig, finetune_config
from vlsm_lib.files import write_json
from vlsm_lib.grid.runner import plan, run_local
from vlsm_lib.notebook import verbs
from vlsm_lib.results import gather, read_run

NOTEBOOKS = sorted((paths.REPO_ROOT / "notebooks").glob("*.ipynb"))
SUITES = ["smoke", "demo", "paper"]
# What belongs in vlsm_lib, not in a cell: definitions, loops, comprehensions, lambdas.
LOGIC = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Lambda,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
)


def _source(cell) -> str:
    return "".join(cell["source"])  # stored as a list of lines


def _code(cell) -> str:
    # IPython magics and shell escapes are not Python; the checks concern Python code
    return "\n".join(
        line for line in _source(cell).splitlines() if not line.lstrip().startswith(("%", "!"))
    )


def _defaults(notebook) -> dict:
    """The parameters cell's values, as papermill inspects them."""
    found = papermill.inspect_notebook(str(notebook))
    return {name: ast.literal_eval(p["default"]) for name, p in found.items()}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_a_thin_report(path):
    book = json.loads(path.read_text())
    cells = book["cells"]
    assert cells[0]["cell_type"] == "markdown" and _source(cells[0]).startswith("# ")
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one parameters cell"
    code = [c for c in cells if c["cell_type"] == "code"]
    trees = [ast.parse(_code(c)) for c in code]
    imports = [
        c
        for c, tree in zip(code, trees)
        if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree))
    ]
    assert imports == [cells[1]], "all imports in one cell, right after the title"
    assert cells[2] is tagged[0], "the parameters cell follows the imports"
    for cell, tree in zip(code, trees):
        assert not cell.get("outputs") and cell.get("execution_count") is None, "no outputs"
        logic = [type(n).__name__ for n in ast.walk(tree) if isinstance(n, LOGIC)]
        assert not logic, f"{path.name}: {logic} belong in vlsm_lib, not in a cell"
    assert "verbs.save(" in _source(cells[-1]), "the last cell saves the run"
    sections = [c for c in cells if c["cell_type"] == "markdown" and _source(c).startswith("## ")]
    assert len(sections) >= 3 and _source(sections[-1]).startswith("## Save"), "sections"
    text = "".join(_source(c) for c in code)
    assert text.count(f"notebooks/{path.name}") == 1, "the notebook names itself once (setup)"


def test_finetune_parameters_are_the_run_keys_and_every_train_config_field():
    defaults = _defaults(paths.REPO_ROOT / "notebooks" / "finetune.ipynb")
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= set(defaults)
    assert finetune_config(defaults).lr == defaults["lr"]
    with pytest.raises(KeyError, match=r"'lr_decay'.*TrainConfig: lr, weight_decay"):
        finetune_config({**defaults, "lr_decay": 0.5})


def test_notebook_params_names_come_from_the_runner_or_from_papermill(tmp_path):
    namespace = {"run_dir": tmp_path, "seed": 1, "lr": 0.1, "helper": 3}
    write_json(tmp_path / "run.json", {"parameter_names": ["seed", "lr"]})  # as the runner does
    assert verbs.notebook_params(namespace, "notebooks/finetune.ipynb") == {"seed": 1, "lr": 0.1}
    (tmp_path / "run.json").unlink()  # a kernel started by hand: papermill inspects the notebook
    found = verbs.notebook_params(namespace, "notebooks/finetune.ipynb")
    assert found == {"run_dir": tmp_path, "seed": 1, "lr": 0.1}


def test_interactive_defaults_name_runs_of_the_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("VLSM_OUTPUTS", str(tmp_path))
    demo = sorted((paths.REPO_ROOT / "params" / "demo").glob("*.yaml"))
    run_dirs = {str(r.run_dir) for _, runs in plan(demo, outputs=tmp_path) for r in runs}
    run_dirs.add(str(tmp_path / "demo"))  # the statistics notebook gathers the whole suite
    named = []
    for path in NOTEBOOKS:
        for value in _defaults(path).values():
            if isinstance(value, str) and verbs.OUTPUTS in value:
                named.append(value.replace(verbs.OUTPUTS, str(tmp_path)))
    assert named and set(named) <= run_dirs
    with pytest.raises(FileNotFoundError, match="run `make study` first"):
        verbs.resolve(f"{verbs.OUTPUTS}/demo/finetune/none")
    assert verbs.resolve("pretrained") == "pretrained" and verbs.resolve("") == ""


@pytest.mark.parametrize("suite", SUITES)
def test_every_params_key_is_a_notebook_parameter(suite):
    files = sorted((paths.REPO_ROOT / "params" / suite).glob("*.yaml"))
    assert files
    planned = plan(files)  # raises on unknown keys, bad grids, missing notebooks
    assert sum(len(runs) for _, runs in planned) > 0
    used = {s.notebook.name for s, _ in planned}
    if suite != "paper":
        assert used == {p.name for p in NOTEBOOKS}, "the suite exercises every notebook"


@pytest.mark.slow
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
    summary = run_dirs["statistics"] / "results" / "summary.csv"
    assert summary.is_file() and pd.read_csv(summary).shape[0] > 0
    for name in verbs.STATISTICS_TABLES:  # what the notebook declares it saves, it saved
        for suffix in ("csv", "md", "tex"):
            assert (summary.parent / f"{name}.{suffix}").is_file(), f"{name}.{suffix}"
    for name in verbs.STATISTICS_FIGURES:
        for suffix in ("png", "svg"):
            assert (summary.parent / f"{name}.{suffix}").is_file(), f"{name}.{suffix}"
    page = suite / "results.md"  # the results page, generated from those files
    text = page.read_text()
    assert text.startswith("# Results of the smoke suite") and "## Table 2" in text
    for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
        assert (page.parent / image).is_file(), image
    assert "(results/table2_grid.md)" not in text and "| " in text  # tables inline
    modes = pd.read_csv(summary.parent / "transfer_modes.csv")
    # the decoder point is the finetune study's run (same data, prompt and weights)
    assert list(modes.policy) == ["zero-shot", "decoder", "text_prompt", "text_prompt", "lora"]
    assert modes.config.iloc[1] == "finetune__clipseg__synth_polyp__p6"
    assert modes.trainable_params.iloc[0] == 0 and modes.trainable_params.iloc[1:].gt(0).all()
    policies = pd.read_csv(summary.parent / "policy_tests.csv")
    assert set(policies.baseline) == {"zero_shot on synth_polyp", "decoder (the paper's)"}
    assert policies.n_clusters.gt(0).all()
    faults = pd.read_csv(summary.parent / "reference_faults.csv")
    assert faults.n_records.tolist() == [modes.images.iloc[0]]
    use = pd.read_csv(summary.parent / "prompt_use_index.csv")
    assert set(use["control"]) == {"empty", "shuffled", "other_class"}
    assert use["n_clusters"].gt(0).all() and use["use_index"].notna().all()
    for rid, run_dir in run_dirs.items():  # every report shows at least one figure
        assert "data:image/png;base64" in (run_dir / "notebook.html").read_text(), rid
    assert (tmp_path / "outputs" / "index.html").is_file()
