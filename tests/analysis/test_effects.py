"""Effects inside prompt-ablation runs: perturbations, the prompt-use index, the sweep that
feeds it, the qualitative examples and oracle levels; numbers checked against scipy."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from vlsm_lib.analysis import effects, figures, stats, tables
from vlsm_lib.data.medshapes.synthetic import write_dataset
from vlsm_lib.data.oracle import is_oracle
from vlsm_lib.engine.evaluate import other_class_prompt, prompt_use_sweep
from vlsm_lib.models import create_model
from vlsm_lib.notebook import qualitative

RNG = np.random.default_rng(1)
N = 16
RIGHT = RNG.uniform(0.5, 0.9, N)


def sweep(run_id, weights, condition, dice, seed=42, **extra):
    """One run's prompt-use rows for one condition."""
    return pd.DataFrame(
        {
            "run_id": run_id,
            "study": "prompt_ablation",
            "model": "cris",
            "dataset": "ref",
            "prompt": "p6",
            "weights": weights,
            "seed": seed,
            "sweep": "use",
            "condition": condition,
            "test_set": "ref",
            "image_id": [f"img{i}" for i in range(len(dice))],
            "dice": dice,
            **extra,
        }
    )


def test_prompt_use_index_is_right_minus_control_with_seeds_averaged_per_image():
    # each seed's ablation reads its own seed's checkpoint: still one configuration
    tuned, zero = "out/finetune/finetune__cris__ref__p6", "out/pretrain/cris"
    empty_42, empty_43 = RIGHT - 0.3, RIGHT - 0.1
    table = pd.concat(
        [
            sweep("prompt_ablation__cris__ref__p6__s42", tuned + "__s42", "right", RIGHT),
            sweep("prompt_ablation__cris__ref__p6__s42", tuned + "__s42", "empty", empty_42),
            sweep("prompt_ablation__cris__ref__p6__s43", tuned + "__s43", "right", RIGHT, seed=43),
            sweep(
                "prompt_ablation__cris__ref__p6__s43", tuned + "__s43", "empty", empty_43, seed=43
            ),
            # zero-shot weights: another configuration, never merged with the finetuned seeds
            sweep("zs__cris__ref__p6", zero, "right", RIGHT),
            sweep("zs__cris__ref__p6", zero, "empty", RIGHT),
        ]
    )
    got = effects.prompt_use_index(table).set_index("weights")
    assert len(got) == 2 and set(got["n_clusters"]) == {N}
    row = got.loc[tuned]
    assert row["seeds"] == 2 and row["control"] == "empty"
    assert row["use_index"] == pytest.approx(0.2)  # (0.3 + 0.1) / 2, per image
    assert row["ci_low"] <= row["use_index"] <= row["ci_high"]
    assert row["rank_biserial"] == pytest.approx(1.0)  # every image better with its prompt
    assert row["p"] == pytest.approx(sps.wilcoxon((empty_42 + empty_43) / 2 - RIGHT).pvalue)
    blind = got.loc[zero]
    assert blind["use_index"] == 0 and np.isnan(blind["p"])  # a model that ignores its text


def test_perturbation_effect_counts_only_images_whose_prompt_changed():
    base = sweep("abl__cris__ref__p6__s42", "w", None, RIGHT).drop(columns="condition")
    base = base.assign(sweep="perturbation", attribute="none", mode="none", changed=False)
    perturbed = base.assign(attribute="size", mode="wrong", dice=RIGHT - 0.2, changed=True)
    perturbed.loc[:3, ["dice", "changed"]] = [RIGHT[0], False]  # 4 prompts had no size word
    got = effects.perturbation_effect(pd.concat([base, perturbed])).iloc[0]
    assert got["n_clusters"] == N - 4 and got["delta"] == pytest.approx(-0.2)
    diff = (RIGHT - 0.2)[4:] - RIGHT[4:]
    assert got["p"] == pytest.approx(sps.wilcoxon(diff).pvalue)
    shown = tables.readable(effects.perturbation_effect(pd.concat([base, perturbed])))
    assert list(shown.columns[:4]) == ["model", "trained_on", "trained_with", "test_set"]
    assert "weights" not in shown and len(figures.perturbation(shown).axes) == 1


