"""The parameter-efficient train policies: what they add, where they start, what they store.

The gradient check of every policy (gradients reach exactly the trainable set) runs over the
whole registry in test_models.py."""

import pytest
import torch
from torch import nn

from vlsm_lib.engine.feature_cache import FeatureCache
from vlsm_lib.models import create_model, load_checkpoint
from vlsm_lib.models.weights import read_checkpoint, save_checkpoint

VLSMS = ["clipseg", "biomedclipseg", "cris"]
TUNING = ["lora", "adapter", "shallow_adapter", "text_prompt", "visual_prompt"]
PROMPTS = ["one small pink round polyp, located in top left of the image", "polyp"]


def _inputs(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, *model.preprocess.image_size, generator=g)
    ids, mask = model.preprocess.text(PROMPTS)
    return x, ids, mask


def _cases():
    return [(n, p) for n in VLSMS for p in TUNING if not (n == "cris" and p == "visual_prompt")]


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """One whole-model checkpoint per family, so tuned models start from the same weights."""
    out = {}
    for name in VLSMS:
        torch.manual_seed(1)
        folder = tmp_path_factory.mktemp(name)
        save_checkpoint(create_model(name, size="tiny", train="all"), folder)
        out[name] = folder
    return out


def test_every_vlsm_offers_the_policies_cnns_do_not():
    for name in ["clipseg", "biomedclipseg", "biomedclipseg_d"]:
        assert set(TUNING) <= set(create_model(name, size="tiny").train_policies)
    with pytest.raises(
        ValueError, match="valid: all, decoder, lora, adapter, shallow_adapter, text_prompt"
    ):
        create_model("cris", size="tiny", train="visual_prompt")
    with pytest.raises(ValueError, match="unknown train policy 'lora'"):
        create_model("unet", size="tiny", train="lora")


@pytest.mark.parametrize("name, policy", [c for c in _cases() if "prompt" not in c[1]])
def test_lora_and_adapters_start_as_the_frozen_model(bases, name, policy):
    """LoRA's B and the adapters' up-projections start at zero: the tuned model's first output
    is the output of the weights it starts from."""
    base = create_model(name, size="tiny", weights=bases[name], train="decoder").eval()
    tuned = create_model(name, size="tiny", weights=bases[name], train=policy).eval()
    x, ids, mask = _inputs(base)
    with torch.no_grad():
        torch.testing.assert_close(tuned(x, ids, mask), base(x, ids, mask), rtol=0, atol=1e-6)
    added = tuned.tuned[1]
    assert added and added == tuned.trainable_parameter_names() - base.trainable_parameter_names()
    marker = "lora_" if policy == "lora" else ".adapter."
    assert all(marker in n for n in added)


def _adapter_count(width: int, bottleneck: int) -> int:
    return 2 * width * bottleneck + width + bottleneck  # down and up, with their biases


@pytest.mark.parametrize("name", VLSMS)
def test_shallow_adapters_sit_on_the_states_the_decoder_reads_and_leave_the_text_frozen(name):
    """One adapter (512 wide by default) on each extracted ViT block / CRIS visual map; the
    text tower stays cacheable, the vision tower does not; the decoder's inputs change once
    the adapters move, the text embedding does not."""
    torch.manual_seed(0)
    model = create_model(name, size="tiny", train="shallow_adapter").eval()
    tapped = model.tuning_sites().tapped
    added = model.tuned[1]
    assert {n.rsplit(".adapter.", 1)[0] for n in added} == {m for m, _, _ in tapped}
    assert len(tapped) == 3 and model.describe()["tuning"] == {"adapter_dim": 512}
    count = sum(model.get_parameter(n).numel() for n in added)  # a 1x1 conv counts as a linear
    assert count == sum(_adapter_count(w, 512) for _, w, _ in tapped)
    assert model.cacheable_parts() == {"text"}
    x, ids, mask = _inputs(model)
    with torch.no_grad():
        before = model.encode_image(x), model.encode_text(ids, mask)
        for n in added:
            model.get_parameter(n).add_(0.05)
        after = model.encode_image(x), model.encode_text(ids, mask)
    assert all(not torch.allclose(a, b) for a, b in zip(before[0], after[0]))
    torch.testing.assert_close(before[1], after[1])


@pytest.mark.slow
def test_paper_clipseg_adapter_counts_beside_vlsm_adapters():
    """Paper-size CLIPSeg: the shallow adapters have VLSM-Adapter's shallow-V count
    (3 x 768 -> 512 -> 768 = 2,363,136); the dense ones adapt the 10 vision blocks up to the
    deepest read (block 9) and all 12 text blocks, 64 wide (VLSM-Adapter's dense VL: blocks
    up to 9 of both towers, 2,974,464)."""
    counts = {}
    for policy in ("shallow_adapter", "adapter"):
        model = create_model("clipseg", size="paper", train=policy)
        counts[policy] = sum(model.get_parameter(n).numel() for n in model.tuned[1])
        del model
    assert counts["shallow_adapter"] == 3 * _adapter_count(768, 512) == 2_363_136
    dense = 10 * 2 * _adapter_count(768, 64) + 12 * 2 * _adapter_count(512, 64)
    assert counts["adapter"] == dense == 3_569_408


