"""How people write prompts: seeded variants of a prompt, for the robustness-of-wording sweep.

``vary(text, kind, rng)`` rewrites one prompt the way a person might, keeping (or, for
``contradictory``, deliberately breaking) what it says about the image:

==============  =================================================================================
kind            what changes
==============  =================================================================================
synonyms        class, size, shape and colour words by a curated medical synonym
                (``SYNONYMS``: "polyp" -> "polypoid lesion", "oval" -> "ovoid", "red" ->
                "erythematous"), and the location clause paraphrased ("in the top left of the
                picture"); no language model
word_order      the adjectives before the class word shuffled, the location clause moved first
typos           one or two edits (a dropped, doubled or swapped letter) in words of 4+ letters
abbreviations   common abbreviations ("left" -> "lt", "medium" -> "med", "image" -> "img") and
                the whole prompt in upper or lower case
under           the attribute words (count, size, shape, colour) dropped: the class and where
over            one or two true but irrelevant clauses added ("seen during the examination")
no_location     the location clause removed
contradictory   one attribute the prompt states replaced by a wrong value of it
                (``perturb.perturb`` "wrong": location first, then size, count, shape, colour)
==============  =================================================================================

A variant that finds nothing to change returns the text unchanged; the sweep records whether
the text changed and compares only the images whose prompt did. Every draw comes from ``rng``,
so a seed gives the same variants everywhere.
"""

from __future__ import annotations

import re

import numpy as np

from vlsm_lib.data import perturb

KINDS = (
    "synonyms",
    "word_order",
    "typos",
    "abbreviations",
    "under",
    "over",
    "no_location",
    "contradictory",
)
# Curated, medical where a clinician would write it; each key is replaced whole (word bounds).
SYNONYMS = {
    "polyp": ("polypoid lesion", "colonic polyp", "growth"),
    "polyps": ("polypoid lesions", "colonic polyps", "growths"),
    "lesion": ("abnormality", "skin lesion", "spot"),
    "melanoma": ("malignant skin lesion", "pigmented lesion"),
    "ulcer": ("wound", "ulceration", "sore"),
    "tumor": ("mass", "lesion"),
    "tumour": ("mass", "lesion"),
    "nodule": ("mass", "lump"),
    "tiny": ("very small", "minute"),
    "small": ("little", "minor"),
    "medium": ("medium-sized", "moderate"),
    "large": ("big", "sizeable"),
    "round": ("circular", "rounded"),
    "oval": ("ovoid", "elliptical"),
    "irregular": ("uneven", "ill-defined"),
    "red": ("reddish", "erythematous"),
    "pink": ("pinkish", "rosy"),
    "white": ("whitish", "pale"),
    "brown": ("brownish", "tan"),
    "black": ("dark", "blackish"),
    "yellow": ("yellowish", "golden"),
}
ABBREVIATIONS = {
    "left": "lt",
    "right": "rt",
    "medium": "med",
    "small": "sm",
    "large": "lg",
    "image": "img",
    "located": "loc.",
    "approximately": "approx.",
    "with": "w/",
}
IRRELEVANT = (
    "seen during the examination",
    "as shown in this image",
    "captured under normal lighting",
    "in this picture taken for diagnosis",
)
_LOCATION = re.compile(
    r",?\s*(?:and\s+)?located\s+(?:in|at|on)\s+(?P<where>.+?)(?:\s+of the image)?$"
)
_ATTRIBUTE_WORDS = {a: perturb.VOCABULARY[a] for a in ("count", "size", "shape", "colour")}


def _location(text: str) -> tuple[str, str]:
    """(the text without its location clause, the place it names; "" when none)."""
    match = _LOCATION.search(text)
    return (text[: match.start()].rstrip(" ,"), match.group("where")) if match else (text, "")


def _words(pattern_words, text: str) -> re.Pattern:
    words = sorted(pattern_words, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)


def _synonyms(text: str, rng: np.random.Generator) -> str:
    body, where = _location(text)

    def swap(match: re.Match) -> str:
        options = SYNONYMS[match.group(0).lower()]
        return options[int(rng.integers(len(options)))]

    body = _words(SYNONYMS, body).sub(swap, body)
    return f"{body} in the {where} of the picture" if where else body


def _word_order(text: str, rng: np.random.Generator) -> str:
    body, where = _location(text)
    words = body.split()
    attribute = {w.lower() for vocab in _ATTRIBUTE_WORDS.values() for w in vocab}
    run = [i for i, w in enumerate(words) if w.lower().strip(",") in attribute]
    if len(run) >= 2:
        picked = [words[i] for i in run]
        order = rng.permutation(len(picked))
        if list(order) == list(range(len(picked))):
            order = order[::-1]
        for i, k in zip(run, order):
            words[i] = picked[k]
    body = " ".join(words)
    return f"in {where} of the image, {body}" if where else body


def _typo(word: str, rng: np.random.Generator) -> str:
    i = int(rng.integers(1, len(word) - 1))
    how = int(rng.integers(3))
    if how == 0:
        return word[:i] + word[i + 1 :]  # a dropped letter
    if how == 1:
        return word[:i] + word[i] + word[i:]  # a doubled letter
    return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]  # two letters swapped


def _typos(text: str, rng: np.random.Generator) -> str:
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if len(w.strip(",.")) >= 4 and w.isalpha()]
    if not long:
        return text
    n = min(len(long), 1 + int(rng.integers(2)))
    for i in rng.choice(long, size=n, replace=False):
        words[int(i)] = _typo(words[int(i)], rng)
    return " ".join(words)


def _abbreviations(text: str, rng: np.random.Generator) -> str:
    out = _words(ABBREVIATIONS, text).sub(lambda m: ABBREVIATIONS[m.group(0).lower()], text)
    return out.upper() if int(rng.integers(2)) else out.lower()


def _under(text: str, rng: np.random.Generator) -> str:
    body, where = _location(text)
    vocab = [w for words in _ATTRIBUTE_WORDS.values() for w in words]
    body = re.sub(r"\s{2,}", " ", _words(vocab, body).sub("", body)).strip(" ,")
    body = re.sub(r"^(,\s*)+|(\s*,)+(?=\s)", "", body).strip()
    return f"{body}, located in {where} of the image" if where else body


def _over(text: str, rng: np.random.Generator) -> str:
    n = 1 + int(rng.integers(2))
    clauses = [IRRELEVANT[int(i)] for i in rng.choice(len(IRRELEVANT), size=n, replace=False)]
    return ", ".join([text, *clauses]) if text else text


def _no_location(text: str, rng: np.random.Generator) -> str:
    return _location(text)[0]


def _contradictory(text: str, rng: np.random.Generator) -> str:
    for attribute in ("location", "size", "count", "shape", "colour"):
        changed = perturb.perturb(text, attribute, "wrong", rng)
        if changed != text:
            return changed
    return text


_KIND = {
    "synonyms": _synonyms,
    "word_order": _word_order,
    "typos": _typos,
    "abbreviations": _abbreviations,
    "under": _under,
    "over": _over,
    "no_location": _no_location,
    "contradictory": _contradictory,
}


def vary(text: str, kind: str, rng: np.random.Generator) -> str:
    """``text`` rewritten as ``kind`` says (module docstring); an empty text stays empty."""
    if kind not in _KIND:
        raise KeyError(f"unknown wording variant {kind!r}; valid: {', '.join(KINDS)}")
    return _KIND[kind](text, rng) if text.strip() else text


def transform(kind: str):
    """A dataset ``prompt_transform``: (text, record, rng) -> the ``kind`` variant."""
    return lambda text, record, rng: vary(text, kind, rng)
