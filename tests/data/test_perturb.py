"""vlsm_lib.data.perturb, the rules behind the paper's Fig. 3: which words each attribute
replaces, with what, and what it leaves alone."""

import numpy as np
import pytest

from vlsm_lib.data.perturb import ATTRIBUTES, UNCOMMON, VOCABULARY, perturb, transform

TEXT = "Two small pink round polyps at the top left of the image"


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize(
    "attribute, word", [("size", "small"), ("colour", "pink"), ("shape", "round")]
)
def test_wrong_replaces_the_attribute_by_another_value_of_it(attribute, word):
    for seed in range(20):
        out = perturb(TEXT, attribute, "wrong", rng(seed))
        new = out.split()[TEXT.split().index(word)]
        assert new != word and new in VOCABULARY[attribute]
        assert out.replace(new, word, 1) == TEXT  # nothing else changed


def test_a_location_of_two_words_is_replaced_whole():
    outs = {perturb(TEXT, "location", "wrong", rng(seed)) for seed in range(30)}
    for out in outs:
        assert "top left" not in out and out.startswith("Two small pink round polyps at the ")
        place = out[len("Two small pink round polyps at the ") : -len(" of the image")]
        assert place in VOCABULARY["location"]
    assert len(outs) > 3  # the seed draws among the other places


def test_count_words_keep_their_capital_and_random_words_are_uncommon():
    out = perturb(TEXT, "count", "wrong", rng(1))
    assert out.split()[0][0].isupper() and out.split()[0].lower() != "two"
    assert out.split()[0].lower() in VOCABULARY["count"]
    rand = perturb(TEXT, "colour", "random", rng(2))
    assert rand.split()[2] in UNCOMMON and rand.split()[2] not in VOCABULARY["colour"]


def test_every_occurrence_is_replaced_and_words_inside_words_are_not():
    text = "a red polyp beside a red fold; redness and pinkish tissue"
    out = perturb(text, "colour", "random", rng(3))
    assert "red " not in out and "redness" in out and "pinkish" in out


def test_a_prompt_without_the_attribute_is_unchanged_and_the_draw_is_seeded():
    assert perturb("polyp", "size", "wrong", rng()) == "polyp"
    for attribute in ATTRIBUTES:
        assert perturb(TEXT, attribute, "wrong", rng(7)) == perturb(
            TEXT, attribute, "wrong", rng(7)
        )
    assert transform("size", "random")(TEXT, {}, rng(4)) == perturb(TEXT, "size", "random", rng(4))


def test_unknown_attribute_or_mode_names_the_valid_ones():
    with pytest.raises(KeyError, match="unknown attribute 'texture'; valid: size, count"):
        perturb(TEXT, "texture", "wrong", rng())
    with pytest.raises(KeyError, match="unknown perturbation mode 'odd'; valid: wrong, random"):
        perturb(TEXT, "size", "odd", rng())
