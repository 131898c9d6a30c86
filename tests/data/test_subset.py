"""Data efficiency: the seeded, stratified training fraction."""

import json

import numpy as np
import pytest

from vlsm_lib.data.dataset import load_dataset
from vlsm_lib.data.io import read_mask
from vlsm_lib.data.medshapes.synthetic import write_dataset
from vlsm_lib.data.subset import distinct_records, stratified_clusters, take_fraction
from vlsm_lib.models import create_model
from vlsm_lib.notebook import verbs


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    counts = {"train": 40, "val": 4, "test": 4}
    for name in ("synth_ultrasound", "synth_polyp"):
        write_dataset(name, out, seed=3, size=32, counts=counts)
    return out


@pytest.fixture(scope="module")
def pre():
    return create_model("unet", size="tiny").preprocess


def _empty(ds):
    return [read_mask(ds.paths(i)[1]).sum() == 0 for i in range(len(ds))]


def test_fraction_keeps_each_stratum_in_proportion_and_is_seeded(root, pre):
    full = load_dataset(root, "synth_ultrasound", "train", pre)
    empty_share = np.mean(_empty(full))
    assert 0 < empty_share < 1  # the fixture has both kinds
    part = take_fraction(load_dataset(root, "synth_ultrasound", "train", pre), 0.25, seed=42)
    kept = part.fraction["kept"]
    assert part.fraction == {"fraction": 0.25, "kept": kept, "of": 40} and 8 <= kept <= 12
    # the kept records, cycled up to the split's length: as many steps per epoch as the whole
    assert len(part) == 40 and part.records == [part.records[i % kept] for i in range(40)]
    assert len({r["img_name"] for r in part.records}) == kept == distinct_records(part)
    assert any(_empty(part)) and not all(_empty(part))
    assert abs(np.mean(_empty(part)) - empty_share) < 0.2
    again = take_fraction(load_dataset(root, "synth_ultrasound", "train", pre), 0.25, seed=42)
    other = take_fraction(load_dataset(root, "synth_ultrasound", "train", pre), 0.25, seed=43)
    names = lambda d: [r["img_name"] for r in d.records]  # noqa: E731
    assert names(again) == names(part) and names(other) != names(part)
    assert set(names(part)) <= set(names(full))
    whole = take_fraction(load_dataset(root, "synth_ultrasound", "train", pre), 1.0, seed=42)
    assert names(whole) == names(full)


def test_clusters_stay_whole_and_small_strata_survive():
    clusters = {f"p{i}": [0.1 * (i % 5 + 1)] * 3 for i in range(20)}
    clusters["lonely"] = [0.0]  # the one all-empty cluster
    keep = stratified_clusters(clusters, 0.1, seed=0, name="d")
    assert "lonely" in keep and len(keep) == 1 + 1 + 1  # one per stratum (empty, small, large)
    assert keep <= set(clusters)


def test_pooled_sets_draw_each_member_and_bad_fractions_are_refused(root, pre):
    train, val = verbs.datasets(root, "synth_ultrasound+synth_polyp", pre, "p1", 42, "val", 0.5)
    kept = [d.fraction["kept"] for d in train.datasets]
    assert all(15 <= k <= 25 for k in kept) and distinct_records(train) == sum(kept)
    assert len(train) == 80 and len(val) == 8
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ValueError, match="train_fraction must be in"):
            take_fraction(load_dataset(root, "synth_polyp", "train", pre), bad, seed=1)


def test_cluster_key_groups_records(root, pre, tmp_path):
    """Records that share a ``cluster`` (a patient) are kept or dropped together."""
    import shutil

    shutil.copytree(root / "synth_polyp", tmp_path / "synth_polyp")
    anns = tmp_path / "synth_polyp" / "anns" / "train.json"
    records = json.loads(anns.read_text())
    for i, rec in enumerate(records):
        rec["cluster"] = f"patient{i // 4}"
    anns.write_text(json.dumps(records))
    part = take_fraction(load_dataset(tmp_path, "synth_polyp", "train", pre), 0.3, seed=5)
    kept = [r["cluster"] for r in part.records[: part.fraction["kept"]]]
    assert all(kept.count(c) == 4 for c in set(kept))