@pytest.mark.parametrize("name", VLSMS)
def test_text_path_with_an_empty_context_is_the_plain_text_path(name):
    """The CoOp path (embeddings, inserted context, shifted end token) equals the family's own
    text forward when the context has no tokens."""
    torch.manual_seed(0)
    model = create_model(name, size="tiny").eval()
    x, ids, mask = _inputs(model)
    with torch.no_grad():
        plain = model.encode_text(ids, mask)
        host = model.tuning_sites().text_host
        width = host[1]
        model.get_submodule(host[0]).prompt_context = nn.Parameter(torch.zeros(0, width))
        stepped = model.encode_text(ids, mask)
    torch.testing.assert_close(stepped, plain, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name, policy", [c for c in _cases() if "prompt" in c[1]])
def test_prompts_change_the_output_and_their_tower_alone(name, policy):
    torch.manual_seed(0)
    model = create_model(name, size="tiny", train=policy, prompt_tokens=3).eval()
    (added,) = model.tuned[1]
    assert model.get_parameter(added).shape[0] == 3
    expected = {"text_prompt": {"image"}, "visual_prompt": {"text"}}[policy]
    assert model.cacheable_parts() == expected
    x, ids, mask = _inputs(model)

    def towers():
        with torch.no_grad():
            image = torch.cat([f.flatten() for f in model.encode_image(x)])
            return image, model.encode_text(ids, mask).flatten()

    before = towers()
    with torch.no_grad():  # random: a constant shift would vanish in BERT's LayerNorm
        model.get_parameter(added).add_(torch.randn(3, model.get_parameter(added).shape[1]))
    changed = [not torch.allclose(a, b) for a, b in zip(before, towers())]
    assert changed == ([False, True] if policy == "text_prompt" else [True, False])


@pytest.mark.parametrize("name, policy", _cases())
def test_checkpoint_stores_what_trains_and_loads_back(bases, tmp_path, name, policy):
    torch.manual_seed(0)
    model = create_model(name, size="tiny", weights=bases[name], train=policy)
    with torch.no_grad():  # move every trainable tensor away from its starting value
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    save_checkpoint(model, tmp_path)
    meta, state = read_checkpoint(tmp_path)
    params = {n for n, _ in model.named_parameters()}
    assert {k for k in state if k in params} == model.trainable_parameter_names()
    assert meta["describe"]["trainable_params"] == model.describe()["trainable_params"]
    loaded = load_checkpoint(tmp_path)
    x, ids, mask = _inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, ids, mask), model.eval()(x, ids, mask))


def test_options_are_checked_and_change_the_count():
    small = create_model("clipseg", size="tiny", train="lora", lora_rank=2)
    qv = create_model("clipseg", size="tiny", train="lora")
    qkvo = create_model("clipseg", size="tiny", train="lora", lora_targets="q,k,v,o")
    counts = [m.describe()["trainable_params"] for m in (small, qv, qkvo)]
    assert counts[0] < counts[1] < counts[2]
    assert qv.describe()["tuning"] == {"lora_rank": 8, "lora_alpha": 16, "lora_targets": "q,v"}
    with pytest.raises(TypeError, match="do not apply to train='adapter'; it takes: adapter_dim"):
        create_model("clipseg", size="tiny", train="adapter", lora_rank=4)
    with pytest.raises(TypeError, match="it takes: none"):
        create_model("clipseg", size="tiny", train="decoder", prompt_tokens=4)
    with pytest.raises(ValueError, match="lora_targets='x'"):
        create_model("clipseg", size="tiny", train="lora", lora_targets="x")
    with pytest.raises(ValueError, match="build a new model"):
        qv.set_train_policy("adapter")


@pytest.mark.parametrize("policy", ["text_prompt", "visual_prompt"])
def test_partial_feature_cache_gives_the_model_output_and_gradients(policy):
    """The frozen tower's outputs come from the cache, the prompted one runs with autograd."""
    torch.manual_seed(0)
    model = create_model("clipseg", size="tiny", train=policy).eval()
    x, ids, mask = _inputs(model)
    batch = {
        "pixel_values": x,
        "input_ids": ids,
        "attention_mask": mask,
        "prompt": PROMPTS,
        "dataset": ["d", "d"],
        "image_id": ["a", "b"],
    }
    cache = FeatureCache(model, capacity=2)
    assert cache.describe() == f"auto ({next(iter(model.cacheable_parts()))} only)"
    first = cache.forward(batch)
    again = cache.forward(batch)  # the frozen part now from the cache
    torch.testing.assert_close(again, model(x, ids, mask), rtol=0, atol=1e-5)
    again.sum().backward()
    (added,) = model.tuned[1]
    assert model.get_parameter(added).grad.abs().sum() > 0
    assert torch.equal(first, again.detach()) or torch.allclose(first, again, atol=1e-6)
