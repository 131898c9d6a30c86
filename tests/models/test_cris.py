"""CRIS: shapes, padding mask, train policies, batch of one, paper size, checkpoint loading."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from vlsm_lib.data.transforms import CLIP_MEAN, CLIP_STD
from vlsm_lib.models import WeightsUnavailable, create_model, cris

PROMPTS = ["a pink polyp", "two small round tumors in the top left of the image"]


def _inputs(model, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    size = model.preprocess.image_size
    pixels = torch.randn(batch, 3, *size, generator=g)
    ids, mask = model.preprocess.text((PROMPTS * batch)[:batch])
    return pixels, ids, mask


def _realistic_bn(model):
    """open_clip zero-initialises each bottleneck's last BN weight (a zero-init residual), which
    gives the convolutions of that branch exactly zero gradient; pretrained CLIP weights are
    nonzero there, so set every BN weight away from zero as a loaded checkpoint would have."""
    torch.manual_seed(1)
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.weight.data.uniform_(0.5, 1.5)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return cris.build(size="tiny").eval()


def test_tiny_forward_shape(tiny):
    pixels, ids, mask = _inputs(tiny)
    with torch.no_grad():
        out = tiny(pixels, ids, mask)
        empty = tiny(pixels, ids, torch.zeros_like(mask))  # every position padded: no NaN
    assert out.shape == (2, 1, 128, 128)
    assert torch.isfinite(out).all() and torch.isfinite(empty).all()
    assert tiny.threshold == 0.35 and tiny.preprocess.image_size == (128, 128)
    assert ids.shape == (2, 77) and (ids[0, mask[0] == 0] == 49407).all()  # pads are EOT ids


def test_mask_padding(tiny):
    pixels, ids, mask = _inputs(tiny)
    assert (mask == 0).any()
    with torch.no_grad():
        tiny.mask_padding = True
        masked = tiny(pixels, ids, mask)
        # padded positions are ignored: changing their ids changes nothing
        other = tiny(pixels, ids.masked_fill(mask == 0, 320), mask)
        tiny.mask_padding = False  # the reference: input_ids == 0, i.e. nothing masked here
        reference = tiny(pixels, ids, mask)
        reference_all = tiny(pixels, ids, torch.ones_like(mask))
        tiny.mask_padding = True
    assert torch.allclose(masked, other, atol=1e-5)
    assert not torch.allclose(masked, reference, atol=1e-4)
    assert torch.equal(reference, reference_all)


@pytest.mark.parametrize("policy", ["all", "decoder"])
def test_train_policy_gradients(policy):
    torch.manual_seed(0)
    model = cris.build(size="tiny")
    _realistic_bn(model)
    model.set_train_policy(policy).train()
    backbone_stats = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    seen = {}
    hook = model.backbone.visual.layer4.register_forward_hook(
        lambda mod, args, out: seen.update(grad=out.requires_grad)
    )
    pixels, ids, mask = _inputs(model, batch=4, seed=1)
    target = (torch.rand(4, 1, 128, 128) > 0.5).float()
    F.binary_cross_entropy_with_logits(model(pixels, ids, mask), target).backward()
    hook.remove()
    nonzero = {
        n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0
    }
    assert nonzero == model.trainable_parameter_names()
    if policy == "decoder":
        assert all(not n.startswith("backbone.") for n in nonzero)
        assert seen["grad"] is False and not model.backbone.training  # no graph, BN frozen
        after = model.backbone.state_dict()
        assert all(torch.equal(v, after[k]) for k, v in backbone_stats.items())
    else:
        assert seen["grad"] is True and model.backbone.training


def test_cacheable_decode_matches_forward(tiny):
    assert not tiny.cacheable()
    model = cris.build(size="tiny").set_train_policy("decoder").eval()
    assert model.cacheable()
    pixels, ids, mask = _inputs(model)
    with torch.no_grad():
        text = model.encode_text(ids, mask)
        words, state, pad = model.unpack_text(text)
        out = model.decode(model.encode_image(pixels), text, (128, 128))
        assert torch.equal(out, model(pixels, ids, mask))
    assert words.shape == (2, 77, 32) and state.shape == (2, 64)
    assert torch.equal(pad, mask == 0)


def test_batch_of_one_trains():
    torch.manual_seed(0)
    model = cris.build(size="tiny").train()
    bn = model.neck.txt_proj[1]
    before = bn.running_mean.clone()
    pixels, ids, mask = _inputs(model, batch=1)
    out = model(pixels, ids, mask)
    out.mean().backward()
    assert out.shape == (1, 1, 128, 128) and torch.isfinite(out).all()
    assert bn.weight.grad is not None and torch.equal(bn.running_mean, before)


def test_registry_policy():
    model = create_model("cris", size="tiny", train="decoder")
    assert model.policy == "decoder" and model.name == "cris"
    assert model.trainable_parameter_names() == {
        n for n, _ in model.named_parameters() if n.split(".")[0] in ("neck", "decoder", "proj")
    }


def test_paper_size_offline():
    torch.manual_seed(0)
    model = cris.build(size="paper").eval()
    cfg = model.cfg
    assert (cfg.fpn_in, cfg.fpn_out) == ((512, 1024, 1024), (256, 512, 1024))
    assert (
        cfg.text_width,
        cfg.embed_dim,
        cfg.num_layers,
        cfg.num_heads,
        cfg.dim_ffn,
        cfg.dropout,
    ) == (512, 1024, 3, 8, 2048, 0.2)
    pre = model.preprocess
    assert pre.image_size == (416, 416) and pre.context_length == 77
    assert (pre.mean, pre.std, model.threshold) == (CLIP_MEAN, CLIP_STD, 0.35)
    counts = {n: p.numel() for n, p in model.backbone.named_parameters()}
    clip = sum(v for n, v in counts.items() if ".attnpool.connect." not in n)
    assert abs(clip - 102.0e6) < 0.5e6  # CLIP RN50, both towers (102,007,136)
    assert sum(counts.values()) - clip == 2048 * 1024 + 2 * 1024  # CRIS's `connect`
    total = sum(p.numel() for p in model.parameters())
    assert abs(total - 146.85e6) < 0.1e6
    pixels, ids, mask = _inputs(model, batch=1)
    with torch.no_grad():
        assert model(pixels, ids, mask).shape == (1, 1, 416, 416)


def test_checkpoint_round_trip(tiny, tmp_path):
    state = {"module." + k: v for k, v in tiny.state_dict().items()}
    path = tmp_path / "cris.pt"
    torch.save({"epoch": 3, "state_dict": state}, path)
    torch.manual_seed(123)
    loaded = cris.build(size="tiny", weights=str(path)).eval()
    pixels, ids, mask = _inputs(tiny)
    with torch.no_grad():
        assert torch.equal(loaded(pixels, ids, mask), tiny(pixels, ids, mask))

    del state["module.decoder.norm.weight"]
    torch.save(state, path)
    with pytest.raises(WeightsUnavailable, match=r"missing keys \(1\): decoder\.norm\.weight"):
        cris.build(size="tiny", weights=str(path))


def test_clip_weights_file(tiny, tmp_path):
    state = {k: v for k, v in tiny.backbone.state_dict().items() if ".connect." not in k}
    state["input_resolution"] = torch.tensor(224)  # OpenAI metadata entries are dropped
    path = tmp_path / "rn50.pt"
    torch.save(state, path)
    loaded = cris.build(size="tiny", clip_weights=str(path))
    got = loaded.backbone.state_dict()
    assert all(torch.equal(v, got[k]) for k, v in state.items() if k != "input_resolution")

    other = cris.build_clip(dataclasses.replace(cris.CONFIGS["tiny"], embed_dim=48))
    with pytest.raises(WeightsUnavailable, match="shape mismatches"):
        cris.load_clip_weights(other, str(path))


def test_weight_errors():
    with pytest.raises(WeightsUnavailable, match="download it by hand") as err:
        cris.build(size="tiny", weights="pretrained")
    assert "weights=" in str(err.value)
    with pytest.raises(WeightsUnavailable, match="/nonexistent.pt"):
        cris.build(size="tiny", clip_weights="/nonexistent.pt")
    with pytest.raises(WeightsUnavailable, match="/nonexistent_cris.pt"):
        cris.build(size="tiny", weights="/nonexistent_cris.pt")


class _Leaf(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_clip_weights_torchscript(tiny, tmp_path):
    """A TorchScript archive with fp16 CLIP tensors and metadata, like OpenAI's RN50.pt."""
    state = {k: v for k, v in tiny.backbone.state_dict().items() if ".connect." not in k}
    root = _Leaf()
    for key, value in state.items():
        *parents, name = key.split(".")
        mod = root
        for p in parents:
            if p not in mod._modules:
                mod.add_module(p, _Leaf())
            mod = mod._modules[p]
        mod.register_buffer(name, value.half() if value.is_floating_point() else value)
    for meta in cris.CLIP_META_KEYS:
        root.register_buffer(meta, torch.tensor(77))
    path = tmp_path / "RN50.pt"
    torch.jit.script(root).save(str(path))
    got = cris.build(size="tiny", clip_weights=str(path)).backbone.state_dict()
    for k, v in state.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v.half().to(v.dtype)), k
