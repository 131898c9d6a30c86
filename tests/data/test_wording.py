"""Prompts as people write them: each rewording does what it says, seeded."""

import numpy as np
import pandas as pd
import pytest

from vlsm_lib.analysis import findings
from vlsm_lib.analysis.effects import wording_effect
from vlsm_lib.data.wording import ABBREVIATIONS, KINDS, SYNONYMS, vary
from vlsm_lib.engine.evaluate import wording_level

P6 = "two medium red oval polyp, located in top left, bottom of the image"


def _rng(i=0):
    return np.random.default_rng([42, 0, i])


def test_each_rewording_changes_what_it_says_and_keeps_the_rest():
    out = {kind: vary(P6, kind, _rng()) for kind in KINDS}
    assert all(text != P6 for text in out.values()), out
    words = out["synonyms"].split()
    assert not {"medium", "red", "oval"} & set(words) and "picture" in words
    assert any(s in out["synonyms"] for s in SYNONYMS["polyp"])
    where = "in top left, bottom of the image, "
    assert out["word_order"].startswith(where)
    body = out["word_order"][len(where) :].split()
    assert sorted(body) == sorted("two medium red oval polyp".split()) and body[-1] == "polyp"
    typo_words = [a != b for a, b in zip(out["typos"].split(), P6.split())]
    assert 1 <= sum(typo_words) <= 2 and len(out["typos"].split()) == len(P6.split())
    assert out["abbreviations"] in (out["abbreviations"].upper(), out["abbreviations"].lower())
    assert (
        "lt," in out["abbreviations"].lower().split()
        and ABBREVIATIONS["image"] in out["abbreviations"].lower()
    )
    assert out["under"] == "polyp, located in top left, bottom of the image"
    assert out["over"].startswith(P6 + ", ") and len(out["over"]) > len(P6)
    assert out["no_location"] == "two medium red oval polyp"
    assert out["contradictory"].startswith("two medium red oval polyp, located in ")
    assert "top left, bottom" not in out["contradictory"]


def test_rewordings_are_seeded_and_leave_an_empty_prompt_empty():
    for kind in KINDS:
        assert vary(P6, kind, _rng(3)) == vary(P6, kind, _rng(3))
        assert vary("", kind, _rng()) == ""
    typos = {vary(P6, "typos", _rng(i)) for i in range(10)}
    assert len(typos) > 5  # different images get different typos
    assert vary("polyp", "no_location", _rng()) == "polyp"  # nothing to change: unchanged
    with pytest.raises(KeyError, match="unknown wording variant 'slang'; valid: synonyms"):
        vary(P6, "slang", _rng())


def test_the_reworded_level_is_the_best_non_empty_one_for_every_image():
    rows = []
    for level, dice in (("p0", 0.9), ("p1", 0.5), ("p5", 0.7), ("p6", 0.7)):
        for image in ("a", "b"):
            text = "" if level == "p0" else f"words of {level}"
            rows.append({"prompt_key": level, "image_id": image, "dice": dice, "prompt_text": text})
    table = pd.DataFrame(rows)
    assert wording_level(table) == "p6"  # p0 has no words; p5 and p6 tie: the richer one
    assert wording_level(table, "p1") == "p1"
    with pytest.raises(ValueError, match="no words to vary"):
        wording_level(table[table.prompt_key == "p0"])


def _sweep(deltas: dict, n=24, seed=42, base_level="p6") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.5, 0.9, n)
    rows = []
    for variant, delta in {"original": 0.0, **deltas}.items():
        for i in range(n):
            rows.append({
                "study": "prompt_ablation", "model": "cris", "dataset": "d", "prompt": "p6",
                "setting": "finetuned", "seed": seed,
                "run_id": f"prompt_ablation__cris__d__p6__s{seed}",
                "sweep": "wording", "variant": variant, "test_set": "d", "image_id": f"i{i}",
                "cluster": f"i{i}", "dice": base[i] + delta + rng.normal(0, 0.01),
                "changed": variant != "original", "base_level": base_level,
            })  # fmt: skip
    return pd.DataFrame(rows)


def test_the_wording_effect_pairs_each_rewording_with_the_prompt_as_written():
    effect = wording_effect(_sweep({"typos": -0.2, "over": 0.0}), margin=0.05)
    by = effect.set_index("variant")
    assert by.loc["typos", "delta"] == pytest.approx(-0.2, abs=0.02)
    assert by.loc["typos", "ci_high"] < 0 and by.loc["typos", "n_clusters"] == 24
    assert by.loc["over", "claim"] == "no practical difference"
    assert by.loc["typos", "claim"].startswith("fixed models only")  # one seed: says so
    found = findings.findings(wording=effect)
    assert set(found.area) == {"wording"} and found.finding.str.contains("reworded").all()


def test_seeds_that_reworded_different_levels_are_never_pooled():
    """Each run rewords its own best level: two seeds that picked two levels give two rows of
    one seed each, not one row of two seeds."""
    two = pd.concat([_sweep({"typos": -0.2}, seed=42), _sweep({"typos": -0.2}, seed=43,
                                                             base_level="p5")])  # fmt: skip
    effect = wording_effect(two)
    assert sorted(effect.base_level) == ["p5", "p6"] and set(effect.seeds) == {1}
    same = pd.concat([_sweep({"typos": -0.2}, seed=42), _sweep({"typos": -0.2}, seed=43)])
    assert wording_effect(same).seeds.tolist() == [2]
