"""Lean run start: forked kernels started ahead, background reports; the same results as eager."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from vlsm_lib.grid import kernels
from vlsm_lib.grid.runner import expand, load_study, plan, run_local
from vlsm_lib.results import read_run

pytestmark = pytest.mark.slow  # kernels, fork servers, killed processes

REPO = Path(__file__).resolve().parents[2]


def _notebook(folder: Path) -> Path:
    """Imports, parameters, and a cell that records what its process looks like."""
    book = nbformat.v4.new_notebook()
    imports = nbformat.v4.new_code_cell("import os\nimport json")
    params = nbformat.v4.new_code_cell('x = 1\nrun_dir = ""\ndata_root = ""')
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import sys\n"
        "from vlsm_lib.results import save_run\n"
        "facts = {'x': x, 'pid': os.getpid(), 'ppid': os.getppid(), 'cwd': os.getcwd(),\n"
        "         'tqdm': os.environ.get('TQDM_DISABLE'), 'torch': 'torch' in sys.modules,\n"
        "         'defined': sorted(k for k in globals() if not k.startswith('_'))}\n"
        "print(json.dumps(facts))\n"
        "save_run(run_dir, {'x': x}, metrics=facts)"
    )
    book.cells = [nbformat.v4.new_markdown_cell("# t"), imports, params, body]
    book.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = folder / "facts.ipynb"
    nbformat.write(book, path)
    return path


def _grid(tmp_path: Path) -> Path:
    path = tmp_path / "suite" / "s.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"notebook: {_notebook(tmp_path)}\ngrid: {{x: [1, 2, 3]}}\n")
    return path


def _metrics(outputs: Path) -> dict[str, dict]:
    runs = sorted((outputs / "suite" / "s").glob("s__*"))
    return {r.name: json.loads((r / "metrics.json").read_text()) for r in runs}


def test_lean_runs_get_fresh_forked_kernels_and_their_reports(tmp_path, outputs):
    path = _grid(tmp_path)
    servers_before = set(Path(tempfile.gettempdir()).glob("vlsm-fork-*"))
    assert set(run_local(plan([path]), lean=True).values()) == {"complete"}
    facts = _metrics(outputs)
    # a fresh process per run, all children of one fork server (not of the runner)
    assert len({f["pid"] for f in facts.values()}) == 3
    assert len({f["ppid"] for f in facts.values()}) == 1
    assert all(f["ppid"] != os.getpid() for f in facts.values())
    # each run sees only its own cells' names (nothing leaks from another run or the warm-up)
    for f in facts.values():  # "facts" is assigned after globals() is read: a leak would show
        assert "facts" not in f["defined"] and {"os", "json", "x"} <= set(f["defined"])
        assert f["cwd"] == str(REPO) and f["tqdm"] == "1"
    for run in (outputs / "suite" / "s").glob("s__*"):
        assert (run / "notebook.html").is_file() and read_run(run)["status"] == "complete"
    assert (outputs / "suite" / "s" / "index.html").is_file()
    # the grid's fork server is gone, its folder removed
    assert set(Path(tempfile.gettempdir()).glob("vlsm-fork-*")) <= servers_before


BURN = "import time\nend = time.process_time() + 1.5\nwhile time.process_time() < end: pass\n"


def test_the_work_of_forked_kernels_is_accounted_to_the_runner(tmp_path, outputs):
    """Kernels stay in the runner's process tree: the CPU time of ``vlsm run`` as its parent
    sees it (``time``, a scheduler) holds what the kernels did, and no kernel is left to init."""
    path = tmp_path / "suite" / "s.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    book = nbformat.read(_notebook(tmp_path), as_version=4)
    book.cells.insert(3, nbformat.v4.new_code_cell(BURN))  # 1.5 s of CPU in each run's kernel
    nbformat.write(book, tmp_path / "burn.ipynb")
    path.write_text(f"notebook: {tmp_path / 'burn.ipynb'}\ngrid: {{x: [1, 2]}}\n")
    env = {**os.environ, "VLSM_OUTPUTS": str(outputs)}
    runner = subprocess.Popen(
        [sys.executable, "-m", "vlsm_lib.cli", "run", str(path)], env=env, cwd=REPO
    )
    _, status, usage = os.wait4(runner.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert usage.ru_utime + usage.ru_stime >= 3.0  # both kernels' 1.5 s, seen from outside
    facts = _metrics(outputs)
    assert len(facts) == 2
    for f in facts.values():  # each kernel has ended and was reaped in the runner's tree
        assert not Path(f"/proc/{f['pid']}").exists()


def test_a_child_subreaper_adopts_orphaned_descendants():
    code = (
        "import os, sys, time\n"
        "from vlsm_lib import lifetime\n"
        "assert lifetime.keep_descendants()\n"
        "if os.fork() == 0:\n"  # a child that forks a grandchild and dies before it
        "    if os.fork() == 0:\n"
        "        time.sleep(0.5); os._exit(0)\n"
        "    os._exit(0)\n"
        "time.sleep(0.2)\n"
        "print(lifetime.reap(wait_s=5))\n"  # the child, then the adopted grandchild
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2"]


def test_a_fork_server_whose_runner_is_gone_ends_and_cleans_up(tmp_path):
    """Even when its runner died during the server's imports (getppid() would then be 1)."""
    from vlsm_lib import lifetime

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    folder = tmp_path / "server"
    folder.mkdir()
    env = {**os.environ, lifetime.RUNNER_PID: str(gone.pid)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vlsm_lib.grid.forkserver",
            "serve",
            str(folder / "s.sock"),
            "x = 1",
        ],
        env=env,
        cwd=REPO,
    )
    assert server.wait(timeout=60) == 0
    assert not folder.exists()


