"""``sources.prepare`` for CAMUS and CheXlocalize on miniature fakes of their downloads
(tests/fakes/camus_cxr.py): layout, masks, patient splits, prompts, readers and errors."""

import json
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from vlsm_lib.data.sources import SourceError, prepare
from vlsm_lib.data.sources.camus import read_mhd
from vlsm_lib.data.sources.chexlocalize import rle_mask
from vlsm_lib.data.sources.fakes.camus_cxr import (
    CAMUS_PATIENTS,
    CXR_FINDINGS,
    CXR_MASKS,
    FAKES,
    camus_labels,
    camus_public,
    cxr_mask,
    cxr_split,
    rle_string,
)
from vlsm_lib.data.sources.fakes.camus_cxr import camus as camus_fake


def _prepare(fake, name, tmp):
    """(download, dataset folder, warning messages) of one fake prepared under tmp."""
    download = fake(tmp / "download")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folder = prepare(name, download, tmp / "out")
    return download, folder, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Each fake prepared once: {name: (download, dataset folder, warning messages)}."""
    return {n: _prepare(f, n, tmp_path_factory.mktemp(n)) for n, f in FAKES.items()}


def _anns(folder):
    """{split: records} of a prepared dataset."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((folder / "anns").glob("*.json"))}


def _entries(folder):
    return [(split, e) for split, entries in _anns(folder).items() for e in entries]


def _check_masks(folder):
    """Every record's image and mask exist, the mask is 0/255 and of its image's size."""
    for _, entry in _entries(folder):
        with Image.open(folder / "images" / entry["img_name"]) as img:
            size = img.size
        with Image.open(folder / "masks" / entry["mask_name"]) as m:
            assert m.mode == "L" and m.size == size
            assert set(np.unique(np.asarray(m))) <= {0, 255}


def _pixels(path, mode=None):
    with Image.open(path) as img:
        return np.asarray(img.convert(mode) if mode else img)


def _clusters_per_split(folder):
    out = {}
    for split, entry in _entries(folder):
        out.setdefault(split, set()).add(entry["cluster"])
    return out


def _disjoint(groups):
    seen = [g for values in groups.values() for g in values]
    return len(seen) == len(set(seen))


# --- CAMUS ---------------------------------------------------------------------------------


def test_camus_layout_masks_and_dataset_json(prepared):
    _, folder, _ = prepared["camus"]
    about = json.loads((folder / "dataset.json").read_text())
    # 3 train patients (51-53), 2 val (1, 2), 2 test, each 4 frames x 3 structures
    assert about["records"] == {"train": 36, "val": 24, "test": 24}
    assert about["family"] == "camus" and not about["skipped"]
    _check_masks(folder)
    by_image = {}
    for split, entry in _entries(folder):
        top = "test" if split == "test" else "train"
        assert entry["img_name"].startswith(f"{top}/patient")
        stem = entry["img_name"].split("/")[1][: -len(".png")]
        structure = entry["mask_name"].split("/")[1]
        assert entry["mask_name"] == f"{top}/{structure}/{stem}_gt.png"
        by_image.setdefault(entry["img_name"], []).append(structure)
    assert len(by_image) == 28
    assert all(sorted(s) == ["mask_1", "mask_2", "mask_3"] for s in by_image.values())
    assert not list((folder / "images").rglob("*sequence*"))


def test_camus_masks_are_the_structures_upright(prepared):
    _, folder, _ = prepared["camus"]
    for label in (1, 2, 3):
        mask = _pixels(folder / f"masks/train/mask_{label}/patient0001_4CH_ES_gt.png")
        np.testing.assert_array_equal(mask == 255, camus_labels("ES") == label)
    image = _pixels(folder / "images/train/patient0001_4CH_ES.png", "L")
    assert image[camus_labels("ES") == 2].min() >= 150  # the bright myocardium, not transposed


def test_camus_splits_by_patient(prepared):
    _, folder, _ = prepared["camus"]
    clusters = _clusters_per_split(folder)
    assert _disjoint(clusters)
    assert clusters["val"] == {"train/patient0001", "train/patient0002"}
    assert clusters["test"] == {"test/patient0001", "test/patient0002"}
    assert clusters["train"] == {f"train/patient{n:04d}" for n in (51, 52, 53)}


def _prompt(folder, split, mask_name, key):
    entry = next(e for e in _anns(folder)[split] if e["mask_name"] == mask_name)
    return entry["prompts"][key][0]


