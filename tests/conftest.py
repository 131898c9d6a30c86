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
