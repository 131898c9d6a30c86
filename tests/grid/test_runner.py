"""The runner: grids, run ids, key checks, needs, skip, failures, Dask; paper grid counts."""

import json
from pathlib import Path

import nbformat
import pytest

from vlsm_lib import paths
from vlsm_lib.cli import main
from vlsm_lib.grid import rehearsal
from vlsm_lib.grid.runner import expand, load_study, plan, run_local
from vlsm_lib.models import list_models
from vlsm_lib.results import parse_run_id, read_run, run_id


def _notebook(folder: Path) -> Path:
    book = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('x = 1\nfail = False\nrun_dir = ""\ndata_root = ""')
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "from vlsm_lib.results import save_run\n"
        "assert not fail, 'asked to fail'\n"
        "save_run(run_dir, {'x': x}, metrics={'x': x})"
    )
    book.cells = [params, body]
    book.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = folder / "tiny.ipynb"
    nbformat.write(book, path)
    return path


def _params(folder: Path, name: str, text: str) -> Path:
    path = folder / "suite" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_run_ids_parse_back():
    rid = run_id(
        "finetune",
        {"model": "clipseg", "dataset": "synth_polyp", "prompt": "p6", "seed": 42, "lr": 0.001},
    )
    assert rid == "finetune__clipseg__synth_polyp__p6__s42__lr-0.001"
    assert parse_run_id(rid, tuple(list_models())) == {
        "study": "finetune",
        "model": "clipseg",
        "dataset": "synth_polyp",
        "prompt": "p6",
        "seed": 42,
        "lr": "0.001",
    }
    with pytest.raises(ValueError, match="cannot go into a run id"):
        run_id("finetune", {"weights": "outputs/x"})


def test_runs_that_differ_in_more_than_their_seed_cannot_share_a_configuration(tmp_path, outputs):
    """Two grid entries whose runs differ only by the seed in their ids but by a fixed value
    too would be averaged as the seeds of one configuration: refused, naming the key."""
    nb = _notebook(tmp_path)
    book = nbformat.read(nb, as_version=4)
    book.cells[0].source += "\nseed = 0"
    nbformat.write(book, nb)
    text = f"""
notebook: {nb}
grid:
  - {{x: [1], seed: [41, 42]}}
  - {{x: [1], seed: [43], fixed: {{fail: true}}}}
"""
    with pytest.raises(ValueError, match=r"s__x-1__s41 and s__x-1__s43 differ in fail besides"):
        expand(load_study(_params(tmp_path, "s", text)))
    same = text.replace("fixed: {fail: true}", "fixed: {fail: false}")
    study = load_study(
        _params(tmp_path, "s", same.replace("notebook", "defaults: {fail: false}\nnotebook"))
    )
    assert [r.run_id for r in expand(study)] == ["s__x-1__s41", "s__x-1__s42", "s__x-1__s43"]


def test_grids_expand_with_lists_fixed_values_and_placeholders(tmp_path, outputs):
    nb = _notebook(tmp_path)
    study = load_study(
        _params(
            tmp_path,
            "s",
            f"""
notebook: {nb}
defaults: {{fail: false}}
grid:
  - {{x: [1, 2]}}
  - {{x: [3], fixed: {{fail: "{{suite_dir}}/a/{{x}}"}}}}
""",
        )
    )
    runs = expand(study, outputs)
    assert [r.run_id for r in runs] == ["s__x-1", "s__x-2", "s__x-3"]
    assert runs[2].params["fail"] == f"{outputs}/suite/a/3"
    assert runs[0].params["run_dir"] == str(outputs / "suite" / "s" / "s__x-1")


def test_unknown_keys_are_refused_with_the_notebook_parameters(tmp_path, outputs):
    nb = _notebook(tmp_path)
    path = _params(tmp_path, "s", f"notebook: {nb}\ngrid: {{y: [1]}}\n")
    with pytest.raises(KeyError, match=r"no parameter\(s\) \['y'\].*'fail'"):
        plan([path])
    bad = _params(tmp_path, "t", f"notebook: {nb}\ngird: {{x: [1]}}\n")
    with pytest.raises(KeyError, match="unknown key"):
        plan([bad])
    kind = _params(tmp_path, "k", f"notebook: {nb}\nkind: fintune\n")
    with pytest.raises(ValueError, match="unknown kind 'fintune'; valid: medshapes, pretrain"):
        plan([kind])


def test_needs_must_be_complete_or_in_the_same_invocation(tmp_path, outputs):
    nb = _notebook(tmp_path)
    later = _params(tmp_path, "later", f"notebook: {nb}\nneeds: [first]\n")
    with pytest.raises(RuntimeError, match="run params/suite/first.yaml first"):
        plan([later])
    first = _params(tmp_path, "first", f"notebook: {nb}\n")
    assert [s.name for s, _ in plan([later, first])] == ["first", "later"]