def test_camus_prompts_carry_the_metadata(prepared):
    _, folder, _ = prepared["camus"]
    p6 = _prompt(folder, "val", "train/mask_1/patient0001_2CH_ED_gt.png", "p6")
    assert p6 == (  # spec Appendix A, the reference's first CAMUS record
        "Left ventricular cavity in two-chamber view of the heart at end of the diastole "
        "cycle of a seventy-three-year-old male with good image quality."
    )
    p6 = _prompt(folder, "val", "train/mask_3/patient0002_4CH_ES_gt.png", "p6")
    assert p6.startswith("Left atrium cavity in four-chamber view")
    assert "systole cycle of a forty-five-year-old female with medium image quality" in p6
    p6 = _prompt(folder, "test", "test/mask_2/patient0002_2CH_ES_gt.png", "p6")
    assert p6.startswith("Myocardium") and "fifty-seven-year-old male with poor" in p6


def test_camus_missing_info_is_warned_and_left_out(prepared):
    _, folder, messages = prepared["camus"]
    warned = [m for m in messages if "Info_4CH.cfg" in m]
    assert len(warned) == 1 and "patient0052" in warned[0]
    assert "no sex, age, image quality" in warned[0]
    p6 = _prompt(folder, "train", "train/mask_1/patient0052_4CH_ED_gt.png", "p6")
    assert (
        p6
        == "Left ventricular cavity in four-chamber view of the heart at end of the diastole cycle."
    )
    two = _prompt(folder, "train", "train/mask_1/patient0052_2CH_ED_gt.png", "p6")
    assert "eighty-one-year-old female" in two


def test_camus_testing_without_ground_truth_deals_the_training_patients(tmp_path):
    _, folder, messages = _prepare(lambda t: camus_fake(t, test_gt=False), "camus", tmp_path)
    assert any("holds no ground truth" in m for m in messages)
    about = json.loads((folder / "dataset.json").read_text())
    assert sum(about["records"].values()) == 5 * 12
    clusters = _clusters_per_split(folder)
    assert _disjoint(clusters) and all(c.startswith("train/") for v in clusters.values() for c in v)


def test_camus_public_release_nifti(tmp_path):
    pytest.importorskip("nibabel")
    _, folder, _ = _prepare(camus_public, "camus", tmp_path)
    about = json.loads((folder / "dataset.json").read_text())
    # 10 patients x 12 records dealt by patient in the paper's 4800/600/600 proportions
    assert about["records"] == {"train": 96, "val": 12, "test": 12}
    _check_masks(folder)
    clusters = _clusters_per_split(folder)
    assert _disjoint(clusters) and all(
        len(v) * 12 == about["records"][s] for s, v in clusters.items()
    )
    name = "mask_2/patient0003_2CH_ED_gt.png"  # flat names: patient numbers are unique
    np.testing.assert_array_equal(_pixels(folder / "masks" / name) == 255, camus_labels("ED") == 2)
    assert list(CAMUS_PATIENTS.values())[3] == ("F", 81, "Good")  # the fake's patient 3
    split = next(s for s, e in _entries(folder) if e["mask_name"] == name)
    assert "eighty-one-year-old female with good image quality" in _prompt(
        folder, split, name, "p6"
    )


def _write_mhd(path, header, data):
    path.write_bytes(header.encode() + data)


def test_read_mhd_types_byte_order_local_and_compressed(tmp_path):
    frame = (np.arange(12).reshape(3, 4) * 300).astype(">u2")
    head = "NDims = 2\nDimSize = 4 3\nElementType = MET_USHORT\nBinaryDataByteOrderMSB = True\n"
    _write_mhd(tmp_path / "a.mhd", head + "ElementDataFile = LOCAL\n", frame.tobytes())
    np.testing.assert_array_equal(read_mhd(tmp_path / "a.mhd"), frame)
    small = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    (tmp_path / "b.zraw").write_bytes(zlib.compress(small.tobytes()))
    head = "DimSize = 4 3 2\nElementType = MET_FLOAT\nCompressedData = True\n"
    _write_mhd(tmp_path / "b.mhd", head + "ElementDataFile = b.zraw\n", b"")
    np.testing.assert_array_equal(read_mhd(tmp_path / "b.mhd"), small)


# --- CheXlocalize --------------------------------------------------------------------------


