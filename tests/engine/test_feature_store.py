"""The shared feature store: written once, read by later runs, equal results, LRU, concurrency."""

import json
import threading

import pytest
import torch

from vlsm_lib.data.dataset import load_dataset
from vlsm_lib.data.medshapes.synthetic import write_dataset
from vlsm_lib.engine import feature_store
from vlsm_lib.engine.config import TrainConfig
from vlsm_lib.engine.evaluate import evaluate, prompt_sweep
from vlsm_lib.engine.feature_cache import FeatureCache, forward_for
from vlsm_lib.engine.feature_store import FeatureStore, tower_key
from vlsm_lib.engine.train import fit
from vlsm_lib.models import create_model
from vlsm_lib.notebook import verbs


@pytest.fixture(scope="module")
def polyps(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_dataset("synth_polyp", root, seed=4, size=64, counts={"train": 12, "val": 4, "test": 6})
    return root


@pytest.fixture(autouse=True)
def no_active_store():
    feature_store.activate(None)
    yield
    feature_store.activate(None)


def _tiny(name="clipseg", train="decoder", seed=0):
    torch.manual_seed(seed)
    return create_model(name, size="tiny", train=train).eval()


def _test_set(root, model, prompt="p6", split="test"):
    return load_dataset(root, "synth_polyp", split, model.preprocess, prompt=prompt)


@pytest.mark.parametrize("name", ["clipseg", "cris"])
def test_evaluation_through_the_store_equals_the_model_and_a_second_run_only_reads(
    polyps, tmp_path, name
):
    store = FeatureStore(tmp_path / "features")
    plain = evaluate(_tiny(name), _test_set(polyps, _tiny(name)), surface=False, progress=False)
    first_model = _tiny(name)
    forward, cache = forward_for(first_model, 6, store)
    first = evaluate(first_model, _test_set(polyps, first_model), surface=False, forward=forward)
    assert store.misses == {"image": 6, "text": 6} and store.hits == {"image": 0, "text": 0}
    # another run: a new process would build the same model from the same seed
    again = FeatureStore(tmp_path / "features")
    second_model = _tiny(name)
    forward, _ = forward_for(second_model, 6, again)
    second = evaluate(second_model, _test_set(polyps, second_model), surface=False, forward=forward)
    assert again.hits == {"image": 6, "text": 6} and again.misses == {"image": 0, "text": 0}
    for table in (first, second):
        assert table["dice"].tolist() == pytest.approx(plain["dice"].tolist(), abs=1e-6)
        assert (table[["tp", "fp", "fn"]].to_numpy() == plain[["tp", "fp", "fn"]].to_numpy()).all()
    assert cache.describe() == "memory + store"


def test_cached_logits_from_the_store_equal_the_models(polyps, tmp_path):
    model = _tiny()
    ds = _test_set(polyps, model)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=6)))
    store = FeatureStore(tmp_path)
    FeatureCache(model, 6, store=store).forward(batch)  # fills the store
    view = FeatureCache(model, 6, mode="disk", store=store)  # a view: nothing of its own
    with torch.no_grad():
        torch.testing.assert_close(view.forward(batch), model.forward_batch(batch))
    assert view.levels is None and view.hits == 6 and not list(tmp_path.glob("level*.npy"))


def test_prompt_levels_share_the_image_features(polyps, tmp_path):
    store = FeatureStore(tmp_path)
    model = _tiny()
    table = prompt_sweep(model, polyps, "synth_polyp", seed=0, keys="p0,p3,p6")
    feature_store._ACTIVE = store
    stored = prompt_sweep(model, polyps, "synth_polyp", seed=0, keys="p0,p3,p6")
    assert stored["dice"].tolist() == pytest.approx(table["dice"].tolist(), abs=1e-6)
    assert store.misses["image"] == 6  # three levels, each image encoded once
    assert len(list((tmp_path / tower_key(model, "image")).glob("*/*.safetensors"))) == 6


def test_decoder_finetunes_with_the_store_equal_those_without_and_the_second_reads_it(
    polyps, tmp_path
):
    cfg = TrainConfig(lr=1e-3, batch_size=4, max_epochs=2, min_epochs=1, progress=False)
    train, val = (_test_set(polyps, _tiny(), split=s) for s in ("train", "val"))
    plain = _tiny(train="decoder")
    fit(plain, train, val, cfg, tmp_path / "plain")
    feature_store._ACTIVE = store = FeatureStore(tmp_path / "features")
    stored = [_tiny(train="decoder") for _ in range(2)]
    results = [fit(m, train, val, cfg, tmp_path / f"run{i}") for i, m in enumerate(stored)]
    assert all(r.cache.endswith("+ store") for r in results)
    assert store.misses["image"] == 16 and store.hits["image"] == 16  # the second run: hits only
    for model in stored:
        for (name, a), (_, b) in zip(plain.state_dict().items(), model.state_dict().items()):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)


