"""Faults across the runner: two runners on one study, failing runs and `--failed`, stale runs
left by a dead process, resume state removed from complete runs. Each case runs real
processes (`vlsm run`) over a tiny notebook that logs every execution."""

import json
import os
import subprocess
import sys
import time

import nbformat
import pytest
import yaml

from vlsm_lib import lifetime, locks
from vlsm_lib.results import read_run, shown_status

pytestmark = pytest.mark.slow  # kernels, fork servers, killed processes

CELL = """import os, time
from pathlib import Path
with open(log, "a") as f:
    f.write(f"{Path(run_dir).name}\\n")
time.sleep(sleep)
if x == fail_at and Path(log + ".fail").exists():
    raise RuntimeError("planned failure")
(Path(run_dir) / "train_state.pt").write_bytes(b"resume state")
from vlsm_lib.results import save_run
save_run(run_dir, {"x": x, "run_dir": run_dir}, metrics={"x": x})"""


@pytest.fixture
def study(tmp_path):
    """A study of 3 runs over a notebook that logs each execution (one line per run id)."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        'run_dir = ""\ndata_root = ""\nx = 0\nsleep = 0.1\nfail_at = -1\nlog = ""'
    )
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(CELL)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, tmp_path / "logged.ipynb")
    log = tmp_path / "executions.log"
    spec = {
        "notebook": str(tmp_path / "logged.ipynb"),
        "defaults": {"log": str(log), "fail_at": 2},
        "grid": {"x": [1, 2, 3]},
    }
    (tmp_path / "faults").mkdir()
    (tmp_path / "faults" / "logged.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path, log


def vlsm(tmp_path, *args) -> subprocess.Popen:
    env = {
        **os.environ,
        "VLSM_OUTPUTS": str(tmp_path / "out"),
        "HF_HUB_OFFLINE": "1",
        "VLSM_DATA": str(tmp_path / "data"),
    }
    command = [sys.executable, "-m", "vlsm_lib.cli", "run", str(tmp_path / "faults"), *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def executions(log) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_runners_and_a_dask_client_on_one_study_execute_every_run_once(study):
    tmp_path, log = study
    first, second, third = (
        vlsm(tmp_path),
        vlsm(tmp_path),
        vlsm(tmp_path, "--executor", "dask", "--workers", "1"),  # and a Dask client
    )
    outputs = [p.communicate(timeout=300)[0].decode() for p in (first, second, third)]
    assert [p.returncode for p in (first, second, third)] == [0, 0, 0], outputs
    ran = executions(log)
    assert sorted(ran) == sorted(set(ran)) and len(ran) == 3  # each run exactly once
    runs = sorted((tmp_path / "out" / "faults" / "logged").glob("logged__*"))
    assert [read_run(r)["status"] for r in runs] == ["complete"] * 3
    assert not any((r / locks.LOCK).exists() for r in runs)  # every lock released
    params = read_run(runs[0])["params"]  # paths inside the suite read the same on any machine
    assert params["run_dir"] == "{suite_dir}/logged/logged__x-1"
    assert not any((r / "train_state.pt").exists() for r in runs)  # resume state dropped


def test_a_failing_run_is_recorded_the_rest_completes_and_failed_reruns_it_alone(study):
    tmp_path, log = study
    (tmp_path / "executions.log.fail").touch()
    proc = vlsm(tmp_path)
    out = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 1, out  # the exit code says a run failed
    assert "3/3 runs done, 1 failed" in out  # the terminal says where the grid is
    progress = json.loads((tmp_path / "out" / "faults" / "progress.json").read_text())
    assert (progress["done"], progress["total"], progress["failed"]) == (3, 3, 1)
    failed = tmp_path / "out" / "faults" / "logged" / "logged__x-2"
    assert "planned failure" in read_run(failed)["error"]
    assert "planned failure" in (failed.parent / "index.html").read_text()
    assert len(executions(log)) == 3
    (tmp_path / "executions.log.fail").unlink()
    again = vlsm(tmp_path, "--failed")
    out = again.communicate(timeout=300)[0].decode()
    assert again.returncode == 0, out
    assert executions(log)[3:] == ["logged__x-2"]  # only the failed run ran again
    assert read_run(failed)["status"] == "complete"


def test_a_run_left_running_by_a_dead_process_is_stale_and_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    owner = {**locks.owner(), "pid": dead.pid}
    (run_dir / locks.LOCK).write_text(json.dumps(owner))
    info = {"status": "running", "owner": owner}
    (run_dir / "run.json").write_text(json.dumps(info))
    assert shown_status(info, run_dir) == "stale" and not locks.is_held(run_dir)
    assert locks.try_lock(run_dir)  # broken and taken
    assert json.loads((run_dir / locks.LOCK).read_text())["pid"] == os.getpid()
    assert shown_status(info, run_dir) == "running"  # now held by a live owner
    assert not locks.try_lock(run_dir)  # a second taker waits
    locks.release(run_dir)
    assert not (run_dir / locks.LOCK).exists()


def test_a_lock_on_another_host_goes_stale_only_without_heartbeat(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock = run_dir / locks.LOCK
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    assert not locks.try_lock(run_dir, stale_s=60)  # fresh heartbeat: held
    old = time.time() - 120
    os.utime(lock, (old, old))
    assert locks.try_lock(run_dir, stale_s=60)  # two minutes silent: taken over
    with locks.heartbeat(run_dir, every_s=0.05):
        os.utime(lock, (old, old))
        time.sleep(0.3)
    assert time.time() - lock.stat().st_mtime < 5  # the heartbeat touched it


def test_a_suite_copied_elsewhere_still_loads_its_checkpoints(tmp_path):
    import shutil

    import torch

    from vlsm_lib.models import create_model, load_checkpoint
    from vlsm_lib.models.weights import save_checkpoint

    suite = tmp_path / "cluster" / "outputs" / "paper"
    pretrained = suite / "pretrain" / "pretrain__clipseg"
    save_checkpoint(create_model("clipseg", size="tiny"), pretrained)
    tuned = create_model("clipseg", size="tiny", weights=str(pretrained))
    save_checkpoint(tuned, suite / "finetune" / "finetune__clipseg")
    meta = json.loads((suite / "finetune" / "finetune__clipseg" / "model.json").read_text())
    assert meta["weights"] == "../../pretrain/pretrain__clipseg"  # relative to the checkpoint
    laptop = tmp_path / "laptop" / "copy_of_paper"
    shutil.copytree(suite, laptop)
    shutil.rmtree(tmp_path / "cluster")  # the original is gone
    loaded = load_checkpoint(laptop / "finetune" / "finetune__clipseg")
    for key, value in tuned.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (the runner and its notebook kernel), as a
    pre-empted job is killed."""
    import psutil

    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def _wait_for(path, seconds=300):
    deadline = time.time() + seconds
    while not path.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert path.exists(), path


