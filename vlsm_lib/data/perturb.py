"""Attribute perturbations of prompts (the paper's Fig. 3): does the model read each attribute?

``perturb(text, attribute, mode, rng)`` replaces every word of one attribute in a prompt:

- ``mode="wrong"``: by another value of the same attribute ("small" -> "large", "top left" ->
  "bottom right"), a plausible but false description;
- ``mode="random"``: by an uncommon word that is not an attribute value at all.

Attributes: size, count, location, shape, colour. A prompt without the attribute is returned
unchanged (ablation tables record whether the text changed).
"""

from __future__ import annotations

import re

import numpy as np

from vlsm_lib.data.prompts import LOCATIONS, SIZE_ORDER, number_word

VOCABULARY = {
    "size": tuple(SIZE_ORDER),
    "count": tuple(number_word(n) for n in range(1, 11)),
    "location": tuple(cell for row in LOCATIONS for cell in row),
    "shape": (
        "round",
        "oval",
        "irregular",
        "circle",
        "circular",
        "square",
        "triangle",
        "triangular",
        "star",
        "hexagon",
        "lobulated",
        "spiculated",
        "crescent",
    ),
    "colour": ("pink", "red", "white", "brown", "black", "yellow", "green", "blue", "purple"),
}
UNCOMMON = (
    "zephyr",
    "quokka",
    "obsidian",
    "marimba",
    "tundra",
    "gazebo",
    "nebula",
    "paprika",
    "xylophone",
    "sonnet",
    "walrus",
    "saffron",
)
ATTRIBUTES = tuple(VOCABULARY)
MODES = ("wrong", "random")


def _pattern(attribute: str) -> re.Pattern:
    # Longest phrases first, so "top left" is replaced whole rather than as "top" + "left".
    words = sorted(VOCABULARY[attribute], key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)


def perturb(text: str, attribute: str, mode: str, rng: np.random.Generator) -> str:
    """``text`` with each ``attribute`` value replaced (see the module docstring)."""
    if attribute not in VOCABULARY:
        raise KeyError(f"unknown attribute {attribute!r}; valid: {', '.join(VOCABULARY)}")
    if mode not in MODES:
        raise KeyError(f"unknown perturbation mode {mode!r}; valid: {', '.join(MODES)}")

    def swap(match: re.Match) -> str:
        word = match.group(0)
        if mode == "random":
            new = UNCOMMON[int(rng.integers(len(UNCOMMON)))]
        else:
            others = [v for v in VOCABULARY[attribute] if v != word.lower()]
            new = others[int(rng.integers(len(others)))]
        return new.capitalize() if word[:1].isupper() else new

    return _pattern(attribute).sub(swap, text)


def transform(attribute: str, mode: str):
    """A dataset ``prompt_transform``: (text, record, rng) -> perturbed text."""
    return lambda text, record, rng: perturb(text, attribute, mode, rng)
