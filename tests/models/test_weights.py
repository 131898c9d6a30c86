"""vlsm_lib.models.weights: one reader, one key check, errors that name the file and the fix."""

import json

import pytest
import torch

from vlsm_lib.models import WeightsMismatch, WeightsUnavailable, create_model, load_checkpoint
from vlsm_lib.models.weights import (
    check_state,
    read_state,
    save_checkpoint,
    trained_state,
)

BIOMEDCLIP = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
BIOMEDBERT = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"


def _cache_files(cache, repo: str, files: dict[str, str]) -> None:
    """Files of a hub repository laid out as the Hugging Face cache keeps them."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text("0" * 40)
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (snapshot / name).write_text(text)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty, offline Hugging Face cache of this test's own."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_biomedclip_missing_names_biomedclip_not_biomedbert(hub_cache):
    # a user who downloaded BiomedBERT (the tokenizer) but not BiomedCLIP
    _cache_files(hub_cache, BIOMEDBERT, {"config.json": "{}", "vocab.txt": "[PAD]\n"})
    with pytest.raises(WeightsUnavailable) as err:
        create_model("biomedclipseg", size="paper", weights="pretrained")
    assert BIOMEDCLIP in str(err.value) and "open_clip_config.json" in str(err.value)
    assert BIOMEDBERT not in str(err.value)


def test_biomedclip_without_its_weights_file_is_never_built(hub_cache):
    # its configuration and BiomedBERT's files are present, its weights are not: open_clip
    # alone would build towers from other weights and only log a warning
    _cache_files(hub_cache, BIOMEDBERT, {"config.json": "{}", "vocab.txt": "[PAD]\n"})
    _cache_files(hub_cache, BIOMEDCLIP, {"open_clip_config.json": json.dumps({"model_cfg": {}})})
    with pytest.raises(WeightsUnavailable) as err:
        create_model("biomedclipseg_d", size="paper", weights="pretrained")
    assert "open_clip_pytorch_model.bin" in str(err.value) and BIOMEDCLIP in str(err.value)


def test_unknown_model_option_lists_the_valid_ones():
    with pytest.raises(TypeError, match="'clip_weight'.*valid: clip_weights, mask_padding"):
        create_model("cris", size="tiny", clip_weight="openai")
    with pytest.raises(TypeError, match="'head_init'.*valid: none"):
        create_model("unet", size="tiny", head_init="hf")
    # a fixed registry argument is not the user's to set
    with pytest.raises(TypeError, match="'pretrained_decoder'"):
        create_model("biomedclipseg", size="tiny", pretrained_decoder=True)


def test_one_error_format_for_every_mismatch():
    own = {"a": torch.zeros(2), "b": torch.zeros(3), "bn.num_batches_tracked": torch.tensor(0)}
    state = {"a": torch.zeros(4), "c": torch.zeros(1)}
    with pytest.raises(WeightsMismatch) as err:
        check_state(own, state, "file x", "Do y.")
    text = str(err.value)
    assert text.startswith("file x does not fit the model: missing keys (1): b;")
    assert "unexpected keys (1): c" in text and "a (4,) in file vs (2,) in model" in text
    assert text.endswith("Do y.")
    check_state(own, {"a": torch.ones(2), "b": torch.ones(3)}, "ok", "")  # counters optional


def test_read_state_formats_and_prefixes(tmp_path):
    from safetensors.torch import save_file

    state = {"module.w": torch.arange(3.0)}
    torch.save({"state_dict": state}, tmp_path / "ddp.pt")
    save_file({"w": torch.arange(3.0)}, str(tmp_path / "w.safetensors"))
    for path in (tmp_path / "ddp.pt", tmp_path / "w.safetensors"):
        assert list(read_state(path)) == ["w"]
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailable, match="bad.pt"):
        read_state(tmp_path / "bad.pt")
    with pytest.raises(WeightsUnavailable, match="absent.pt"):
        read_state(tmp_path / "absent.pt", hint="Download it.")


def test_own_checkpoint_with_a_wrong_shape_is_refused(tmp_path):
    # a shape check the former loader of our own checkpoints lacked
    model = create_model("unet", size="tiny")
    state = trained_state(model)
    key = "net.segmentation_head.0.bias"
    state[key] = torch.zeros(2)
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(WeightsMismatch, match=r"shape mismatches \(1\): net.segmentation_head"):
        create_model("unet", size="tiny", weights=str(tmp_path / "w.safetensors"))


def test_checkpoint_round_trip_and_missing_files(tmp_path):
    torch.manual_seed(0)
    model = create_model("clipseg", size="tiny").eval()
    save_checkpoint(model, tmp_path / "run")
    loaded = load_checkpoint(tmp_path / "run")
    x = torch.randn(1, 3, 128, 128)
    ids, mask = model.preprocess.text(["polyp"])
    with torch.no_grad():
        assert torch.equal(model(x, ids, mask), loaded(x, ids, mask))
    (tmp_path / "run" / "checkpoint.safetensors").unlink()
    with pytest.raises(WeightsUnavailable, match="checkpoint.safetensors not found"):
        load_checkpoint(tmp_path / "run")
