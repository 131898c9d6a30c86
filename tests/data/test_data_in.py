"""Data in: `vlsm data import` on real images, `vlsm data check` (leaks, copies), atomic writes,
bad input, and the refusal of a leaky dataset by the notebooks' data step."""

import json
import shutil

import matplotlib.cbook
import numpy as np
import papermill
import pytest
from PIL import Image
from scipy import ndimage

from vlsm_lib import paths
from vlsm_lib.cli import main
from vlsm_lib.data import build
from vlsm_lib.data.importer import import_folder
from vlsm_lib.data.io import DataError
from vlsm_lib.notebook import verbs


def _mri() -> np.ndarray:
    """A real MRI slice that matplotlib ships (256 x 256, 8-bit values stored big-endian)."""
    with matplotlib.cbook.get_sample_data("s1045.ima.gz") as f:
        return (np.frombuffer(f.read(), np.uint16).reshape(256, 256).byteswap()).astype(np.uint8)


def real_folder(root, n=16, side=96):
    """Crops of the MRI slice as images; masks of the brightest connected region of each crop,
    made by thresholding (not MedShapes): 0/1 PNGs, a few as palette images; a metadata CSV
    that puts every two crops under one "patient"."""
    mri, rng = _mri(), np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["image,patient,shape"]
    for i in range(n):
        y, x = rng.integers(0, 256 - side, 2)
        crop = mri[y : y + side, x : x + side]
        labels, k = ndimage.label(crop > np.percentile(crop, 80))
        sizes = ndimage.sum(np.ones_like(crop), labels, range(1, k + 1))
        mask = (labels == 1 + int(np.argmax(sizes))).astype(np.uint8) if k else crop * 0
        Image.fromarray(np.stack([crop] * 3, -1)).save(root / "images" / f"slice{i:02d}.png")
        m = Image.fromarray(mask)  # 0/1 label mask
        if i % 5 == 0:
            m = m.convert("P")  # palette image with indices 0/1
        m.save(root / "masks" / f"slice{i:02d}_mask.png")
        rows.append(f"slice{i:02d}.png,p{i // 2},round")
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    src = real_folder(tmp_path_factory.mktemp("real"))
    out = tmp_path_factory.mktemp("data")
    with pytest.warns(UserWarning, match="1 masks without an image"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(src / "masks" / "orphan.png")
        folder = import_folder(
            src / "images",
            src / "masks",
            "brain_mri",
            "bright region",
            out,
            src / "meta.csv",
            split_by="patient",
        )
    return folder


def test_import_writes_a_dataset_whose_groups_stay_in_one_split(imported):
    about = json.loads((imported / "dataset.json").read_text())
    assert about["records"] == {"train": 12, "val": 2, "test": 2} and about["unmatched_masks"] == 1
    where = {}
    for split in ("train", "val", "test"):
        for rec in json.loads((imported / "anns" / f"{split}.json").read_text()):
            where.setdefault(rec["cluster"], set()).add(split)
            mask = np.asarray(Image.open(imported / "masks" / rec["mask_name"]))
            assert set(np.unique(mask)) <= {0, 255} and mask.any()
            assert set(rec["prompts"]) == {f"p{k}" for k in range(7)}  # no descriptions: P0-P6
            assert rec["prompts"]["p2"] == "round bright region"  # shape from the metadata
    assert all(len(s) == 1 for s in where.values())  # a patient never in two splits
    assert main(["data", "check", str(imported)]) == 0


@pytest.mark.slow
def test_imported_real_data_runs_zero_shot_and_finetune(imported, tmp_path):
    for notebook, extra in (("zero_shot", {}), ("finetune", {"max_epochs": 1, "min_epochs": 1})):
        run_dir = tmp_path / notebook
        papermill.execute_notebook(
            str(paths.REPO_ROOT / "notebooks" / f"{notebook}.ipynb"),
            str(tmp_path / f"{notebook}.ipynb"),
            parameters={
                "model": "clipseg",
                "size": "tiny",
                "weights": "",
                "prompt": "p6",
                "dataset": "brain_mri",
                "data_root": str(imported.parent),
                "run_dir": str(run_dir),
                "surface_metrics": False,
                **extra,
            },
            kernel_name="python3",
            progress_bar=False,
        )
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["n_images"] == 2 and 0 <= metrics["dice"] <= 1


def test_check_flags_copies_and_a_leak_and_exits_1(imported, tmp_path, capsys):
    a, b = tmp_path / "brain_mri", tmp_path / "brain_copy"
    shutil.copytree(imported, a)
    shutil.copytree(imported, b)
    train = json.loads((a / "anns" / "train.json").read_text())
    test = json.loads((a / "anns" / "test.json").read_text())
    (a / "anns" / "test.json").write_text(json.dumps(test + train[:1]))
    assert main(["data", "check", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert f"brain_mri: leak: images in two splits: ['{train[0]['img_name']}']" in out
    assert (
        "brain_copy: copy: its annotation files ['train.json', 'val.json'] are brain_mri's" in out
    )
    assert "brain_copy: copy: 16 of its 16 images are brain_mri's" in out
    with pytest.raises(DataError, match="found .*leak.*allow_leaks=True"):
        verbs.check_leaks(tmp_path, False, "brain_mri")
    assert verbs.check_leaks(tmp_path, True, "brain_mri") == ["brain_mri"]
    verbs.check_leaks(tmp_path, False, "brain_copy")  # copies are flagged, not leaks


def test_bad_masks_are_skipped_and_listed_and_an_empty_source_is_an_error(tmp_path):
    src = real_folder(tmp_path / "src", n=6)
    three = np.zeros((96, 96), np.uint8)
    three[:10], three[10:20] = 1, 2
    Image.fromarray(three).save(src / "masks" / "slice00_mask.png")  # three levels
    (src / "images" / "slice01.png").write_bytes(b"not a png")  # truncated image
    with pytest.warns(UserWarning, match="skipped 2 of 6 records"):
        folder = import_folder(src / "images", src / "masks", "mri", "region", tmp_path / "out")
    skipped = json.loads((folder / "dataset.json").read_text())["skipped"]
    assert {s["image"].rsplit("/", 1)[1] for s in skipped} == {"slice00.png", "slice01.png"}
    assert "3 levels" in " ".join(s["why"] for s in skipped)
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="no image files"):
        import_folder(tmp_path / "none", src / "masks", "x", "y", tmp_path / "out")


def test_an_interrupted_write_leaves_the_old_dataset_and_no_complete_looking_folder(
    imported, tmp_path, monkeypatch
):
    out = tmp_path / "data"
    shutil.copytree(imported, out / "brain_mri")
    before = sorted(p.name for p in (out / "brain_mri" / "images").iterdir())
    src = real_folder(tmp_path / "src", n=6)
    calls = {"n": 0}
    real = build._write_image

    def dies_on_the_third(record, folder):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the user pressed ctrl-c
        return real(record, folder)

    monkeypatch.setattr(build, "_write_image", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        import_folder(src / "images", src / "masks", "brain_mri", "region", out)
    assert sorted(p.name for p in (out / "brain_mri" / "images").iterdir()) == before
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == ["brain_mri"]
    monkeypatch.setattr(build, "_write_image", real)
    import_folder(src / "images", src / "masks", "brain_mri", "region", out)  # re-run: replaced
    assert len(list((out / "brain_mri" / "images").iterdir())) == 6
    assert not list(out.glob(".brain_mri.*"))  # nothing left aside
