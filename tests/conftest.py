"""Test-wide settings: offline, one torch thread (the machine has two cores)."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a requirement; this only guards collection
    pass


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    """An outputs and a data folder of the test's own (VLSM_OUTPUTS, VLSM_DATA)."""
    out = tmp_path / "outputs"
    monkeypatch.setenv("VLSM_OUTPUTS", str(out))
    monkeypatch.setenv("VLSM_DATA", str(tmp_path / "data"))
    return out


@pytest.fixture(scope="session")
def tiny_cris(tmp_path_factory):
    """A tiny CRIS finetuned for two epochs at p6 on MedShapes polyps, a model that reads its
    words: (its checkpoint folder, the data root). Shared by the predict and explorer tests."""
    from vlsm_lib.data.dataset import load_dataset
    from vlsm_lib.data.medshapes.synthetic import write_dataset
    from vlsm_lib.engine.config import TrainConfig
    from vlsm_lib.engine.train import fit
    from vlsm_lib.models import create_model

    root = tmp_path_factory.mktemp("tiny_cris_data")
    write_dataset("synth_polyp", root, seed=7, size=96, counts={"train": 32, "val": 8, "test": 8})
    torch.manual_seed(0)
    model = create_model("cris", size="tiny", train="all")
    sets = [load_dataset(root, "synth_polyp", s, model.preprocess, "p6") for s in ("train", "val")]
    run = tmp_path_factory.mktemp("tiny_cris_run")
    cfg = TrainConfig(lr=1e-3, batch_size=8, max_epochs=2, min_epochs=2, progress=False)
    fit(model, *sets, cfg, run)
    return run, root
