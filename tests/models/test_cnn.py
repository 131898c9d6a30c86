"""CNN baselines: shapes, train policies, text-independence, paper sizes, weights handling."""

import time

import pytest
import torch

from vlsm_lib.models import WeightsUnavailable, create_model
from vlsm_lib.models.cnn import CNNSegModel, build

ARCHS = ("unet", "unetpp", "deeplabv3plus")
# Parameter counts of the paper models with one output class (smp 0.6 builds).
PAPER_PARAMS = {"unet": 32.5e6, "unetpp": 49.0e6, "deeplabv3plus": 26.7e6}


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_shape_and_text_ignored(arch):
    torch.manual_seed(0)
    model = create_model(arch, size="tiny").eval()
    assert isinstance(model, CNNSegModel) and model.preprocess.tokenizer is None
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain = model(x)
        ids = torch.randint(0, 100, (2, 7))
        with_text = model(x, ids, torch.ones_like(ids))
    assert plain.shape == (2, 1, 64, 64)
    assert torch.equal(plain, with_text)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("policy", ("all", "decoder"))
def test_policy_grads_match_trainable(arch, policy):
    torch.manual_seed(0)
    model = create_model(arch, size="tiny", train=policy).train()
    x = torch.randn(4, 3, 64, 64)
    model(x).square().mean().backward()  # warm-up call, then the timed one
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    model(x).square().mean().backward()
    elapsed = time.perf_counter() - start
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.any()}
    assert grads == model.trainable_parameter_names()
    if policy == "decoder":
        assert not any(n.startswith("net.encoder.") for n in grads)
        assert not model.net.encoder.training  # frozen BatchNorm statistics
    print(f"{arch}/{policy}: forward+backward on 4x3x64x64 in {elapsed:.3f} s")
    assert elapsed < 1.0


def test_frozen_encoder_keeps_batchnorm_stats():
    model = create_model("unet", size="tiny", train="decoder").train()
    before = {k: v.clone() for k, v in model.net.encoder.state_dict().items()}
    model(torch.randn(2, 3, 64, 64)).mean().backward()
    after = model.net.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    model.set_train_policy("all")
    assert model.net.encoder.training


@pytest.mark.parametrize("arch", ARCHS)
def test_paper_builds_offline(arch):
    model = create_model(arch, size="paper", weights=None)
    n = sum(p.numel() for p in model.parameters())
    print(f"{arch} paper (ResNet-50): {n / 1e6:.2f} M parameters")
    assert abs(n - PAPER_PARAMS[arch]) / PAPER_PARAMS[arch] < 0.05
    assert model.preprocess.image_size == (256, 256) and model.threshold == 0.5


def test_pretrained_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailable, match="resnet50"):
        build(size="paper", weights="pretrained", arch="unet")
    assert time.perf_counter() - start < 30


@pytest.mark.parametrize("suffix", (".pt", ".safetensors"))
def test_state_dict_round_trip(tmp_path, suffix):
    torch.manual_seed(0)
    model = create_model("unetpp", size="tiny").eval()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    else:
        torch.save(model.state_dict(), path)
    torch.manual_seed(1)
    loaded = create_model("unetpp", size="tiny", weights=str(path)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_state_dict_missing_key_named(tmp_path):
    state = create_model("unet", size="tiny").state_dict()
    del state["net.segmentation_head.0.weight"]
    state["net.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(WeightsUnavailable, match="segmentation_head.0.weight") as info:
        build(size="tiny", weights=str(tmp_path / "bad.pt"), arch="unet")
    assert "extra.weight" in str(info.value)
    with pytest.raises(WeightsUnavailable, match="no_such_file"):
        build(size="tiny", weights=str(tmp_path / "no_such_file.pt"))
