"""Every one of the paper's 11 datasets: a miniature fake of its official download is prepared,
passes `vlsm data check`, and one of them trains the finetune notebook for an epoch."""

import json
import shutil

import papermill
import pytest

from vlsm_lib import paths
from vlsm_lib.cli import main
from vlsm_lib.data import sources
from vlsm_lib.data.io import DataError
from vlsm_lib.data.sources.fakes import FAKES, REFERENCE_PROMPTS


def test_a_fake_of_every_dataset_and_every_source_registered():
    assert set(FAKES) == set(sources.SOURCES) and len(FAKES) == 11


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """All 11 fakes written and prepared by `vlsm data fakes` (the rehearsal's data step)."""
    out, downloads = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("downloads")
    assert main(["data", "fakes", "--out", str(out), "--downloads", str(downloads)]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(
        [*FAKES, REFERENCE_PROMPTS]
    )
    return out


def test_fakes_prepare_kvasir_from_the_reference_annotation_stand_ins_as_well(prepared):
    """The paper suite's reference-faults study reads {data_root}/reference_prompts/kvasir_polyp:
    the same splits as the regenerated Kvasir, the p6 prompts kept from the annotation files."""
    ours, theirs = prepared / "kvasir_polyp", prepared / REFERENCE_PROMPTS / "kvasir_polyp"
    about = json.loads((theirs / "dataset.json").read_text())
    assert about["prompts_from"] == "reference annotation files (splits and prompts)"
    for split in ("train", "val", "test"):
        a = json.loads((ours / "anns" / f"{split}.json").read_text())
        b = json.loads((theirs / "anns" / f"{split}.json").read_text())
        assert [e["img_name"] for e in a] == [e["img_name"] for e in b] and a
        assert all(
            y["prompts"]["p6"] == x["prompts"]["p6"] + " (reference wording)" for x, y in zip(a, b)
        )
        assert all(y["prompts"]["p5"] == x["prompts"]["p5"] for x, y in zip(a, b))


@pytest.mark.parametrize("name", sorted(FAKES))
def test_prepared_download_passes_the_check(prepared, name, capsys):
    assert main(["data", "check", str(prepared / name)]) == 0, capsys.readouterr().out
    about = json.loads((prepared / name / "dataset.json").read_text())
    assert about["source"] == sources.SOURCES[name].title and sum(about["records"].values()) > 0


@pytest.mark.slow
def test_a_prepared_dataset_trains_the_finetune_notebook_for_one_epoch(prepared, tmp_path):
    run_dir = tmp_path / "run"
    papermill.execute_notebook(
        str(paths.REPO_ROOT / "notebooks" / "finetune.ipynb"),
        str(tmp_path / "finetune.ipynb"),
        parameters={
            "model": "cris",
            "size": "tiny",
            "weights": "",
            "dataset": "kvasir_polyp",
            "prompt": "p6",
            "data_root": str(prepared),
            "run_dir": str(run_dir),
            "max_epochs": 1,
            "min_epochs": 1,
            "surface_metrics": False,
        },
        kernel_name="python3",
        progress_bar=False,
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["n_images"] > 0 and 0 <= metrics["dice"] <= 1


def test_reference_annotation_files_keep_or_regenerate_prompts_and_name_missing_files(
    prepared, tmp_path
):
    download = FAKES["kvasir_polyp"](tmp_path / "download")
    refs = tmp_path / "reference_anns"
    shutil.copytree(prepared / "kvasir_polyp" / "anns", refs)
    test = json.loads((refs / "test.json").read_text())
    test[0]["prompts"]["p6"] = "the reference's own words"
    (refs / "test.json").write_text(json.dumps(test))
    out = tmp_path / "out"
    assert (
        main(
            [
                "data",
                "prepare",
                "kvasir_polyp",
                "--source",
                str(download),
                "--out",
                str(out),
                "--anns",
                str(refs),
            ]
        )
        == 0
    )
    kept = json.loads((out / "kvasir_polyp" / "anns" / "test.json").read_text())
    assert kept[0]["prompts"]["p6"] == "the reference's own words"
    about = json.loads((out / "kvasir_polyp" / "dataset.json").read_text())
    assert about["prompts_from"].startswith("reference annotation files")
    assert (
        main(
            [
                "data",
                "prepare",
                "kvasir_polyp",
                "--source",
                str(download),
                "--out",
                str(out),
                "--anns",
                str(refs),
                "--regenerate-prompts",
            ]
        )
        == 0
    )
    again = json.loads((out / "kvasir_polyp" / "anns" / "test.json").read_text())
    assert [e["img_name"] for e in again] == [e["img_name"] for e in kept]  # same split
    assert again[0]["prompts"]["p6"] != "the reference's own words"
    test.append({**test[0], "img_name": "not_there.jpg", "mask_name": "not_there.jpg"})
    (refs / "test.json").write_text(json.dumps(test))
    with pytest.raises(DataError, match=r"1 files named .*not_there\.jpg"):
        sources.prepare("kvasir_polyp", download, out, anns=refs)
    assert len(json.loads((out / "kvasir_polyp" / "anns" / "test.json").read_text())) == len(kept)
