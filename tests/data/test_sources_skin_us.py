"""``sources.prepare`` for ISIC 2016, DFUC 2022 and BUSI, on miniature fakes of their downloads
(tests/fakes/skin_us.py): layout, splits, merged masks, prompts and errors."""

import json
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

from vlsm_lib.data import sources
from vlsm_lib.data.build import decode_mask, split_sizes
from vlsm_lib.data.sources import SourceError, prepare
from vlsm_lib.data.sources import busi as busi_source
from vlsm_lib.data.sources import isic as isic_source
from vlsm_lib.data.sources.fakes.skin_us import (
    BUSI_COUNTS,
    BUSI_MULTI,
    DFU_PAIRS,
    FAKES,
    ISIC_TEST,
    ISIC_TRAIN,
)

NO_TUMOR = "No tumor in the breast ultrasound image."


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Each fake prepared once: {name: (download, dataset folder, warning messages)}."""
    out = {}
    for name, fake in FAKES.items():
        tmp = tmp_path_factory.mktemp(name)
        download = fake(tmp)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            folder = prepare(name, download, tmp / "data")
        out[name] = (download, folder, [str(w.message) for w in caught])
    return out


def _anns(folder) -> dict[str, list[dict]]:
    return {
        s: json.loads((folder / "anns" / f"{s}.json").read_text()) for s in ("train", "val", "test")
    }


def _counts(folder) -> dict[str, int]:
    return {s: len(e) for s, e in _anns(folder).items()}


@pytest.mark.parametrize("name", sorted(FAKES))
def test_layout_masks_and_dataset_json(prepared, name):
    _, folder, _ = prepared[name]
    assert folder.name == name
    anns = _anns(folder)
    for entries in anns.values():
        for entry in entries:
            image = Image.open(folder / "images" / entry["img_name"])
            mask = Image.open(folder / "masks" / entry["mask_name"])
            assert mask.mode == "L" and mask.size == image.size
            assert set(np.unique(np.asarray(mask))) <= {0, 255}
            assert entry["prompts"]["p0"] == "" and entry["prompts"]["p1"]
    about = json.loads((folder / "dataset.json").read_text())
    assert about["name"] == name and about["family"] == sources.get(name).family
    assert about["records"] == {s: n for s, n in _counts(folder).items() if n}
    assert about["url"] == sources.get(name).url and about["terms"]


def test_isic_test_split_is_the_official_test_set(prepared):
    _, folder, messages = prepared["isic"]
    anns = _anns(folder)
    test_ids = sorted(e["img_name"] for e in anns["test"])
    assert test_ids == [f"ISIC_{k:07d}.jpg" for k in range(100, 100 + ISIC_TEST)]
    want = split_sizes(ISIC_TRAIN, isic_source.TRAIN_SIZES)
    assert {s: len(anns[s]) for s in ("train", "val")} == want
    entry = anns["test"][0]
    assert entry["mask_name"] == entry["img_name"].replace(".jpg", "_Segmentation.png")
    assert any("ISIC_0000900.jpg" in m and "ISIC_0000901_Segmentation.png" in m for m in messages)


def test_isic_prompts_are_non_radiology(prepared):
    _, folder, _ = prepared["isic"]
    prompts = _anns(folder)["train"][0]["prompts"]
    assert prompts["p1"] == "skin melanoma" and len(prompts["p7"]) == 5
    assert prompts["p6"].startswith("one ") and "located in" in prompts["p6"]


def test_dfu_splits_names_and_warnings(prepared):
    _, folder, messages = prepared["dfu"]
    assert _counts(folder) == split_sizes(DFU_PAIRS, sources.get("dfu").sizes)
    entry = _anns(folder)["val"][0]
    assert entry["mask_name"] == entry["img_name"].replace(".jpg", ".png")
    assert entry["prompts"]["p1"] == "foot ulcer"
    assert any("109999.jpg" in m for m in messages)


def test_busi_splits_are_stratified_by_class(prepared):
    _, folder, _ = prepared["busi"]
    anns = _anns(folder)
    for cls, count in BUSI_COUNTS.items():
        have = {s: sum(e["mask_name"].endswith(f"_{cls}.png") for e in anns[s]) for s in anns}
        assert have == split_sizes(count, busi_source.CLASS_SIZES[cls]), cls


def test_busi_multi_masks_are_merged(prepared):
    download, folder, _ = prepared["busi"]
    for cls, multi in BUSI_MULTI.items():
        for n, files in multi.items():
            parts = [
                decode_mask(download / "Dataset_BUSI_with_GT" / cls / f"{cls} ({n}){suffix}.png")
                for suffix in ["_mask"] + [f"_mask_{k}" for k in range(1, files)]
            ]
            merged = np.asarray(Image.open(folder / "masks" / f"{n}_{cls}.png")) == 255
            assert np.array_equal(merged, np.logical_or.reduce(parts))
            assert all(merged.sum() > p.sum() for p in parts)


def test_busi_prompts_by_class(prepared):
    _, folder, _ = prepared["busi"]
    entries = [e for split in _anns(folder).values() for e in split]
    normal = [e for e in entries if e["mask_name"].endswith("_normal.png")]
    assert len(normal) == BUSI_COUNTS["normal"]
    for entry in normal:
        assert all(entry["prompts"][f"p{k}"] == NO_TUMOR for k in range(1, 7))
        assert np.asarray(Image.open(folder / "masks" / entry["mask_name"])).max() == 0
    malignant = next(e for e in entries if e["mask_name"].endswith("_malignant.png"))
    assert malignant["prompts"]["p2"] == "Malignant tumor in the breast ultrasound image."


def test_busi_attributes_reach_the_records(tmp_path):
    download = FAKES["busi"](tmp_path)
    attributes = {"benign (1)": {"shape": "oval", "regularity": "regular"}, "2_malignant": {}}
    records = {r.img_name: r for r in busi_source.records(download, attributes)}
    assert records["1_benign.png"].meta == {
        "tumour_class": "benign",
        "shape": "oval",
        "regularity": "regular",
    }
    assert records["1_normal.png"].meta == {"tumour_class": None}
    assert sum(callable(r.mask) for r in records.values()) == sum(map(len, BUSI_MULTI.values()))


def test_isic_reads_extracted_folders_and_attributes(tmp_path):
    download = FAKES["isic"](tmp_path)
    for archive in download.glob("*.zip"):  # the user unzipped them in place
        with zipfile.ZipFile(archive) as z:
            z.extractall(download)
        archive.unlink()
    attributes = {"ISIC_0000001": {"shape": "round", "colour": "brown"}}
    with pytest.warns(UserWarning, match="unmatched"):
        records = isic_source.records(download, attributes)
    assert len(records) == ISIC_TRAIN + ISIC_TEST
    first = next(r for r in records if r.img_name == "ISIC_0000001.jpg")
    assert first.meta == {"class_name": "skin melanoma", "shape": "round", "colour": "brown"}


@pytest.mark.parametrize(
    "name, expected",
    [
        ("isic", "ISBI2016_ISIC_Part1_Training_Data"),
        ("dfu", "DFUC2022_train_images"),
        ("busi", "Dataset_BUSI_with_GT"),
    ],
)
def test_wrong_folder_says_what_was_expected(tmp_path, name, expected):
    (tmp_path / "images").mkdir()
    (tmp_path / "notes.txt").write_text("not a dataset")
    with pytest.raises(SourceError, match=expected) as err:
        prepare(name, tmp_path, tmp_path / "out")
    assert "notes.txt" in str(err.value) and not (tmp_path / "out" / name).exists()


def test_busi_without_a_class_folder_names_the_missing_one(tmp_path):
    download = FAKES["busi"](tmp_path)
    for path in (download / "Dataset_BUSI_with_GT" / "normal").iterdir():
        path.unlink()
    (download / "Dataset_BUSI_with_GT" / "normal").rmdir()
    with pytest.raises(SourceError, match=r"missing \['normal'\]"):
        busi_source.records(download, {})
