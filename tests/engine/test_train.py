"""The engine: fit learns, resumes exactly, fails clearly; cache, checkpoints, evaluate, augment."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vlsm_lib.data.augment import Augmenter
from vlsm_lib.data.dataset import load_dataset
from vlsm_lib.data.medshapes.synthetic import write_dataset
from vlsm_lib.engine.config import TrainConfig, from_dict
from vlsm_lib.engine.evaluate import COLUMNS, evaluate
from vlsm_lib.engine.feature_cache import FeatureCache
from vlsm_lib.engine.losses import make_loss
from vlsm_lib.engine.train import NonFiniteLoss, StepSetup, fit, make_step_setup, step, validate
from vlsm_lib.models import WeightsMismatch, create_model, load_checkpoint
from vlsm_lib.models.weights import load_trained_state, save_checkpoint


@pytest.fixture(scope="module")
def polyps(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_dataset(
        "synth_polyp", root, seed=5, size=128, counts={"train": 96, "val": 16, "test": 16}
    )
    return root


def _sets(root, model, prompt="p6", splits=("train", "val")):
    return [load_dataset(root, "synth_polyp", s, model.preprocess, prompt=prompt) for s in splits]


def _cfg(**kw):
    base = {
        "lr": 1e-3,
        "batch_size": 16,
        "max_epochs": 3,
        "min_epochs": 1,
        "patience": 50,
        "progress": False,
    }
    return TrainConfig(**{**base, **kw})


def _tiny(name="clipseg", train="all", seed=0):
    torch.manual_seed(seed)
    return create_model(name, size="tiny", train=train)


def test_short_training_raises_dice_far_above_before(polyps, tmp_path):
    model = _tiny()
    train, val, test = _sets(polyps, model, splits=("train", "val", "test"))
    cfg = _cfg(max_epochs=10)
    _, before = validate(model, test, cfg, make_loss("dice_bce"))
    result = fit(model, train, val, cfg, tmp_path)
    _, after = validate(load_checkpoint(tmp_path), test, cfg, make_loss("dice_bce"))
    assert after > before + 0.3 and result.best_val_dice > 0.25, (before, after)
    assert len(result.history) == 10 and result.stopped == "max_epochs"
    row = result.history[-1]  # the per-epoch facts benchmarks/ reads
    assert row["steps"] == 96 // 16 and row["train_seconds"] + row["val_seconds"] <= row["seconds"]
    assert 0 < row["step_seconds"] <= row["train_seconds"]


def _step_batch(model, n=4):
    torch.manual_seed(1)
    x = torch.randn(n, 3, 64, 64)
    return {"pixel_values": x, "mask": (torch.rand(n, 1, 64, 64) < 0.3).float()}


def test_step_clips_the_gradient_norm():
    """With SGD at lr 1 the update is the clipped gradient: its norm is at most grad_clip."""
    model = _tiny("unet")
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    setup = make_step_setup(params, _cfg(grad_clip=1e-3), torch.device("cpu"))
    setup = StepSetup(**{**vars(setup), "opt": torch.optim.SGD(params, lr=1.0)})
    loss = step(model.forward_batch, _step_batch(model), setup)
    update = torch.cat([(p.detach() - b).flatten() for p, b in zip(params, before)])
    assert loss.ndim == 0 and 0 < float(update.norm()) <= 1e-3 * 1.001


def test_step_raises_on_a_non_finite_loss_and_leaves_the_model():
    model = _tiny("unet")
    setup = make_step_setup(model.parameters(), _cfg(), torch.device("cpu"))
    before = [p.detach().clone() for p in model.parameters()]
    nan_forward = lambda b: model.forward_batch(b) * float("nan")
    with pytest.raises(NonFiniteLoss, match=r"loss is nan at step 3\. Lower the learning rate"):
        step(nan_forward, _step_batch(model), setup, "at step 3")
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


@pytest.mark.parametrize("state_every_s, replayed", [(0.0, [2]), (1e9, [0, 1, 2])])
def test_interrupted_fit_resumes_to_the_same_weights(polyps, tmp_path, state_every_s, replayed):
    """Every epoch's state written (0 s): the resumed run trains epoch 2 only. States throttled
    (never before the last epoch): it restarts from epoch 0. Both end on the same weights."""
    cfg = _cfg(max_epochs=3, max_steps_per_epoch=3, state_every_s=state_every_s)
    straight = _tiny()
    fit(straight, *_sets(polyps, straight), cfg, tmp_path / "straight")

    def interrupt(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    first = _tiny()
    with pytest.raises(KeyboardInterrupt):
        fit(first, *_sets(polyps, first), cfg, tmp_path / "resumed", on_epoch_end=interrupt)
    # with a state to load, the rebuilt model's own weights must not matter (other seed); with
    # none, a fresh process rebuilds them as the notebook does, seeded
    again = _tiny(seed=123 if replayed == [2] else 0)
    trained = []
    result = fit(
        again,
        *_sets(polyps, again),
        cfg,
        tmp_path / "resumed",
        on_epoch_end=lambda row: trained.append(row["epoch"]),
    )
    assert trained == replayed
    assert result.epochs_run == 3 and [r["epoch"] for r in result.history] == [0, 1, 2]
    for (name, a), (_, b) in zip(straight.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    # the best checkpoint too: same epoch, same weights (held in RAM between throttled writes)
    runs = ("straight", "resumed")
    best = [load_file(str(tmp_path / d / "checkpoint.safetensors")) for d in runs]
    assert best[0].keys() == best[1].keys()
    assert all(torch.equal(best[0][k], best[1][k]) for k in best[0])
    meta = [json.loads((tmp_path / d / "model.json").read_text()) for d in runs]
    assert meta[0]["epoch"] == meta[1]["epoch"] == result.best_epoch


def test_early_stopping_waits_for_min_epochs(polyps, tmp_path):
    model = _tiny("unet")
    cfg = _cfg(lr=1e-9, max_epochs=8, min_epochs=4, patience=1, max_steps_per_epoch=1)
    result = fit(model, *_sets(polyps, model), cfg, tmp_path)
    assert result.stopped == "early_stopping" and result.epochs_run == 4


class NaNAfterFirstEpoch(torch.utils.data.Dataset):
    def __init__(self, base):
        self.base, self.epoch = base, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        item = self.base[i]
        if self.epoch >= 1:
            item["pixel_values"] = torch.full_like(item["pixel_values"], float("nan"))
        return item


@pytest.mark.parametrize("state_every_s", [0.0, 1e9])
def test_nan_loss_stops_with_a_clear_error_and_keeps_the_best_checkpoint(
    polyps, tmp_path, state_every_s
):
    """Written after epoch 0 (0 s), or held in RAM and written as the error leaves fit (1e9 s)."""
    model = _tiny("unet")
    train, val = _sets(polyps, model)
    cfg = _cfg(max_steps_per_epoch=2, state_every_s=state_every_s)
    with pytest.raises(NonFiniteLoss, match="epoch 1"):
        fit(model, NaNAfterFirstEpoch(train), val, cfg, tmp_path)
    kept = load_checkpoint(tmp_path)
    assert all(torch.isfinite(p).all() for p in kept.parameters())
    assert json.loads((tmp_path / "model.json").read_text())["epoch"] == 0


def test_max_steps_per_epoch_loads_only_the_batches_it_uses(polyps, tmp_path):
    model = _tiny()
    train, val = _sets(polyps, model)
    loaded = []
    getitem = type(train).__getitem__
    train.__class__ = type("Counting", (type(train),), {
        "__getitem__": lambda self, i: loaded.append(i) or getitem(self, i)
    })  # fmt: skip
    fit(model, train, val, _cfg(max_epochs=2, batch_size=8, max_steps_per_epoch=2), tmp_path)
    assert len(loaded) == 2 * 2 * 8


def test_empty_validation_set_is_an_error(polyps, tmp_path):
    model = _tiny("unet")
    train, _ = _sets(polyps, model)
    with pytest.raises(ValueError, match="empty validation set"):
        fit(model, train, [], _cfg(), tmp_path)


def test_checkpoint_mismatch_names_missing_and_unexpected_keys(tmp_path):
    model = _tiny("unet")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    gone = next(iter(model.trainable_parameter_names()))
    del state[gone]
    state["head.extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsMismatch) as err:
        load_trained_state(model, state, "ckpt.safetensors")
    assert gone in str(err.value) and "head.extra.weight" in str(err.value)


def test_finetune_of_a_saved_base_stores_only_what_trains(tmp_path):
    base = _tiny("clipseg", train="all")
    save_checkpoint(base, tmp_path / "pretrained")  # random weights: stored whole
    tuned = create_model(
        "clipseg", size="tiny", weights=str(tmp_path / "pretrained"), train="decoder"
    )
    with torch.no_grad():
        for p in tuned.net.decoder.parameters():
            p.add_(0.01)
    save_checkpoint(tuned, tmp_path / "tuned")
    stored = load_file(str(tmp_path / "tuned" / "checkpoint.safetensors"))
    assert set(stored) <= {k for k, _ in tuned.named_buffers()} | {
        n for n, _ in tuned.named_parameters() if n.startswith("net.decoder.")
    }
    again = load_checkpoint(tmp_path / "tuned")  # rebuilds the base, then loads the decoder
    x = torch.randn(1, 3, 128, 128)
    ids, mask = tuned.preprocess.text(["polyp"])
    with torch.no_grad():
        torch.testing.assert_close(tuned.eval()(x, ids, mask), again(x, ids, mask))


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_feature_cache_equals_uncached_training(polyps, tmp_path, mode):
    cfg = _cfg(max_epochs=2, max_steps_per_epoch=2)
    plain, cached = _tiny(train="decoder"), _tiny(train="decoder")
    fit(
        plain,
        *_sets(polyps, plain),
        TrainConfig(**{**cfg.to_dict(), "feature_cache": "off"}),
        tmp_path / "plain",
    )
    result = fit(
        cached,
        *_sets(polyps, cached),
        TrainConfig(**{**cfg.to_dict(), "feature_cache": mode}),
        tmp_path / mode,
    )
    assert result.cache == mode
    for (name, a), (_, b) in zip(plain.state_dict().items(), cached.state_dict().items()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)


def test_feature_cache_forward_matches_model_and_counts_hits(polyps, tmp_path):
    model = _tiny(train="decoder").eval()
    (val,) = _sets(polyps, model, splits=("val",))
    batch = next(iter(torch.utils.data.DataLoader(val, batch_size=4)))
    cache = FeatureCache(model, len(val), mode="disk", folder=tmp_path)
    with torch.no_grad():
        expected = model.forward_batch(batch)
        torch.testing.assert_close(cache.forward(batch), expected)
        torch.testing.assert_close(cache.forward(batch), expected)
    assert cache.misses == 4 and cache.hits == 4 and (tmp_path / "level0.npy").is_file()


def test_evaluate_rows_at_original_resolution_and_saved_masks(polyps, tmp_path):
    model = _tiny("unet").eval()
    (test,) = _sets(polyps, model, splits=("test",))
    table = evaluate(model, test, batch_size=8, masks_dir=tmp_path, progress=False)
    assert list(table.columns) == COLUMNS and len(table) == len(test)
    assert (table.height == 128).all() and table.image_id.is_unique
    row = table.iloc[0]
    saved = np.asarray(Image.open(tmp_path / "synth_polyp" / row.image_id))
    assert saved.shape == (128, 128) and set(np.unique(saved)) <= {0, 255}
    truth = np.asarray(Image.open(polyps / "synth_polyp" / "masks" / row.image_id)) > 127
    pred = saved > 127
    inter = (pred & truth).sum()
    expected = 1.0 if pred.sum() + truth.sum() == 0 else 2 * inter / (pred.sum() + truth.sum())
    assert row.dice == pytest.approx(expected)
    assert row.tp + row.fp + row.fn + row.tn == 128 * 128


def test_gathered_rows_keep_the_training_set_apart_from_each_image_source(polyps, tmp_path):
    """A pooled run's per-image table: ``source`` is the member an image comes from, ``dataset``
    the run's training set (evaluate's column once shadowed the run parameter)."""
    from vlsm_lib.data.dataset import PooledDataset
    from vlsm_lib.results import PER_IMAGE, save_run

    model = _tiny("unet").eval()
    (test,) = _sets(polyps, model, splits=("test",))
    pooled = PooledDataset([test, test])
    table = evaluate(model, pooled, batch_size=8, progress=False)
    save_run(tmp_path, {"model": "unet", "dataset": "synth_pooled", "prompt": "p6"}, table)
    saved = pd.read_parquet(tmp_path / PER_IMAGE)
    assert (saved["dataset"] == "synth_pooled").all()
    assert (saved["source"] == "synth_polyp").all() and len(saved) == 2 * len(test)


def test_augmentation_moves_image_and_mask_together():
    model = _tiny("unet")
    mask = torch.zeros(4, 1, 64, 64)
    mask[:, :, 5:20, 30:60] = 1
    pre = model.preprocess
    raw = mask.repeat(1, 3, 1, 1)
    x = (raw - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
    out = Augmenter(pre, seed=1, colour=False)({"pixel_values": x, "mask": mask}, 0, 0)
    back = out["pixel_values"] * torch.tensor(pre.std).view(1, 3, 1, 1) + torch.tensor(
        pre.mean
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(back[:, :1], out["mask"], atol=1e-5, rtol=0)
    assert not torch.equal(out["mask"], mask)  # something moved


@pytest.mark.parametrize("fast_bf16, applied", [(False, "highest"), (True, "medium")])
def test_fit_applies_and_reports_the_matmul_precision(
    polyps, tmp_path, monkeypatch, fast_bf16, applied
):
    from vlsm_lib.engine import runtime

    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: fast_bf16)
    before = torch.get_float32_matmul_precision()
    try:
        model = _tiny("unet")
        cfg = _cfg(max_epochs=1, max_steps_per_epoch=1, matmul_precision="medium")
        result = fit(model, *_sets(polyps, model), cfg, tmp_path)
        assert result.matmul_precision == applied == torch.get_float32_matmul_precision()
    finally:
        torch.set_float32_matmul_precision(before)


def test_train_config_rejects_unknown_keys_and_values():
    with pytest.raises(KeyError, match="valid: lr, weight_decay"):
        from_dict(TrainConfig, {"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="dice_bce, dice, bce"):
        TrainConfig(loss="focal")


def test_a_last_training_batch_of_one_image_is_dropped_not_fatal(polyps, tmp_path):
    """17 training images at batch 16 leave one over: DeepLabv3+'s image-pooling BatchNorm
    cannot train on a single 1x1 map, so that batch is dropped (another image each epoch)."""
    from torch.utils.data import Subset

    from vlsm_lib.engine.train import loader

    model = _tiny("deeplabv3plus")
    train, val = _sets(polyps, model)
    seventeen = Subset(train, range(17))  # 17 = 16 + 1
    cfg = _cfg(max_epochs=1)
    assert [len(b["pixel_values"]) for b in loader(seventeen, cfg, shuffle=True)] == [16]
    assert [len(b["pixel_values"]) for b in loader(seventeen, cfg, shuffle=False)] == [16, 1]
    assert [len(b["pixel_values"]) for b in loader(Subset(train, range(18)), cfg, True)] == [16, 2]
    result = fit(model, seventeen, val, cfg, tmp_path)
    assert len(result.history) == 1  # the epoch trained
