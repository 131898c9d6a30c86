"""The six polyp sources: each fake download (tests/fakes/polyps.py) prepared into the
project's layout, wrong folders refused with a helpful message, broken files skipped."""

from __future__ import annotations

import importlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from vlsm_lib.data import prompts as P
from vlsm_lib.data.build import split_sizes
from vlsm_lib.data.sources import SOURCES, TEST_ONLY, SourceError, prepare
from vlsm_lib.data.sources.clinicdb import sequence
from vlsm_lib.data.sources.fakes.polyps import (
    CLINICDB_FRAMES,
    FAKES,
    build_clinicdb_png,
    build_colondb,
    build_etis,
    build_etis_benchmark,
    build_kvasir,
    kvasir_id,
)

N = 12
SPLIT_SETS = {"kvasir_polyp", "clinicdb_polyp", "bkai_polyp"}


def _prepare(name: str, source: Path, out: Path, **kw) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean fake must prepare without any warning
        return prepare(name, source, out, **kw)


def _anns(folder: Path) -> dict[str, list]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((folder / "anns").glob("*.json"))}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict[str, Path]:
    """Every fake prepared once: {dataset name: dataset folder}."""
    out = {}
    for name, build in FAKES.items():
        tmp = tmp_path_factory.mktemp(name)
        out[name] = _prepare(name, build(tmp / "download", N), tmp / "data")
    return out


def test_six_sources_registered():
    assert set(FAKES) <= set(SOURCES)
    for name in FAKES:
        source = SOURCES[name]
        assert source.family == "non_radiology"
        assert source.url.startswith("https://") and source.terms and source.expects
        assert (source.sizes == TEST_ONLY) == (name not in SPLIT_SETS)
        reader = importlib.import_module(f"vlsm_lib.data.sources.{source.module}")
        assert callable(reader.records)


@pytest.mark.parametrize("name", sorted(FAKES))
def test_layout_is_the_projects(prepared, name):
    folder = prepared[name]
    anns = _anns(folder)
    entries = [e for split in anns.values() for e in split]
    assert len(entries) == N
    for e in entries:
        assert (folder / "images" / e["img_name"]).is_file()
        mask = Image.open(folder / "masks" / e["mask_name"])
        assert e["mask_name"].endswith(".png") and mask.mode == "L"
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
        assert Path(e["img_name"]).stem == Path(e["mask_name"]).stem  # the reference's names
    about = json.loads((folder / "dataset.json").read_text())
    assert about["name"] == name and about["skipped"] == []
    assert about["source"] == SOURCES[name].title
    assert about["records"] == {s: len(v) for s, v in anns.items()}


@pytest.mark.parametrize("name", sorted(FAKES))
def test_split_counts(prepared, name):
    counts = {s: len(v) for s, v in _anns(prepared[name]).items()}
    if name not in SPLIT_SETS:
        assert counts == {"test": N}  # test-only sets
    elif name == "clinicdb_polyp":
        assert sum(counts.values()) == N and set(counts) == {"train", "val", "test"}
    else:
        assert counts == split_sizes(N, SOURCES[name].sizes)


def test_clinicdb_sequences_stay_in_one_split(prepared):
    split_of = {}
    for split, entries in _anns(prepared["clinicdb_polyp"]).items():
        for e in entries:
            split_of.setdefault(sequence(Path(e["img_name"]).stem), set()).add(split)
    assert len(split_of) == len({sequence(str(k)) for k in CLINICDB_FRAMES})
    assert all(len(splits) == 1 for splits in split_of.values())
    assert sequence("25") == sequence("1") != sequence("26") and sequence("613") == ""


@pytest.mark.parametrize("name", sorted(FAKES))
def test_prompts_come_from_the_masks(prepared, name):
    folder = prepared[name]
    for entries in _anns(folder).values():
        for e in entries:
            mask = np.asarray(Image.open(folder / "masks" / e["mask_name"])) > 127
            expected = P.non_radiology_prompts(P.mask_attributes(mask), "polyp")
            assert e["prompts"] == expected
            assert sorted(e["prompts"]) == [f"p{k}" for k in range(10)]
            assert e["prompts"]["p1"] == "polyp" and "medium" in e["prompts"]["p4"]


def test_bkai_red_and_green_are_both_polyp(prepared):
    entries = [e for v in _anns(prepared["bkai_polyp"]).values() for e in v]
    counts = sorted(e["prompts"]["p5"].split()[0] for e in entries)
    assert counts == ["one"] * (N - 1) + ["two"]  # mask 0 holds a red and a green polyp


def test_test_dataset_decoy_subset_is_not_read(prepared):
    names = {e["img_name"] for e in _anns(prepared["cvc300_polyp"])["test"]}
    assert names == {f"{k}.png" for k in range(149, 149 + N)}