def test_prompt_levels_mark_oracle_levels_and_take_runs_trained_at_each_level():
    rows = []
    for prompt, dice in (("p0", [0.2, 0.4]), ("p6", [0.7, 0.9])):
        rows.append(
            pd.DataFrame(
                {
                    "run_id": f"finetune__cris__synth_polyp_ref__{prompt}__s42",
                    "study": "finetune",
                    "model": "cris",
                    "dataset": "synth_polyp_ref",
                    "prompt": prompt,
                    "seed": 42,
                    "test_set": "synth_polyp_ref",
                    "image_id": ["a", "b"],
                    "dice": dice,
                }
            )
        )
    lone = rows[0].assign(run_id="finetune__unet__synth_polyp_ref__p0__s42", model="unet")
    got = tables.prompt_levels(stats.summary_table(pd.concat(rows + [lone])))
    assert list(got["model"]) == ["cris", "cris"]  # one level only: no curve for unet
    assert list(got["curve"]) == ["at each level"] * 2 and set(got["setting"]) == {"finetuned"}
    assert list(got["oracle"]) == [False, True]  # p6 names size, count and location
    assert list(got["dice"]) == pytest.approx([0.3, 0.8])
    assert is_oracle("busi", "p1") and not is_oracle("camus", "p7")
    assert is_oracle("my_own_data", "p6") is None  # unknown family: not guessed


def test_other_class_prompt_swaps_the_class_phrase():
    record = {"prompts": {"p1": "polyp"}}
    text = "one small polyp, located in top of the image"
    assert other_class_prompt(text, record, "skin melanoma") == text.replace(
        "polyp", "skin melanoma"
    )
    busi = {"prompts": {"p1": "Tumor in the breast ultrasound image."}}
    assert other_class_prompt("One small tumor at the top.", busi, "polyp") == "polyp"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_dataset("synth_polyp", root, seed=2, size=48, counts={"train": 2, "val": 2, "test": 6})
    return root


def test_prompt_use_sweep_and_qualitative_examples_on_a_tiny_model(data, tmp_path):
    model = create_model("cris", size="tiny").eval()
    use = prompt_use_sweep(model, data, "synth_polyp", "p6", seed=3)
    assert list(use["condition"].unique()) == ["right", "empty", "shuffled", "other_class"]
    by = {c: g.reset_index(drop=True) for c, g in use.groupby("condition")}
    assert (by["empty"]["prompt_text"] == "").all()
    right, shuffled = list(by["right"]["prompt_text"]), list(by["shuffled"]["prompt_text"])
    assert sorted(shuffled) == sorted(right)  # the same prompts, dealt to other images
    assert all("skin melanoma" in t and "polyp" not in t for t in by["other_class"]["prompt_text"])
    assert len(effects.prompt_use_index(use)) == 3

    saved = qualitative.save_examples(model, data, "synth_polyp", "p6", 3, tmp_path, n=2)
    assert len(saved) == 2 and not (tmp_path / "qualitative" / "_masks").exists()
    assert all(rec["prompts"]["right"] != rec["prompts"]["perturbed"] for rec in saved)
    loaded = qualitative.load_examples([tmp_path, tmp_path / "no_such_run"])
    assert [rec["image_id"] for rec in loaded] == [rec["image_id"] for rec in saved]
    assert all(path.is_file() for rec in loaded for path in rec["paths"].values())
    assert len(figures.qualitative(loaded).axes) == 2 * 5
    with pytest.raises(ValueError, match="qualitative_attribute"):
        qualitative.save_examples(model, data, "synth_polyp", "p0", 3, tmp_path, n=1)
