"""vlsm run --executor slurm against a real single-node SLURM (``localslurm``): the smoke suite
through sbatch-started Dask workers, every run complete and counted once. Skips, saying why,
where no SLURM can start."""

import subprocess

import pytest
from localslurm import Unavailable, start, stop

from vlsm_lib import paths
from vlsm_lib.cli import main
from vlsm_lib.results import read_run

pytestmark = pytest.mark.slow  # a cluster, its jobs and the smoke suite


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    folder = tmp_path / "slurm"
    try:
        env = start(folder)
    except Unavailable as err:
        pytest.skip(f"no single-node SLURM here: {err}")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield folder
    stop(folder)


def test_the_smoke_suite_runs_on_slurm_through_sbatch_workers(slurm, tmp_path, monkeypatch, capsys):
    outputs = tmp_path / "outputs"
    monkeypatch.setenv("VLSM_OUTPUTS", str(outputs))
    monkeypatch.setenv("VLSM_DATA", str(tmp_path / "data"))
    smoke = paths.REPO_ROOT / "params" / "smoke"
    args = ["run", str(smoke), "--executor", "slurm", "--workers", "2"]
    args += ["--slurm-queue", "debug", "--slurm-memory", "4GB", "--slurm-walltime", "00:30:00"]
    assert main(args) == 0, capsys.readouterr().out[-2000:]
    out = capsys.readouterr().out
    runs = sorted(p.parent for p in (outputs / "smoke").rglob("run.json"))
    infos = [read_run(r) for r in runs]
    assert infos and all(i["status"] == "complete" for i in infos)
    assert f"runs: {len(runs)} complete" in out  # each run counted once
    assert len({i["run_id"] for i in infos}) == len(runs)
    # the workers were SLURM jobs: slurmctld knows them, and their output files are there
    jobs = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True)
    assert jobs.stdout.count("JobName=dask-worker") == 2, jobs.stdout[-1000:]
    assert len(list((outputs / "slurm").glob("*.err"))) == 2