def test_lean_and_eager_give_the_same_results(tmp_path, outputs, monkeypatch):
    path = _grid(tmp_path)
    run_local(plan([path]), lean=False)
    eager = _metrics(outputs)
    monkeypatch.setenv("VLSM_OUTPUTS", str(tmp_path / "lean"))
    run_local(plan([path]), lean=True)
    lean = _metrics(tmp_path / "lean")
    keep = ("x", "tqdm", "torch", "defined", "cwd")
    assert {k: {f: v[f] for f in keep} for k, v in eager.items()} == {
        k: {f: v[f] for f in keep} for k, v in lean.items()
    }


def test_a_report_that_fails_to_render_in_the_background_fails_its_run(
    tmp_path, outputs, monkeypatch
):
    import vlsm_lib.reports.run_page

    def broken(path, *args):
        raise RuntimeError("no template")

    monkeypatch.setattr(vlsm_lib.reports.run_page, "render_html", broken)
    statuses = run_local(plan([_grid(tmp_path)]), lean=True)
    assert set(statuses.values()) == {"failed"}
    info = read_run(outputs / "suite" / "s" / "s__x-1")
    assert info["status"] == "failed" and "HTML rendering failed: no template" in info["error"]
    assert (outputs / "suite" / "s" / "s__x-1" / "metrics.json").is_file()  # nothing lost


def test_warm_code_is_the_notebooks_imports_and_the_model_backend(tmp_path):
    nb = _notebook(tmp_path)
    code = kernels.warm_code(nb, "clipseg")
    assert code.startswith("import os\nimport json\n") and "x = 1" not in code
    assert "warm_up('clipseg')" in code and "exit_with_runner" in code
    assert "warm_up" not in kernels.warm_code(nb, "not-a-model")
    runs = expand(load_study(_grid(tmp_path)), tmp_path / "o", tmp_path / "d")
    assert kernels.grid_code(runs) == "import os\nimport json"  # once, whatever the runs


def test_a_zero_shot_cnn_run_imports_neither_transformers_nor_monai(tmp_path):
    """Heavy libraries load only where used: a CNN needs no transformers, and surface
    metrics off need no MONAI (what a zero-shot notebook run of a CNN executes)."""
    code = (
        "import sys\n"
        "from vlsm_lib.notebook import plots, verbs\n"
        "from vlsm_lib.engine.evaluate import evaluate_sets\n"
        "from vlsm_lib.results import METRICS, summarise\n"
        "from vlsm_lib.data.medshapes.synthetic import write_dataset\n"
        f"write_dataset('synth_polyp', {str(tmp_path)!r}, size=32, counts={{'test': 2}})\n"
        "model = verbs.build_model('unet', 'tiny').eval()\n"
        f"tests = verbs.test_sets({str(tmp_path)!r}, 'synth_polyp', model.preprocess, 'p6', 0)\n"
        "evaluate_sets(model, tests, surface=False)\n"
        "print(sorted(m for m in ('transformers', 'monai', 'open_clip') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
