"""vlsm weights list | fetch | check: the catalogue, a fake hub and a fake cache, no network."""

from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import constants

from vlsm_lib.cli import main
from vlsm_lib.models import catalog


def _cached(cache: Path, repo: str, filename: str, revision: str | None = None) -> Path:
    """A file laid out as huggingface_hub's cache holds it (refs/main -> snapshots/<commit>)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = revision or "0" * 40
    if revision is None:
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / "main").write_text(commit)
    path = folder / "snapshots" / commit / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "hub"
    folder.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    return folder


def _fill(cache: Path, skip: tuple[str, str] = ("", "")) -> None:
    """Every catalogued file (the last alternative of each) but ``skip`` (weights, file)."""
    for w in catalog.CATALOG:
        for alternatives in w.files:
            if (w.name, alternatives[-1]) != skip:
                _cached(cache, w.source, alternatives[-1], w.revision)


def test_list_names_every_paper_weight_with_its_source(capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    for w in catalog.CATALOG:
        assert f"{w.name}: {w.source or 'by hand, to $VLSM_DATA/' + w.local}" in out
        assert w.licence in out
    assert "CRIS.pytorch" in out  # where to get the one that is on no hub


def _by_hand(root: Path) -> None:
    for w in catalog.CATALOG:
        if w.local:
            (root / w.local).parent.mkdir(parents=True, exist_ok=True)
            (root / w.local).write_bytes(b"x")


def test_check_passes_a_complete_cache_and_names_what_a_partial_one_lacks(cache, outputs, capsys):
    assert main(["weights", "check"]) == 1  # an empty cache: everything missing
    expected = sum(len(w.files) or 1 for w in catalog.CATALOG)
    assert capsys.readouterr().out.count("MISSING") == expected
    _by_hand(outputs.parent / "data")  # VLSM_DATA of the outputs fixture
    _fill(cache, skip=("biomedclip", "open_clip_pytorch_model.bin"))  # its weights file absent
    assert main(["weights", "check"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (
        "MISSING biomedclip: open_clip_model.safetensors or open_clip_pytorch_model.bin of "
        "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    )
    assert out.count("MISSING") == 1
    _fill(cache)
    assert main(["weights", "check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("complete: clipseg, biomedclip, biomedbert, clip_rn50")


def test_check_looks_for_the_files_fetched_by_hand_where_params_paper_reads_them(tmp_path, capsys):
    root = str(tmp_path)
    assert main(["weights", "check", "cris_refcoco", "--data-root", root]) == 1
    assert f"cris_refcoco: no file at {tmp_path / 'weights' / 'cris.pt'}" in capsys.readouterr().out
    _by_hand(tmp_path)
    assert main(["weights", "check", "cris_refcoco", "clip_rn50", "--data-root", root]) == 0
    assert main(["weights", "check", "clipsegg"]) == 2
    assert "unknown weights ['clipsegg']; valid: clipseg" in capsys.readouterr().err


def test_fetch_downloads_into_the_cache_that_check_then_finds_complete(cache, monkeypatch):
    calls = []

    def fake_download(repo_id, filename, revision=None):
        calls.append((repo_id, filename, revision))
        if filename == "open_clip_model.safetensors":  # the hub has only the .bin
            raise FileNotFoundError(f"{repo_id} has no {filename}")
        return str(_cached(cache, repo_id, filename, revision))

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert main(["weights", "fetch"]) == 0
    assert (
        "smp-hub/resnet50.imagenet",
        "model.safetensors",
        catalog.select(["resnet50_imagenet"])[0].revision,
    ) in calls
    biomed = [f for r, f, _ in calls if r.startswith("microsoft/BiomedCLIP")]
    assert biomed == ["open_clip_config.json", "open_clip_model.safetensors",
                      "open_clip_pytorch_model.bin"]  # fmt: skip
    assert all(not catalog.missing(w) for w in catalog.CATALOG if w.source)


def test_fetch_is_refused_offline_and_unknown_names_list_the_valid_ones(monkeypatch, capsys):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert main(["weights", "fetch", "clipseg"]) == 1
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err
    with pytest.raises(KeyError, match="unknown weights \\['clipsegg'\\]; valid: clipseg"):
        catalog.select(["clipsegg"])