@pytest.mark.slow
def test_local_run_skips_complete_records_failures_and_goes_on(tmp_path, outputs, capsys):
    nb = _notebook(tmp_path)
    path = _params(tmp_path, "s", f"notebook: {nb}\ngrid: {{fail: [false, true]}}\n")
    statuses = run_local(plan([path]))
    assert statuses == {"s__fail-False": "complete", "s__fail-True": "failed"}
    failed = read_run(outputs / "suite" / "s" / "s__fail-True")
    assert failed["status"] == "failed" and "asked to fail" in failed["error"]
    # the notebook's parameter names (papermill's inspection), for
    # vlsm_lib.notebook.verbs.notebook_params
    done = read_run(outputs / "suite" / "s" / "s__fail-False")
    names = ["x", "fail", "run_dir", "data_root"]
    assert done["parameter_names"] == failed["parameter_names"] == names
    assert done["kind"] == "tiny"  # no kind: in the params file: the notebook's name
    assert (outputs / "suite" / "s" / "s__fail-False" / "notebook.html").is_file()
    assert (outputs / "suite" / "s" / "index.html").is_file()
    assert (outputs / "index.html").is_file()
    assert run_local(plan([path]))["s__fail-False"] == "skipped"
    assert main(["run", str(path)]) == 1  # a failed run makes the command fail
    assert "FAILED s__fail-True" in capsys.readouterr().out


@pytest.mark.slow
def test_dask_local_cluster_runs_studies_in_dependency_order(tmp_path, outputs):
    from vlsm_lib.grid.cluster import run_dask

    nb = _notebook(tmp_path)
    first = _params(tmp_path, "first", f"notebook: {nb}\ngrid: {{x: [1, 2]}}\n")
    later = _params(tmp_path, "later", f"notebook: {nb}\nneeds: [first]\n")
    statuses = run_dask(plan([later, first]), workers=2)
    assert set(statuses.values()) == {"complete"} and len(statuses) == 3
    start_later = read_run(outputs / "suite" / "later" / "later")["started"]
    ends_first = [
        read_run(outputs / "suite" / "first" / f"first__x-{x}")["finished"] for x in (1, 2)
    ]
    assert all(end <= start_later for end in ends_first)


@pytest.mark.slow
def test_dask_submits_higher_priority_studies_first(tmp_path, outputs, monkeypatch):
    """``priority:`` reaches Dask: a study's runs outrank lower studies, grid order inside."""
    from dask.distributed import Client

    from vlsm_lib.grid.cluster import run_dask

    nb = _notebook(tmp_path)
    low = _params(tmp_path, "low", f"notebook: {nb}\n")
    high = _params(tmp_path, "high", f"notebook: {nb}\npriority: 2\ngrid: {{x: [1, 2]}}\n")
    assert load_study(low).priority == 0 and load_study(high).priority == 2
    seen = {}
    submit = Client.submit

    def spy(self, fn, *args, key=None, priority=0, **kwargs):
        seen[key] = priority
        return submit(self, fn, *args, key=key, priority=priority, **kwargs)

    monkeypatch.setattr(Client, "submit", spy)
    assert set(run_dask(plan([low, high]), workers=1).values()) == {"complete"}
    assert seen["run-high__x-1"] > seen["run-high__x-2"] > seen["run-low"]


@pytest.mark.slow
def test_dask_runs_per_gpu_shares_a_gpu_and_pins_each_worker_to_its_own(tmp_path, outputs):
    """--runs-per-gpu 2 on 2 "GPUs" (CPU here): a worker per GPU declaring GPU=1 with two
    threads; two tasks asking for a half GPU each are in flight on one worker together; a run's
    task sets CUDA_VISIBLE_DEVICES to its worker's index."""
    import time

    from dask.distributed import Client

    from vlsm_lib.grid.cluster import _task, gpu_share, local_cluster
    from vlsm_lib.grid.runner import Run

    def meet(me: int) -> bool:  # in flight until the other task is too (or 20 s passed)
        (tmp_path / f"in-{me}").touch()
        deadline = time.monotonic() + 20
        while not (tmp_path / f"in-{1 - me}").exists():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    with local_cluster(runs_per_gpu=2, gpus=2) as cluster, Client(cluster) as client:
        workers = client.scheduler_info()["workers"]
        assert sorted((w["name"], w["nthreads"], w["resources"]) for w in workers.values()) == [
            (0, 2, {"GPU": 1}),
            (1, 2, {"GPU": 1}),
        ]
        first = next(a for a, w in workers.items() if w["name"] == 0)
        half = {"GPU": gpu_share(2)}
        futures = [
            client.submit(meet, i, resources=half, workers=[first], pure=False) for i in (0, 1)
        ]
        assert client.gather(futures) == [True, True]
        # a complete run is skipped without a kernel; its task still pins the worker's GPU
        run_dir = outputs / "suite" / "s" / "s"
        run_dir.mkdir(parents=True)
        (run_dir / "run.json").write_text(json.dumps({"status": "complete"}))
        run = Run("s", "s", "suite", Path("tiny.ipynb"), {}, run_dir)
        for address in workers:
            done = client.submit(_task, run, False, True, None, workers=[address], pure=False)
            assert done.result() == ("s", "skipped")
        seen = client.run(lambda: __import__("os").environ.get("CUDA_VISIBLE_DEVICES"))
        assert {workers[a]["name"]: gpu for a, gpu in seen.items()} == {0: "0", 1: "1"}