def test_a_finetune_killed_mid_training_resumes_to_the_same_result(tmp_path):
    """Killed through the local runner (runner and kernel), then taken over through Dask whose
    worker is killed in turn: the run resumes from its saved state to the uninterrupted run's
    Dice."""
    import signal

    import pandas as pd

    from vlsm_lib.data.medshapes.synthetic import write_dataset
    from vlsm_lib.results import gather

    data = tmp_path / "data"
    write_dataset("synth_polyp", data, size=40, counts={"train": 16, "val": 4, "test": 6})
    spec = {
        "notebook": "notebooks/finetune.ipynb",
        "defaults": {
            "size": "tiny",
            "max_epochs": 3,
            "min_epochs": 3,
            "batch_size": 4,
            "state_every_s": 0.0,
            "surface_metrics": False,
            "progress": False,
        },
        "grid": {"model": ["clipseg"], "dataset": ["synth_polyp"], "prompt": ["p6"]},
    }
    (tmp_path / "faults").mkdir()
    (tmp_path / "faults" / "finetune.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert vlsm(tmp_path).wait(timeout=600) == 0
    (tmp_path / "out").rename(tmp_path / "straight")
    run = tmp_path / "out" / "faults" / "finetune" / "finetune__clipseg__synth_polyp__p6"
    killed = vlsm(tmp_path)
    _wait_for(run / "train_state.pt")  # the first epoch's state is on disk: training under way
    _kill_tree(killed.pid)
    killed.wait(timeout=60)
    assert read_run(run)["status"] == "running" and shown_status(read_run(run), run) == "stale"
    # the run is taken over through Dask, whose worker is killed in turn once it holds the run
    dask = vlsm(tmp_path, "--executor", "dask", "--workers", "1")
    lock, deadline = run / locks.LOCK, time.time() + 300
    while time.time() < deadline:
        owner = json.loads(lock.read_text() or "{}") if lock.exists() else {}
        if owner.get("pid") not in (None, killed.pid):
            break
        time.sleep(0.1)
    os.kill(owner["pid"], signal.SIGKILL)  # the nanny restarts it, the scheduler reschedules
    assert dask.wait(timeout=600) == 0, dask.communicate()[0].decode()[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["resumed_at_epoch"] >= 1  # resumed, not afresh
    straight = gather(tmp_path / "straight" / "faults").sort_values("image_id")
    table = gather(tmp_path / "out" / "faults").sort_values("image_id")
    assert len(table) == 6  # counted once
    pd.testing.assert_series_equal(
        straight["dice"].reset_index(drop=True), table["dice"].reset_index(drop=True)
    )


def test_gather_names_damaged_runs_and_goes_on_with_the_rest(tmp_path):
    import pandas as pd

    from vlsm_lib.results import PER_IMAGE, gather, save_run

    study = tmp_path / "suite" / "finetune"
    rows = pd.DataFrame({"test_set": "t", "image_id": ["a", "b"], "dice": [0.5, 0.7]})
    for name in ("good", "truncated", "not_json", "old"):
        (study / name).mkdir(parents=True)
        (study / name / "run.json").write_text(json.dumps({"run_id": name, "status": "x"}))
        save_run(study / name, {"model": name}, rows, {"dice": 0.6})
    data = (study / "truncated" / PER_IMAGE).read_bytes()
    (study / "truncated" / PER_IMAGE).write_bytes(data[: len(data) // 2])  # disk full, copy cut
    (study / "not_json" / "run.json").write_text('{"status": "comp')
    rows.drop(columns="test_set").to_parquet(study / "old" / PER_IMAGE)  # an older layout
    with pytest.warns(UserWarning, match="3 run") as caught:
        table = gather(tmp_path / "suite")
    message = str(caught[0].message)
    for name, why in (("truncated", "unreadable"), ("not_json", "run.json"), ("old", "lacks")):
        assert f"{name}: " in message and why in message
    assert list(table["run_id"].unique()) == ["good"] and len(table) == 2
    assert len(table.attrs["unusable"]) == 3


def test_a_full_disk_leaves_the_previous_checkpoint_and_no_result(tmp_path, monkeypatch):
    import errno

    import pandas as pd
    import safetensors.torch

    from vlsm_lib.files import DiskFull
    from vlsm_lib.models import create_model
    from vlsm_lib.models.weights import WEIGHTS, save_checkpoint
    from vlsm_lib.results import PER_IMAGE, save_run

    run = tmp_path / "run"
    model = create_model("unet", size="tiny")
    save_checkpoint(model, run)
    before = (run / WEIGHTS).read_bytes()

    def fills_the_disk(state, filename, *args, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", fills_the_disk)
    with pytest.raises(DiskFull, match=r"disk full while writing .*checkpoint.safetensors.*intact"):
        save_checkpoint(model, run)
    assert (run / WEIGHTS).read_bytes() == before  # the previous best checkpoint
    assert not list(run.glob(".*.tmp"))

    def parquet_fills_the_disk(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    (run / "run.json").write_text(json.dumps({"status": "running"}))
    monkeypatch.setattr(pd.DataFrame, "to_parquet", parquet_fills_the_disk)
    rows = pd.DataFrame({"test_set": "t", "image_id": ["a"], "dice": [0.5]})
    with pytest.raises(DiskFull):
        save_run(run, {"model": "unet"}, rows, {"dice": 0.5})
    assert read_run(run)["status"] == "running"  # never marked complete
    assert not (run / PER_IMAGE).exists() and not list(run.glob(".*.tmp"))


def test_a_grid_under_way_shows_in_the_root_index(tmp_path):
    from types import SimpleNamespace

    from vlsm_lib.grid import progress
    from vlsm_lib.reports.index import write_root_index

    runs = [
        SimpleNamespace(run_id=f"r{i}", run_dir=tmp_path / "demo" / "s" / f"r{i}") for i in range(3)
    ]
    grid = progress.Progress([(None, runs)])
    grid.start("r0")
    grid.finish("r0", "complete")
    grid.start("r1")
    page = write_root_index(tmp_path).read_text()
    assert "demo: grid under way: 1/3 runs done, 0 failed" in page and "running now: r1" in page
    assert "left" in grid.line()  # an estimate once a run has been timed
    grid.finish("r1", "failed")
    grid.finish("r2", "skipped")
    assert "under way" not in write_root_index(tmp_path).read_text()  # finished: gone


class _Payload:
    """Unpickling this would run code: it writes a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_carrying_a_pickle_payload_is_refused(tmp_path):
    import torch

    from vlsm_lib.models import create_model
    from vlsm_lib.models.weights import WeightsUnavailable, read_state

    marker = tmp_path / "pwned"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Payload(str(marker))}, tmp_path / "a.pt")
    with pytest.raises((WeightsUnavailable, RuntimeError)) as err:
        read_state(tmp_path / "a.pt", "weights")
    assert "a.pt" in str(err.value)
    with pytest.raises((WeightsUnavailable, RuntimeError)):
        create_model("unet", size="tiny", weights=str(tmp_path / "a.pt"))
    assert not marker.exists()  # the payload never ran


def test_a_grid_warns_when_the_disk_is_short(study, monkeypatch):
    import shutil
    from collections import namedtuple

    from vlsm_lib.grid import progress
    from vlsm_lib.grid.runner import plan

    tmp_path, _ = study
    planned = plan([tmp_path / "faults" / "logged.yaml"], outputs=tmp_path / "out")
    assert progress.disk_need(planned) == 3 * progress.GUESS_BYTES["paper"]  # nothing measured
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 0, 2**30))
    with pytest.warns(UserWarning, match=r"1.0 GiB free; the runs to do need about 6.0 GiB"):
        progress.warn_if_disk_short(planned, tmp_path / "out")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 0, 10**12))
    assert progress.warn_if_disk_short(planned, tmp_path / "out") is None


def test_a_kernel_does_not_outlive_the_runner_that_owns_its_run(tmp_path):
    import psutil

    child = (
        "import time\nfrom vlsm_lib import lifetime\n"
        "assert lifetime.exit_with_runner(every_s=0.1)\ntime.sleep(60)\n"
    )
    runner = (
        "import os, subprocess, sys, time\n"
        f"os.environ['{lifetime.RUNNER_PID}'] = str(os.getpid())\n"
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}])\n"
        f"open({str(tmp_path / 'kernel.pid')!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", runner])
    pid_file = tmp_path / "kernel.pid"
    deadline = time.time() + 30
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.1)
    kernel = psutil.Process(int(pid_file.read_text()))
    time.sleep(1.5)  # the kernel has started watching
    parent.kill()
    parent.wait()
    kernel.wait(timeout=10)  # TimeoutExpired if it went on: it ended itself, its runner gone
    assert not kernel.is_running()
