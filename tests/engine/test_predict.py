"""Your own images and words: load_model / predict, and `vlsm predict` over files."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import vlsm_lib
from vlsm_lib.cli import main
from vlsm_lib.data.dataset import load_dataset
from vlsm_lib.engine.evaluate import evaluate
from vlsm_lib.engine.predict import as_image
from vlsm_lib.models import create_model, load_checkpoint
from vlsm_lib.models.weights import save_checkpoint


@pytest.fixture(scope="module")
def trained(tiny_cris):
    """A tiny CRIS finetuned for two epochs on MedShapes polyps at p6 (conftest.tiny_cris)."""
    return tiny_cris


def _test_files(root: Path, model, prompt="p6"):
    ds = load_dataset(root, "synth_polyp", "test", model.preprocess, prompt)
    return ds, [ds.paths(i) for i in range(len(ds))], [ds.prompt_text(i) for i in range(len(ds))]


@pytest.mark.slow  # trains a tiny CRIS first
def test_predict_writes_masks_whose_dice_is_the_finetune_runs_own(trained, tmp_path, capsys):
    """The finetune notebook scores a test image with engine.evaluate; `vlsm predict` on the
    same checkpoint, images and prompts writes masks with the same per-image Dice."""
    run, root = trained
    model = load_checkpoint(run)
    ds, files, prompts = _test_files(root, model)
    own = evaluate(model, ds, surface=False, progress=False).set_index("image_id")["dice"]
    assert own.max() > 0  # a model that finds polyps, not one that predicts nothing
    table = tmp_path / "prompts.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "prompt"])
        writer.writerows([img.name, text] for (img, _), text in zip(files, prompts))
    out = tmp_path / "pred"
    args = ["predict", str(run), str(root / "synth_polyp" / "images" / "test_*.png")]
    args += ["--prompts", str(table), "--masks", str(root / "synth_polyp" / "masks"), "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    assert f"{len(files)} masks, 0 skipped, {len(files)} scored" in capsys.readouterr().out
    got = pd.read_csv(out / "predictions.csv")
    got["image_id"] = [Path(p).name for p in got["image"]]
    merged = got.set_index("image_id").join(own.rename("own"))
    np.testing.assert_allclose(merged["dice"], merged["own"], rtol=0, atol=1e-9)
    for (img, _), name in zip(files, got["mask"]):
        mask = np.asarray(Image.open(out / name))
        assert mask.shape == Image.open(img).size[::-1] and set(np.unique(mask)) <= {0, 255}
    assert (out / "overlays" / files[0][0].name).is_file()
    facts = json.loads((out / "predict.json").read_text())
    assert facts["model"] == "cris" and facts["predicted"] == len(files)
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.slow  # trains a tiny CRIS first
def test_the_python_api_in_three_lines_matches_the_command(trained, tmp_path):
    run, root = trained
    model = vlsm_lib.load_model(run, device="cpu")
    image = root / "synth_polyp" / "images" / "test_0000.png"
    mask = model.predict(image, "one small pink round polyp, located in top left of the image")
    assert mask.dtype == bool and mask.shape == Image.open(image).size[::-1]
    as_array = np.asarray(Image.open(image).convert("RGB"))
    same = model.predict(as_array, "one small pink round polyp, located in top left of the image")
    np.testing.assert_array_equal(same, mask)  # PIL, numpy and a path give one answer
    probs = model.predict(image, "polyp", probabilities=True)
    assert probs.dtype == np.float32 and probs.shape == mask.shape and 0 <= probs.min()
    assert probs.max() <= 1
    words = [model.predict(image, p, probabilities=True) for p in ("polyp", "two large polyps")]
    assert not np.allclose(*words)  # CRIS reads the words


def test_load_model_by_name_and_its_errors(tmp_path):
    model = vlsm_lib.load_model("unet", size="tiny", device="cpu")
    assert not model.reads_text and model.predict(np.zeros((40, 50), np.uint8)).shape == (40, 50)
    with pytest.raises(KeyError, match="neither a checkpoint folder nor a model name"):
        vlsm_lib.load_model("no_such_model")
    with pytest.raises(ValueError, match="holds no model.json"):
        vlsm_lib.load_model(tmp_path)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        as_image(np.full((4, 4), 3.0))
    with pytest.raises(ValueError, match=r"\(H, W\), \(H, W, 3\)"):
        as_image(np.zeros((4, 4, 2), np.uint8))


@pytest.mark.slow  # trains a tiny CRIS first
def test_bad_inputs_are_named_and_lose_nothing(trained, tmp_path, capsys):
    run, root = trained
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        src = root / "synth_polyp" / "images" / f"test_000{i}.png"
        (images / src.name).write_bytes(src.read_bytes())
    (images / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["predict", str(run), str(images), "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "3 masks, 1 skipped" in captured.out and "skipped" in captured.err
    assert "broken.png" in pd.read_csv(out / "skipped.csv")["image"].iloc[0]
    # an existing output folder is refused, and kept as it was
    before = (out / "predictions.csv").read_bytes()
    assert main(["predict", str(run), str(images), "--out", str(out), "--quiet"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "predictions.csv").read_bytes() == before
    assert main(["predict", str(run), str(images), "--out", str(out), "--overwrite", "--quiet",
                 "--prompt", "polyp"]) == 0  # fmt: skip
    assert set(pd.read_csv(out / "predictions.csv")["prompt"]) == {"polyp"}
    capsys.readouterr()
    # a prompts file without a row for an image names it before any model runs
    table = tmp_path / "p.csv"
    table.write_text("image,prompt\ntest_0000.png,polyp\n")
    code = main(["predict", str(run), str(images), "--out", str(tmp_path / "o2"),
                 "--prompts", str(table), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and re.search(r"no prompt for 3 image\(s\): .*test_0001\.png", err)
    assert not (tmp_path / "o2").exists()
    # an image-only model given prompts is warned once
    unet = tmp_path / "unet"
    save_checkpoint(create_model("unet", size="tiny"), unet)
    assert main(["predict", str(unet), str(images), "--out", str(tmp_path / "o3"), "--quiet",
                 "--prompt", "polyp"]) == 0  # fmt: skip
    assert capsys.readouterr().err.count("image-only model") == 1
    # nothing to read, a missing path
    assert main(["predict", str(run), str(tmp_path / "none"), "--out", str(tmp_path / "o4")]) == 2
    assert "no such image, folder or glob" in capsys.readouterr().err


@pytest.mark.slow  # trains a tiny CRIS first
def test_an_interrupted_call_leaves_only_a_partial_folder(trained, tmp_path, monkeypatch):
    """A crash mid-way leaves `.out.partial`, never `out`; the next call replaces it."""
    from vlsm_lib.engine import predict_files as pf

    run, root = trained
    images = root / "synth_polyp" / "images"
    calls = {"n": 0}
    real = pf.overlay

    def crash(*a):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(pf, "overlay", crash)
    with pytest.raises(KeyboardInterrupt):
        main(["predict", str(run), str(images / "test_000*.png"), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists() and (tmp_path / ".o.partial").is_dir()
    monkeypatch.setattr(pf, "overlay", real)
    assert main(["predict", str(run), str(images / "test_000*.png"), "--out", str(tmp_path / "o"),
                 "--quiet"]) == 0  # fmt: skip
    assert (tmp_path / "o" / "predictions.csv").is_file()
    assert not (tmp_path / ".o.partial").exists()


def _readme_block(language: str, after: str) -> str:
    """The first ``language`` code block after the heading ``after`` in README.md."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split(after, 1)[1]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow  # trains a tiny CRIS first
def test_the_readme_examples_run(trained, tmp_path, monkeypatch, capsys):
    """README's "Your images, your words": the command and the Python lines, executed as
    written, in a folder laid out as `make study` leaves it (a finetuned CRIS, MedShapes)."""
    import shlex
    import shutil

    run, root = trained
    monkeypatch.chdir(tmp_path)
    shutil.copytree(run, "outputs/demo/finetune/finetune__cris__synth_polyp__p6")
    shutil.copytree(root / "synth_polyp", "outputs/data/synth_polyp")
    command = _readme_block("bash", "## Your images, your words").replace("\\\n", " ")
    words = shlex.split(command)
    assert words[0] == ".venv/bin/vlsm" and main(words[1:]) == 0
    assert len(pd.read_csv("outputs/predict/predictions.csv")) == len(
        list(Path("outputs/data/synth_polyp/images").glob("*.png"))
    )
    code = _readme_block("python", "## Your images, your words")
    exec(compile(code, "README.md", "exec"), {})
    shape = Image.open("outputs/data/synth_polyp/images/test_0000.png").size[::-1]
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(f"({shape[0]}, {shape[1]})")