def test_attributes_give_shape_and_colour(tmp_path):
    csv = tmp_path / "attributes.csv"
    csv.write_text(f"image,shape,colour\n{kvasir_id(0)}.jpg,round,pink\n{kvasir_id(1)},oval,\n")
    folder = _prepare("kvasir_polyp", build_kvasir(tmp_path), tmp_path / "out", attributes=csv)
    prompts = {Path(e["img_name"]).stem: e["prompts"] for v in _anns(folder).values() for e in v}
    assert prompts[kvasir_id(0)]["p3"] == "pink round polyp"
    assert prompts[kvasir_id(1)]["p3"] == "oval polyp"
    assert prompts[kvasir_id(2)]["p3"] == "polyp"


def test_clinicdb_png_copy_is_preferred(tmp_path):
    source = build_clinicdb_png(tmp_path)
    tag = PngInfo()
    tag.add_text("copy", "PNG/Original")  # only a byte-for-byte copy keeps it
    for path in (source / "PNG" / "Original").iterdir():
        Image.open(path).save(path, pnginfo=tag)
    folder = _prepare("clinicdb_polyp", source, tmp_path / "out")
    for e in (e for v in _anns(folder).values() for e in v):
        original = source / "PNG" / "Original" / e["img_name"]
        assert (folder / "images" / e["img_name"]).read_bytes() == original.read_bytes()


def test_etis_pranet_copy(tmp_path):
    folder = _prepare("etis_polyp", build_etis_benchmark(tmp_path), tmp_path / "out")
    assert {e["img_name"] for e in _anns(folder)["test"]} == {f"{k}.png" for k in range(1, 13)}


def test_reference_annotation_files_match(tmp_path):
    """The reference's names (Appendix A) find their records: ETIS <n>.png from p<n>.tif."""
    refs = tmp_path / "anns"
    refs.mkdir()
    prompts = {"p0": "", "p1": "polyp"}
    for split, ks in (("train", [1, 2]), ("test", [3, 4, 5])):
        entries = [
            {"img_name": f"{k}.png", "mask_name": f"{k}.png", "prompts": prompts} for k in ks
        ]
        (refs / f"{split}.json").write_text(json.dumps(entries))
    folder = prepare("etis_polyp", build_etis(tmp_path), tmp_path / "out", anns=refs)
    counts = {s: len(v) for s, v in _anns(folder).items()}
    assert counts == {"train": 2, "test": 3}


@pytest.mark.parametrize(
    "name, expected",
    [
        ("kvasir_polyp", "Kvasir-SEG"),
        ("clinicdb_polyp", "Original"),
        ("bkai_polyp", "train"),
        ("cvc300_polyp", "CVC-300"),
        ("colondb_polyp", "CVC-ColonDB"),
        ("etis_polyp", "ETIS-LaribPolypDB"),
    ],
)
def test_wrong_folder_is_refused(tmp_path, name, expected):
    (tmp_path / "holiday").mkdir()
    (tmp_path / "notes.txt").write_text("not a dataset")
    with pytest.raises(SourceError, match=expected) as err:
        prepare(name, tmp_path, tmp_path / "out")
    assert "holiday" in str(err.value)  # says what it found
    assert not (tmp_path / "out" / name).exists()


def test_benchmark_subset_is_not_clinicdb(tmp_path):
    # PraNet's CVC-ClinicDB test subset is not the 612-frame download
    test_dataset = build_colondb(tmp_path)
    (test_dataset / "CVC-ClinicDB" / "images").mkdir(parents=True)
    with pytest.raises(SourceError, match="Original"):
        prepare("clinicdb_polyp", test_dataset, tmp_path / "out")


def test_truncated_image_is_skipped_and_listed(tmp_path):
    source = build_colondb(tmp_path)
    broken = source / "CVC-ColonDB" / "images" / "3.png"
    broken.write_bytes(broken.read_bytes()[:60])
    with pytest.warns(UserWarning, match="skipped 1 of 12"):
        folder = prepare("colondb_polyp", source, tmp_path / "out")
    about = json.loads((folder / "dataset.json").read_text())
    assert [Path(s["image"]).name for s in about["skipped"]] == ["3.png"]
    assert about["records"] == {"test": N - 1}


def test_unpaired_files_are_skipped_with_a_warning(tmp_path):
    source = build_colondb(tmp_path)
    (source / "CVC-ColonDB" / "masks" / "4.png").unlink()
    (source / "CVC-ColonDB" / "images" / "7.png").rename(
        source / "CVC-ColonDB" / "images" / "x.png"
    )
    with pytest.warns(UserWarning, match=r"without a mask \['4', 'x'\].*without an image \['7'\]"):
        folder = prepare("colondb_polyp", source, tmp_path / "out")
    assert len(_anns(folder)["test"]) == N - 2
