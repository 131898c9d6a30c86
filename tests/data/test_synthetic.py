"""MedShapes: determinism, masks agreeing with their prompts, the referring set, the CLI."""

import filecmp
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from vlsm_lib.cli import main
from vlsm_lib.data import prompts as P
from vlsm_lib.data.dataset import load_dataset
from vlsm_lib.data.medshapes.synthetic import SPECS, write_dataset, write_medshapes
from vlsm_lib.data.transforms import Preprocess

SMALL = {"train": 6, "val": 2, "test": 6}
GRID = [
    ["top left", "top", "top right"],
    ["left", "center", "right"],
    ["bottom left", "bottom", "bottom right"],
]
WORDS = {"one": 1, "two": 2, "three": 3}


@pytest.fixture(scope="module")
def medshapes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("medshapes")
    write_medshapes(out, seed=3, size=64, counts=SMALL)
    return out


def _records(root: Path, name: str) -> list[tuple[str, dict, np.ndarray]]:
    out = []
    for split in SPECS[name].counts:
        for rec in json.loads((root / name / "anns" / f"{split}.json").read_text()):
            mask = np.asarray(Image.open(root / name / "masks" / rec["mask_name"])) > 127
            out.append((split, rec, mask))
    return out


def _truth(mask: np.ndarray):
    """Independent reading of a mask: count, size phrase, allowed grid cells per component."""
    h, w = mask.shape
    labels, n = ndimage.label(mask)
    classes, allowed = set(), []
    for k in range(1, n + 1):
        comp = labels == k
        cov = comp.mean()
        if cov > 1e-4:
            classes.add(
                "large"
                if cov > 0.3
                else "medium"
                if cov > 0.08
                else "tiny"
                if cov < 0.001
                else "small"
            )
        ys, xs = np.nonzero(comp)
        share = np.zeros((3, 3))
        np.add.at(share, (ys * 3 // h, xs * 3 // w), 1 / len(ys))  # rows by H, columns by W
        cells = {GRID[r][c] for r, c in zip(*np.nonzero(share >= 0.10))}
        allowed.append(cells)
    size = ", ".join(s for s in ("tiny", "small", "medium", "large") if s in classes)
    return n, size, allowed


def _check_locations(text: str, allowed: list[set], pattern: str):
    claimed = re.search(pattern, text).group(1).split(", ")
    assert len(claimed) == len(allowed), text
    for cell, ok in zip(claimed, allowed):
        assert cell in ok, (text, ok)


def test_same_seed_gives_identical_files(tmp_path):
    a = write_dataset("synth_polyp", tmp_path / "a", seed=7, size=48, counts=SMALL)
    b = write_dataset("synth_polyp", tmp_path / "b", seed=7, size=48, counts=SMALL)
    c = write_dataset("synth_polyp", tmp_path / "c", seed=8, size=48, counts=SMALL)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 1 + 3 + 2 * sum(SMALL.values())  # meta, 3 anns, images + masks
    for f in files:
        assert filecmp.cmp(a / f, b / f, shallow=False), f
    differ = [f for f in files if f.suffix == ".png" and not filecmp.cmp(a / f, c / f, False)]
    assert len(differ) > len(files) // 2


def test_every_dataset_written_with_its_splits(medshapes):
    for name, spec in SPECS.items():
        anns = sorted(p.stem for p in (medshapes / name / "anns").glob("*.json"))
        assert anns == sorted(spec.counts), name
        meta = json.loads((medshapes / name / "medshapes.json").read_text())
        assert meta["seed"] == 3 and meta["images_per_split"] == {s: SMALL[s] for s in anns}
    # domain-shifted twins: test only, at another resolution and aspect than synth_polyp
    sizes = {
        n: Image.open(medshapes / n / "images" / "test_0000.png").size
        for n in ("synth_polyp", "synth_polyp_b", "synth_polyp_c")
    }
    assert len(set(sizes.values())) == 3


def test_location_fault_twin_has_the_same_images_and_the_references_words(medshapes):
    right, fault = medshapes / "synth_polyp_ref_wide", medshapes / "synth_polyp_ref_wide_refloc"
    images = sorted(p.name for p in (right / "images").iterdir())
    assert images == sorted(p.name for p in (fault / "images").iterdir())
    assert all(filecmp.cmp(right / "images" / n, fault / "images" / n, False) for n in images)
    w, h = Image.open(right / "images" / images[0]).size
    assert w > h  # landscape: the only frames where the reference's cut differs
    for split in ("train", "val", "test"):
        a = json.loads((right / "anns" / f"{split}.json").read_text())
        b = json.loads((fault / "anns" / f"{split}.json").read_text())
        for ra, rb in zip(a, b, strict=True):
            assert ra["mask_name"] == rb["mask_name"] and ra["prompts"]["p5"] == rb["prompts"]["p5"]
            comps = P.components(np.asarray(Image.open(right / "masks" / ra["mask_name"])) > 127)
            assert rb["attrs"]["locations"] == [P.location_of(c, reference=True) for c in comps]
            assert ra["attrs"]["locations"] == [P.location_of(c) for c in comps]


@pytest.mark.parametrize(
    "name",
    ["synth_polyp", "synth_skin", "synth_polyp_b", "synth_polyp_c", "synth_polyp_ref"]
    + ["synth_polyp_ref_wide"],
)
def test_non_radiology_prompts_agree_with_masks(medshapes, name):
    for _, rec, mask in _records(medshapes, name):
        n, size, allowed = _truth(mask)
        p = rec["prompts"]
        assert n >= 1 and p["p0"] == ""
        count_word = {v: k for k, v in WORDS.items()}[n]
        assert p["p5"].startswith(f"{count_word} {size} "), (p["p5"], n, size)
        _check_locations(p["p6"], allowed, r"located in (.+) of the image$")
        assert len(p["p9"]) == 5
        for alt in p["p9"]:
            _check_locations(alt, allowed, r"located in (.+) of the image$")


def test_ultrasound_prompts_agree_with_masks_and_normals_are_empty(tmp_path):
    root = write_dataset(
        "synth_ultrasound", tmp_path, seed=1, size=64, counts={"train": 30, "val": 2, "test": 2}
    )
    normal = 0
    for rec in json.loads((root / "anns" / "train.json").read_text()):
        mask = np.asarray(Image.open(root / "masks" / rec["mask_name"])) > 127
        n, size, allowed = _truth(mask)
        p = rec["prompts"]
        if n == 0:
            normal += 1
            assert p["p1"] == p["p6"] == "No tumor in the breast ultrasound image."
            assert rec["bbox"] == [64, 64, 0, 0]  # the reference's bbox of an empty mask
            continue
        first = p["p5"][0] if isinstance(p["p5"], list) else p["p5"]
        assert first.lower().startswith(f"{list(WORDS)[n - 1]} {size} "), first
        _check_locations(first, allowed, r"at the (.+) in the breast")
    assert 0 < normal < 30


def test_xray_and_shapes_locations_agree_with_masks(medshapes):
    for _, rec, mask in _records(medshapes, "synth_xray"):
        n, _, allowed = _truth(mask)
        assert n >= 1
        _check_locations(rec["prompts"]["p4"], allowed, r"located in (.+) of the")
        assert rec["prompts"]["p5"].startswith(rec["prompts"]["p4"])
    for _, rec, mask in _records(medshapes, "synth_shapes"):
        n, size, allowed = _truth(mask)
        assert n == 1 and rec["prompts"]["p3"].startswith(size + " ")
        _check_locations(rec["prompts"]["p4"], allowed, r"located in (.+) of the image$")


def test_polyp_ref_prompts_select_different_masks(medshapes):
    by_image: dict[str, list] = {}
    for split, rec, mask in _records(medshapes, "synth_polyp_ref"):
        by_image.setdefault(f"{split}/{rec['img_name']}", []).append((rec, mask))
    assert len(by_image) == sum(SMALL.values())
    for pair in by_image.values():
        assert len(pair) == 2
        (ra, ma), (rb, mb) = pair
        assert ma.any() and mb.any() and not (ma & mb).any()
        # the image holds two polyps: each record's mask is exactly one of them
        assert ndimage.label(ma)[1] == ndimage.label(mb)[1] == 1
        # size (p4) and location (p6) both name one polyp and not the other
        assert ra["prompts"]["p4"] != rb["prompts"]["p4"]
        assert ra["prompts"]["p6"] != rb["prompts"]["p6"]
        assert ra["prompts"]["p1"] == rb["prompts"]["p1"] == "polyp"


def test_medshapes_loads_through_the_dataset(medshapes):
    pre = Preprocess(image_size=(32, 32))
    ds = load_dataset(medshapes, ["synth_polyp", "synth_skin"], "test", pre, prompt="random")
    sample = ds[len(ds) - 1]
    assert sample["dataset"] == "synth_skin" and sample["pixel_values"].shape == (3, 32, 32)
    assert (sample["height"], sample["width"]) == (64, 64) and sample["prompt"]


def test_cli_synth_and_sheet(tmp_path):
    out = tmp_path / "data"
    assert (
        main(
            [
                "data",
                "synth",
                "--out",
                str(out),
                "--size",
                "40",
                "--n-train",
                "2",
                "--n-val",
                "1",
                "--n-test",
                "2",
                "--only",
                "synth_skin",
                "synth_xray",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["synth_skin", "synth_xray"]
    assert len(json.loads((out / "synth_skin" / "anns" / "train.json").read_text())) == 2
    png = tmp_path / "sheet.png"
    assert (
        main(
            [
                "data",
                "sheet",
                "synth_skin",
                "synth_xray",
                "--root",
                str(out),
                "--per-dataset",
                "2",
                "--out",
                str(png),
            ]
        )
        == 0
    )
    assert Image.open(png).size[0] > 100


def test_unknown_dataset_name_lists_valid_ones(tmp_path):
    with pytest.raises(KeyError, match="synth_polyp_ref"):
        write_medshapes(tmp_path, names=["synth_polypp"])
    assert not any(tmp_path.iterdir())  # nothing written before failing


def test_dataset_order_is_append_only():
    """A dataset's place in SPECS seeds its images: inserting one before another would redraw
    every image after it (and every demo number trained on them)."""
    first = ["synth_polyp", "synth_skin", "synth_ultrasound", "synth_xray", "synth_polyp_b"]
    first += ["synth_polyp_c", "synth_polyp_ref", "synth_shapes", "synth_polyp_ref_wide"]
    assert list(SPECS)[: len(first)] == first