def test_chexlocalize_layout_masks_and_dataset_json(prepared):
    download, folder, _ = prepared["chexlocalize"]
    about = json.loads((folder / "dataset.json").read_text())
    assert sum(about["records"].values()) == sum(map(len, CXR_MASKS.values()))
    assert about["family"] == "chexlocalize" and not about["skipped"]
    _check_masks(folder)
    for _, entry in _entries(folder):
        image_id = entry["img_name"][: -len(".jpg")]
        source = download / "CheXpert" / cxr_split(image_id) / "/".join(image_id.split("_", 2))
        assert (folder / "images" / entry["img_name"]).read_bytes() == source.with_suffix(
            ".jpg"
        ).read_bytes()
        assert entry["mask_name"].startswith(image_id + "_") and entry["cluster"] == image_id
        mask = _pixels(folder / "masks" / entry["mask_name"]) == 255
        assert mask.any()
    # the human-benchmark file is not read: no Edema on the test images other than the real one
    edema = [e["mask_name"] for _, e in _entries(folder) if e["mask_name"].endswith("_edema.png")]
    assert edema == ["patient64741_study1_view1_frontal_edema.png"]


@pytest.mark.parametrize(
    "image_id, pathology",
    [
        ("patient64541_study1_view1_frontal", "Atelectasis"),  # RLE (val)
        ("patient64742_study1_view2_lateral", "Consolidation"),  # polygons (test)
    ],
)
def test_chexlocalize_masks_are_the_annotations(prepared, image_id, pathology):
    _, folder, _ = prepared["chexlocalize"]
    name = f"{image_id}_{pathology.lower().replace(' ', '_')}.png"
    mask = _pixels(folder / "masks" / name) == 255
    np.testing.assert_array_equal(mask, cxr_mask(CXR_MASKS[image_id][pathology]))


def test_chexlocalize_splits_by_patient(prepared):
    _, folder, _ = prepared["chexlocalize"]
    patients = {}
    for split, entry in _entries(folder):
        patients.setdefault(split, set()).add(entry["img_name"].split("_")[0])
    assert _disjoint(patients) and set(patients) == {"train", "val", "test"}


def _cxr_prompts(folder, mask_name):
    return next(e["prompts"] for _, e in _entries(folder) if e["mask_name"] == mask_name)


def test_chexlocalize_prompts_carry_pathology_view_and_findings(prepared):
    _, folder, _ = prepared["chexlocalize"]
    prompts = _cxr_prompts(folder, "patient64541_study1_view2_lateral_airspace_opacity.png")
    assert prompts["p1"] == "Airspace Opacity in a chest Xray."
    assert prompts["p2"] == "Airspace Opacity in the lateral view of a Chest Xray."
    found = "Enlarged Cardiomediastinum, Lung Opacity, Atelectasis are present."
    assert (
        prompts["p5"].endswith(found)
        and prompts["p6"] == f"Airspace Opacity in a Chest Xray. {found} "
    )
    prompts = _cxr_prompts(folder, "patient64742_study1_view1_frontal_lung_lesion.png")
    assert "frontal view" in prompts["p2"]
    assert prompts["p5"].endswith(f"{', '.join(CXR_FINDINGS['patient64742_study1'])} are present.")


def test_chexlocalize_unlabelled_image_is_warned(prepared):
    _, folder, messages = prepared["chexlocalize"]
    assert any("no row in the labels CSV" in m and "patient64744" in m for m in messages)
    prompts = _cxr_prompts(folder, "patient64744_study1_view1_frontal_support_devices.png")
    assert prompts["p6"] == "Support Devices in a Chest Xray. "


def test_rle_round_trip_and_uncompressed_counts():
    mask = np.random.default_rng(0).random((7, 5)) > 0.6
    assert (rle_mask({"size": [7, 5], "counts": rle_string(mask)}) == mask).all()
    runs = {"size": [2, 3], "counts": [1, 2, 3]}  # pixels 1, 2 down the columns: (1, 0), (0, 1)
    np.testing.assert_array_equal(rle_mask(runs), [[False, True, False], [True, False, False]])


# --- wrong folders -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected", [("camus", "database_nifti"), ("chexlocalize", "gt_segmentations")]
)
def test_wrong_folder_names_what_was_expected_and_found(tmp_path, name, expected):
    (tmp_path / "holiday").mkdir()
    (tmp_path / "notes.txt").write_text("not a dataset")
    with pytest.raises(SourceError, match=expected) as err:
        prepare(name, tmp_path, tmp_path / "out")
    assert "notes.txt" in str(err.value) and "holiday" in str(err.value)
    assert not (tmp_path / "out" / name).exists()