def test_a_tower_that_trains_never_uses_the_store(tmp_path):
    store = FeatureStore(tmp_path)
    for policy, parts in [("all", set()), ("text_prompt", {"image"}), ("visual_prompt", {"text"})]:
        model = _tiny(train=policy)
        forward, cache = forward_for(model, 4, store)
        assert (cache.parts if cache else set()) == parts
        if not parts:
            assert forward == model.forward_batch


def test_tower_keys_follow_the_weights_and_biomedclip_towers_are_shared():
    model = _tiny()
    before = tower_key(model, "image")
    assert tower_key(_tiny(), "image") == before  # same seed, same weights
    assert tower_key(_tiny(seed=1), "image") != before
    with torch.no_grad():
        next(model.net.clip.vision_model.parameters()).add_(1e-3)
    assert tower_key(model, "image") != before  # the memo sees the in-place change
    assert tower_key(model, "text") == tower_key(_tiny(), "text")
    # BiomedCLIPSeg-D differs from BiomedCLIPSeg by its decoder only
    plain, with_decoder = _tiny("biomedclipseg"), _tiny("biomedclipseg_d")
    shared = {n: p for n, p in plain.named_parameters() if n.startswith(plain.vision_prefix)}
    with torch.no_grad():
        for n, p in with_decoder.named_parameters():
            if n in shared:
                p.copy_(shared[n])
    assert tower_key(plain, "image") == tower_key(with_decoder, "image")


def test_least_recently_used_entries_go_first_when_over_the_cap(tmp_path):
    entry = {"0": torch.zeros(1000)}  # ~4 kB each
    store = FeatureStore(tmp_path, cap_bytes=1e12)
    for k in ("a1", "b2", "c3", "d4"):
        store.put("tower", k * 8, entry)
    size = store.path("tower", "a1" * 8).stat().st_size
    import os

    for i, k in enumerate(("a1", "b2", "c3", "d4")):
        os.utime(store.path("tower", k * 8), (1000 + i, 1000 + i))
    assert store.get("tower", "a1" * 8) is not None  # a read makes "a1" the most recent
    store.cap_bytes = 3.5 * size
    store.put("tower", "e5" * 8, entry)  # over the cap: evict to 90 % of it (3 entries)
    left = {p.stem[:2] for _, _, p in store.entries()}
    assert left == {"a1", "d4", "e5"}
    assert store.get("tower", "b2" * 8) is None  # evicted: a miss, recomputed by the caller


def test_concurrent_writers_of_one_key_never_leave_a_partial_file(tmp_path):
    value = {"0": torch.arange(200_000, dtype=torch.float32)}
    store = FeatureStore(tmp_path)
    errors, reads = [], []

    def write():
        try:
            for _ in range(15):
                FeatureStore(tmp_path).put("tower", "k" * 32, value)
        except Exception as err:  # noqa: BLE001 - any failure fails the test below
            errors.append(err)

    writing = threading.Event()
    writing.set()

    def read():  # while the writers write, and once after
        while writing.is_set() or not reads:
            got = store.get("tower", "k" * 32)
            if got is not None:
                reads.append(torch.equal(got["0"], value["0"]))

    writers = [threading.Thread(target=write) for _ in range(3)]
    reader = threading.Thread(target=read)
    for t in [*writers, reader]:
        t.start()
    for t in writers:
        t.join()
    writing.clear()
    reader.join()
    assert not errors and reads and all(reads)
    assert [p.name for p in tmp_path.rglob("*")].count("k" * 32 + ".safetensors") == 1
    assert not list(tmp_path.rglob(".tmp-*"))


def test_a_run_records_its_hits_and_misses_and_the_store_can_be_switched_off(tmp_path, monkeypatch):
    run_dir = tmp_path / "suite" / "study" / "run"
    store = feature_store.activate(run_dir)
    assert store.folder == (tmp_path / "suite" / "features").resolve()
    store.hits["image"], store.misses["image"] = 3, 1
    verbs.save(run_dir, {"model": "clipseg"})
    recorded = json.loads((run_dir / "run.json").read_text())["feature_store"]
    assert recorded["image_hits"] == 3 and recorded["image_misses"] == 1
    monkeypatch.setenv(feature_store.STORE_ENV, "off")
    assert feature_store.activate(run_dir) is None
    monkeypatch.setenv(feature_store.STORE_ENV, str(tmp_path / "elsewhere"))
    assert feature_store.activate(run_dir).folder == tmp_path / "elsewhere"
    monkeypatch.setenv(feature_store.CAP_ENV, "lots")
    with pytest.raises(ValueError, match="VLSM_FEATURE_STORE_GB"):
        feature_store.activate(run_dir)
