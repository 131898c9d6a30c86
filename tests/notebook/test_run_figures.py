"""A run's own figures (vlsm_lib.notebook.plots): the contact sheet reads masks as training
does, the curves and the prediction grid show what they are given, figures are written
atomically."""

import json
from contextlib import nullcontext

import numpy as np
import pytest
from PIL import Image

from vlsm_lib.notebook import plots


def _dataset(root, name="imported", mask_values=(0, 1)):
    """One test record whose mask holds ``mask_values`` (an imported 0/1 label mask)."""
    folder = root / name
    for sub in ("images", "masks", "anns"):
        (folder / sub).mkdir(parents=True)
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(folder / "images" / "a.png")
    mask = np.full((32, 32), mask_values[0], np.uint8)
    mask[8:24, 8:24] = mask_values[1]
    Image.fromarray(mask).save(folder / "masks" / "a.png")
    record = {"img_name": "a.png", "mask_name": "a.png", "prompts": {"p0": "", "p1": "polyp"}}
    (folder / "anns" / "test.json").write_text(json.dumps([record]))
    return name


@pytest.mark.parametrize("values", [(0, 1), (0, 255)])
def test_the_contact_sheet_outlines_a_0_1_mask_as_training_reads_it(tmp_path, values):
    name = _dataset(tmp_path, mask_values=values)
    with (
        pytest.warns(UserWarning, match="treating 1 as foreground")
        if values == (0, 1)
        else nullcontext()
    ):
        fig = plots.contact_sheet(tmp_path, [name], per_dataset=2)
    tile = fig.axes[0]
    assert tile.collections, "the mask's outline is drawn"
    assert "p1: polyp" in [t.get_text() for t in tile.texts]
    assert not fig.axes[1].images  # fewer records than tiles: the tile stays empty


def test_training_curves_plot_every_epoch():
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "val_dice": e / 5}
        for e in range(1, 5)
    ]
    left, right = plots.training_curves(history).axes
    assert [len(line.get_xdata()) for line in left.lines] == [4, 4]
    assert list(right.lines[0].get_ydata()) == [0.2, 0.4, 0.6, 0.8]


def test_the_prediction_grid_draws_truth_and_prediction_outlines():
    empty, square = np.zeros((16, 16), bool), np.zeros((16, 16), bool)
    square[4:12, 4:12] = True
    examples = [
        {"image": np.zeros((16, 16, 3), np.uint8), "truth": square, "prediction": square},
        {"image": np.zeros((16, 16, 3), np.uint8), "truth": square, "prediction": empty},
    ]
    examples[0]["prompt"], examples[1]["prompt"] = "a polyp", ""
    first, second = plots.predictions(examples).axes
    assert len(first.collections) == 2 and len(second.collections) == 1  # nothing predicted
    assert first.get_title() == "a polyp" and second.get_title() == "(empty prompt)"


def test_save_figure_writes_each_format_atomically(tmp_path):
    fig = plots.training_curves([{"epoch": 1, "train_loss": 1, "val_loss": 1, "val_dice": 0.5}])
    written = plots.save_figure(fig, tmp_path, "curves", dpi=40, formats=("png",))
    assert written == [tmp_path / "curves.png"]
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary file left
    both = plots.save_figure(fig, tmp_path / "sub", "curves", dpi=40)
    assert [p.suffix for p in both] == [".png", ".svg"] and all(p.is_file() for p in both)
