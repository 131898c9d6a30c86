"""Misspelt or out-of-range parameters are refused before any run starts, naming the fix."""

import pytest
import yaml

from vlsm_lib import paths
from vlsm_lib.data.medshapes.synthetic import write_dataset
from vlsm_lib.grid.runner import plan
from vlsm_lib.models import list_models


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("VLSM_DATA", str(tmp_path / "data"))  # the runner injects data_root


def study(tmp_path, **defaults):
    spec = {
        "notebook": "notebooks/finetune.ipynb",
        "defaults": {"size": "tiny", **defaults},
        "grid": {"model": ["cris"], "dataset": ["synth_polyp"], "prompt": ["p6"]},
    }
    path = tmp_path / "suite" / "finetune.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "defaults, message",
    [
        ({"lr": -0.001}, r"lr > 0"),
        ({"lr": "fast"}, r"lr='fast' is a str; the notebook expects a float"),
        ({"max_epochs": 2.5}, r"max_epochs=2.5 is a float; the notebook expects a int"),
        ({"loss": "dice_bce_typo"}, r"loss='dice_bce_typo' is not valid; choose one of"),
        ({"model_options": {"clip_weight": "RN50.pt"}}, r"'clip_weight'.*valid: clip_weights"),
        ({"surface_metrics": "yes"}, r"surface_metrics='yes' is a str.*bool"),
    ],
)
def test_a_bad_value_is_refused_before_any_run(tmp_path, defaults, message):
    with pytest.raises(ValueError, match=message) as err:
        plan([study(tmp_path, **defaults)], outputs=tmp_path / "out")
    assert "finetune__cris__synth_polyp__p6" in str(err.value)  # names the run
    assert not (tmp_path / "out").exists()  # nothing started


def test_unknown_models_and_prompt_keys_are_refused(tmp_path):
    path = study(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["grid"] = {"model": ["crisp"], "dataset": ["synth_polyp"], "prompt": ["P6"]}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(ValueError) as err:
        plan([path], outputs=tmp_path / "out")
    assert "unknown model 'crisp'; valid: clipseg" in str(err.value)
    assert "prompt='P6': a prompt is 'random' or a level p0, p1" in str(err.value)
    write_dataset(
        "synth_polyp", tmp_path / "data", size=32, counts={"train": 2, "val": 1, "test": 1}
    )
    spec["grid"] = {"model": ["cris"], "dataset": ["synth_polyp"], "prompt": ["p12"]}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(ValueError, match=r"prompt='p12' is not a prompt key of synth_polyp: p0"):
        plan([path], outputs=tmp_path / "out")


@pytest.mark.parametrize("model", list_models())
def test_every_model_builder_refuses_an_unknown_option(tmp_path, model):
    path = study(tmp_path, model_options={"no_such_option": 1})
    spec = yaml.safe_load(path.read_text())
    spec["grid"]["model"] = [model]
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(ValueError, match=rf"'no_such_option' for model '{model}'; valid"):
        plan([path], outputs=tmp_path / "out")


def test_the_shipped_suites_pass(tmp_path):
    for suite in ("demo", "smoke", "paper"):
        files = sorted((paths.REPO_ROOT / "params" / suite).glob("*.yaml"))
        assert sum(len(runs) for _, runs in plan(files, outputs=tmp_path)) > 0


def test_names_that_would_escape_their_folders_are_refused(tmp_path):
    path = study(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["grid"]["dataset"] = [".."]
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(ValueError, match=r"dataset='\.\.' cannot go into a run id"):
        plan([path], outputs=tmp_path / "out")
    spec["grid"].pop("dataset")
    spec["defaults"]["dataset"] = "../../etc"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(ValueError, match=r"'\.\./\.\./etc' is not a dataset name"):
        plan([path], outputs=tmp_path / "out")


def test_a_symlink_in_a_dataset_is_replaced_not_followed_by_writes(tmp_path):
    from vlsm_lib.data.check import CHECK_JSON, check

    folder = write_dataset(
        "synth_polyp", tmp_path / "data", size=32, counts={"train": 2, "val": 1, "test": 1}
    )
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    (folder / CHECK_JSON).symlink_to(outside)
    check([folder])
    assert outside.read_text() == "precious" and not (folder / CHECK_JSON).is_symlink()


def test_a_missing_checkpoint_that_a_study_needs_stops_the_plan(tmp_path):
    import json

    from vlsm_lib.models import create_model
    from vlsm_lib.models.weights import save_checkpoint

    pretrained = tmp_path / "out" / "suite" / "pretrain" / "pretrain__cris"
    save_checkpoint(create_model("cris", size="tiny"), pretrained)
    (pretrained / "run.json").write_text(json.dumps({"status": "complete"}))
    path = study(tmp_path, weights=str(pretrained))
    assert plan([path], outputs=tmp_path / "out")  # the checkpoint is there: fine
    (pretrained / "checkpoint.safetensors").unlink()  # lost when results were copied
    with pytest.raises(ValueError, match=r"complete but its checkpoint.safetensors is missing"):
        plan([path], outputs=tmp_path / "out")
    path = study(tmp_path, weights=str(pretrained.parent / "pretrain__never_run"))
    with pytest.raises(ValueError, match=r"does not exist and no run of this plan writes it"):
        plan([path], outputs=tmp_path / "out")