def test_dask_gpu_shares_fit_exactly_n_runs_per_gpu():
    """N shares of a GPU fit on GPU=1 and N + 1 do not, for every N (1/9 x 9 adds up to more
    than 1 in floating point; Dask subtracts each task's share from what is left)."""
    from vlsm_lib.grid.cluster import gpu_share

    for n in range(1, 65):
        left, fitted = 1.0, 0
        while left >= gpu_share(n) and fitted <= n:
            left, fitted = left - gpu_share(n), fitted + 1
        assert fitted == n
    with pytest.raises(ValueError, match="runs_per_gpu must be >= 1"):
        gpu_share(0)


def test_paper_grid_counts():
    counts: dict[str, int] = {}
    for study, runs in plan(sorted((paths.REPO_ROOT / "params" / "paper").glob("*.yaml"))):
        counts[study.name] = counts.get(study.name, 0) + len(runs)
    assert counts["zero_shot"] == 166  # CLIPSeg and CRIS x 83 (dataset, prompt) pairs
    assert counts["finetune"] == 332  # 4 VLSMs x 83 pairs
    assert counts["finetune_cnn"] == 30  # 3 CNNs x (8 datasets + 2 pooled sets)
    assert counts["domain_shift"] == 40  # 4 VLSMs x 10 prompts, pooled-polyp checkpoints
    files = json.dumps(
        {
            s.name: s.notebook.name
            for s, _ in plan(sorted((paths.REPO_ROOT / "params" / "paper").glob("*.yaml")))
        }
    )
    assert "statistics" in files
    kinds = {s.name: s.kind for s, _ in plan(sorted((paths.REPO_ROOT / "params").glob("*/*.yaml")))}
    assert kinds["finetune_cnn"] == kinds["finetune"] == "finetune"  # lands in Table 2
    assert kinds["transfer_modes"] == "transfer_modes" and kinds["pretrain"] == "pretrain"


def test_dry_run_prints_counts(capsys):
    assert main(["run", str(paths.REPO_ROOT / "params" / "paper"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "paper/zero_shot: 166 runs" in out and "paper/finetune: 332 runs" in out


REHEARSAL = rehearsal.OVERRIDES


def test_the_paper_suite_keeps_its_ids_needs_and_checkpoints_under_the_override_layer(tmp_path):
    files = sorted((paths.REPO_ROOT / "params" / "paper").glob("*.yaml"))
    paper = plan(files, outputs=tmp_path)
    rehearsed = plan(files, outputs=tmp_path, suite="paper_rehearsal", overrides=REHEARSAL)
    ids = [[r.run_id for r in runs] for _, runs in paper]
    assert [[r.run_id for r in runs] for _, runs in rehearsed] == ids  # same runs, same order
    folders = {str(r.run_dir) for _, runs in rehearsed for r in runs}
    assert all(f.startswith(str(tmp_path / "paper_rehearsal")) for f in folders)
    references = 0
    for _, runs in rehearsed:
        for run in runs:
            for key in ("weights", "checkpoint"):
                value = run.params.get(key)
                if isinstance(value, str) and value.startswith(str(tmp_path)):
                    references += 1  # a checkpoint of another study of the same suite
                    assert value in folders, f"{run.run_id}: {key} {value} is not a planned run"
                    assert key not in run.overrides
                elif key in run.params and key == "weights":
                    assert value == "" and run.overrides["weights"] == ""
            if "size" in run.params:
                assert run.params["size"] == "tiny" and run.overrides["size"] == "tiny"
    linked = sum(
        len(runs) for s, runs in rehearsed if s.name in ("domain_shift", "prompt_ablation")
    )
    assert references == linked  # every checkpoint a domain-shift or ablation run starts from
    assert rehearsed[-1][0].name == "statistics"  # needs respected: the statistics last


def test_an_override_no_planned_notebook_declares_is_refused(tmp_path, outputs):
    nb = _notebook(tmp_path)
    path = _params(tmp_path, "s", f"notebook: {nb}\ngrid: {{x: [1]}}\n")
    with pytest.raises(KeyError, match=r"--set max_epoch: no parameter .*'fail'"):
        plan([path], overrides={"max_epoch": 1})
    with pytest.raises(KeyError, match="run_dir and data_root are the runner's"):
        plan([path], overrides={"run_dir": "/elsewhere"})
    assert main(["run", str(path), "--set", "novalue", "--dry-run"]) == 2


@pytest.mark.slow
def test_overrides_reach_the_notebook_and_are_recorded_in_run_json(tmp_path, outputs):
    nb = _notebook(tmp_path)
    path = _params(tmp_path, "s", f"notebook: {nb}\ngrid: {{fail: [false]}}\n")
    assert main(["run", str(path), "--suite", "other", "--set", "x=7"]) == 0
    info = read_run(outputs / "other" / "s" / "s__fail-False")
    assert info["overrides"] == {"x": 7} and info["params"]["x"] == 7
