"""The model contract over the whole registry, CLIPSeg against HF, BiomedCLIPSeg, errors."""

import pytest
import torch

from vlsm_lib.models import MODELS, WeightsUnavailable, create_model, list_models

PROMPTS = ["one small pink round polyp, located in top left of the image", "polyp", "", "lesion"]


def _inputs(model, batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = model.preprocess.image_size
    x = torch.randn(batch, 3, h, w, generator=g)
    if model.preprocess.tokenizer is None:
        return x, None, None
    ids, mask = model.preprocess.text(PROMPTS[:batch])
    return x, ids, mask


def _policies():
    cases = []
    for name in list_models():
        model = create_model(name, size="tiny")
        cases += [(name, policy) for policy in model.train_policies]
    return cases


def test_registry_lists_every_family():
    assert list_models() == [
        "clipseg",
        "biomedclipseg",
        "biomedclipseg_d",
        "cris",
        "unet",
        "unetpp",
        "deeplabv3plus",
    ]


def test_unknown_name_lists_valid_names():
    with pytest.raises(KeyError, match="clipseg, biomedclipseg, biomedclipseg_d, cris"):
        create_model("clipsegg", size="tiny")
    with pytest.raises(ValueError, match="paper, tiny"):
        create_model("clipseg", size="huge")
    with pytest.raises(ValueError, match="valid: decoder, all"):
        create_model("clipseg", size="tiny", train="text")


@pytest.mark.parametrize("name", list(MODELS))
def test_tiny_output_shape_and_preprocessing_facts(name):
    model = create_model(name, size="tiny")
    x, ids, mask = _inputs(model, batch=2)
    with torch.no_grad():
        out = model.eval()(x, ids, mask)
    assert out.shape == (2, 1, *model.preprocess.image_size) and torch.isfinite(out).all()
    facts = model.describe()
    assert facts["name"] == name and 0 < facts["threshold"] < 1
    assert facts["trainable_params"] == sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )


@pytest.mark.parametrize("name, policy", _policies())
def test_gradients_reach_exactly_the_trainable_set(name, policy):
    torch.manual_seed(0)
    model = create_model(name, size="tiny", train=policy).train()
    declared = model.trainable_parameter_names()
    assert declared, "a policy must train something"
    x, ids, mask = _inputs(model)
    target = (torch.rand(4, 1, *model.preprocess.image_size) > 0.5).float()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(x, ids, mask)
        torch.nn.functional.binary_cross_entropy_with_logits(logits, target).backward()

    # A second step: zero-initialised residual gammas (open_clip's ResNet) pass no gradient to
    # the convolutions before them until the first update makes them nonzero.
    step()
    opt.step()
    step()
    reached = {
        n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0
    }
    assert reached == declared, (sorted(declared - reached)[:5], sorted(reached - declared)[:5])


def test_clipseg_faithful_policy_trains_only_the_decoder():
    model = create_model("clipseg", size="tiny")
    assert model.policy == "decoder"
    assert all(n.startswith("net.decoder.") for n in model.trainable_parameter_names())
    everything = create_model("clipseg", size="tiny", train="all").trainable_parameter_names()
    assert any(n.startswith("net.clip.vision_model.encoder.layers.0.") for n in everything)
    assert any(n.startswith("net.clip.text_model.") for n in everything)


@pytest.mark.slow
@pytest.mark.parametrize("size", ["tiny", "paper"])
def test_clipseg_forward_equals_hf_forward(size):
    torch.manual_seed(0)
    model = create_model("clipseg", size=size).eval()
    x, ids, mask = _inputs(model, batch=2)
    with torch.no_grad():
        ours = model(x, ids, mask)
        theirs = model.net(input_ids=ids, pixel_values=x, attention_mask=mask).logits
    assert ours.shape == (2, 1, *model.preprocess.image_size)
    torch.testing.assert_close(ours[:, 0], theirs, rtol=0, atol=1e-5)


def test_clipseg_paper_size_offline_has_published_parameter_count():
    model = create_model("clipseg", size="paper")
    total = sum(p.numel() for p in model.parameters())
    decoder = sum(p.numel() for p in model.net.decoder.parameters())
    assert abs(total - 150.7e6) < 0.2e6 and abs(decoder - 1.13e6) < 0.01e6
    assert model.preprocess.image_size == (352, 352) and model.preprocess.context_length == 77
    assert model.describe()["trainable_params"] == decoder  # the paper's effective finetune


def test_biomedclipseg_paper_size_offline_counts_and_blocks():
    model = create_model("biomedclipseg_d", size="paper")
    towers = sum(p.numel() for p in model.towers.parameters())
    assert abs(towers - 196e6) < 1e6  # BiomedCLIP: ViT-B/16 + PubMedBERT
    assert model.extract_blocks == (3, 6, 9)
    assert model.preprocess.image_size == (224, 224) and model.preprocess.context_length == 256
    x, ids, mask = _inputs(model, batch=1)
    with torch.no_grad():
        assert model(x, ids, mask).shape == (1, 1, 224, 224)


def test_biomedclipseg_reference_blocks_change_the_features():
    torch.manual_seed(0)
    ours = create_model("biomedclipseg", size="tiny").eval()
    ref = create_model("biomedclipseg", size="tiny", extract_blocks=(2, 3, 4)).eval()
    ref.load_state_dict(ours.state_dict())
    x, _, _ = _inputs(ours, batch=1)
    a, b = ours.encode_image(x), ref.encode_image(x)
    torch.testing.assert_close(a[1], b[0])  # block 2 is the second of ours, the first of theirs
    assert not torch.allclose(a[0], b[0])
    with pytest.raises(ValueError, match="extract_blocks"):
        create_model("biomedclipseg", size="tiny", extract_blocks=(3, 4, 5))


def test_biomedclipseg_masks_padding():
    torch.manual_seed(0)
    model = create_model("biomedclipseg", size="tiny").eval()
    ids, mask = model.preprocess.text(["small polyp"])
    with torch.no_grad():
        emb = model.encode_text(ids, mask)
        # the same tokens without padding give the same embedding: padding is masked out
        n = int(mask.sum())
        short = model.encode_text(ids[:, :n], mask[:, :n])
    torch.testing.assert_close(emb, short, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["clipseg", "biomedclipseg_d"])
def test_paper_weights_offline_say_how_to_get_them(name):
    with pytest.raises(WeightsUnavailable, match="pre-download"):
        create_model(name, size="paper", weights="pretrained")


def test_clipseg_local_weights_path_is_named_in_the_error(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(WeightsUnavailable, match="no_such_model"):
        create_model("clipseg", size="paper", weights=str(missing))


@pytest.mark.slow
def test_tiny_wordpiece_vocabulary_is_the_same_in_every_process():
    # a checkpoint trained in one process must load in another (embedding rows = vocabulary)
    import subprocess
    import sys

    code = (
        "from vlsm_lib.models.tokenizers import tiny_wordpiece as t; "
        "print(sorted(t().backend.get_vocab().items()))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1


def test_biomedclipseg_d_keeps_its_decoder_over_the_base_checkpoint(tmp_path):
    from vlsm_lib.models.weights import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(create_model("biomedclipseg", size="tiny", train="all"), tmp_path / "base")
    donor = create_model("clipseg", size="tiny", train="all")
    save_checkpoint(donor, tmp_path / "clipseg")
    model = create_model(
        "biomedclipseg_d",
        size="tiny",
        weights=str(tmp_path / "base"),
        decoder_weights=str(tmp_path / "clipseg"),
    )
    base = create_model("biomedclipseg", size="tiny", weights=str(tmp_path / "base"))
    for key, value in model.decoder.state_dict().items():
        torch.testing.assert_close(value, donor.net.decoder.state_dict()[key])
    for key, value in model.towers.state_dict().items():
        torch.testing.assert_close(value, base.towers.state_dict()[key])


def test_clipseg_text_skips_the_shared_padding_exactly():
    """Causal text attention: the pooled end token never sees the padding after the longest
    prompt, so encoding without it equals HF's full-length forward (to rounding)."""
    torch.manual_seed(0)
    model = create_model("clipseg", size="tiny").eval()
    ids, mask = model.preprocess.text(["a polyp", "one small pink round polyp at the top", ""])
    longest = int(mask.sum(1).max())
    assert longest < ids.shape[1]  # there is padding to skip
    with torch.no_grad():
        full = model.net.clip.get_text_features(ids, attention_mask=mask).pooler_output
        torch.testing.assert_close(model.encode_text(ids, mask), full, atol=1e-5, rtol=1e-5)
        # and the tower really ran on the shorter sequence
        seen = []
        hook = model.net.clip.text_model.embeddings.register_forward_hook(
            lambda _m, _i, out: seen.append(out.shape[1])
        )
        model.encode_text(ids, mask)
        hook.remove()
    assert seen == [longest]


@pytest.mark.slow
def test_paper_clipseg_with_random_weights_is_fully_initialised():
    """The paper-size random build runs HF's initialisation only (torch's is skipped): every
    tensor is drawn as by the full construction (same spread), none left as allocated."""
    from transformers import CLIPSegForImageSegmentation

    from vlsm_lib.models.clipseg import paper_config

    torch.manual_seed(0)
    model = create_model("clipseg", size="paper", head_init="hf")
    torch.manual_seed(0)
    full = dict(CLIPSegForImageSegmentation(paper_config()).named_parameters())
    for name, p in model.named_parameters():
        p, ref = p.detach(), full[name.removeprefix("net.")].detach()
        assert torch.isfinite(p).all(), name
        if p.numel() > 1000:
            assert float(p.std()) == pytest.approx(float(ref.std()), rel=0.1, abs=1e-6), name
        else:
            assert float(p.abs().max()) <= 10 * max(float(ref.abs().max()), 1e-6), name
