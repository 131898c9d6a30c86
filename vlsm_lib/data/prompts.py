"""The P0..PN prompt generator: mask + known attributes -> prompts in the reference's structure.

Attributes read from the mask (``mask_attributes``):

- **count**: connected components (4-connectivity, as ``scipy.ndimage.label``), in words.
- **size**: per component, coverage = component pixels / image pixels, classed with the
  reference's thresholds: > 0.30 large, > 0.08 medium, < 0.001 tiny, else small. Components with
  coverage <= 1e-4 are skipped for size only (still counted). The per-image value is the
  de-duplicated list in the order tiny, small, medium, large, joined by ", ".
- **location**: per component, one cell of the 3x3 grid (top left ... bottom right), joined by
  ", " without de-duplication. Columns are cut at W/3, 2W/3 and rows at H/3, 2H/3. If exactly one
  cell holds >= 10 % of the component's pixels (this includes a component inside one cell), that
  cell; otherwise the cell holding the centre of the component's bounding box.

How the reference differs, kept as ``reference_location=True`` for faithful runs:
its column thresholds are also H/3 and 2H/3 (the image *height*), so on landscape images "right"
is over-represented; and when no cell reaches 10 % it takes the cell with the *smallest* share,
a branch that cannot fire on a 3x3 grid (some cell always holds >= 1/9 > 10 %).

Attributes that only the data source knows (shape, colour, class descriptions, tumour type, view,
findings, ...) are passed in; a missing (None) attribute is left out of the sentence cleanly.

Template families, each a function returning ``{"p0": "", "p1": ..., ...}`` where a list value
holds alternatives (one is drawn per read by the dataset):

- ``non_radiology_prompts``: endoscopy, dermoscopy, foot ulcers (P0-P9).
- ``busi_prompts``: breast ultrasound (P0-P6).
- ``camus_prompts``: echocardiography (P0-P7).
- ``chexlocalize_prompts``: chest X-ray (P0-P6).
- ``referring_prompts``: natural-scene referring expressions of MedShapes' pretraining set (P0-P4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SIZE_ORDER = ("tiny", "small", "medium", "large")
LOCATIONS = (
    ("top left", "top", "top right"),
    ("left", "center", "right"),
    ("bottom left", "bottom", "bottom right"),
)
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()

# The reference's manual "general descriptions" (P7-P9), typos kept as in its annotation files.
CLASS_DESCRIPTIONS = {
    "polyp": (
        "a projecting growth of tissue",
        "often a bumpy flesh in rectum",
        "a small lump in the lining of colon",
        "a tissue growth that often resemble mushroom like stalks",
        "an abnormal growth of tissues projecting from a mucuos membrane",
    ),
    "skin melanoma": (
        "a spot with dark speckles",
        "a spot with irregular texture",
        "a dark sore with irregular texture",
        "an irregular sore with speckles",
        "a rough wound on skin",
    ),
    "foot ulcer": (
        "a wound in foot and toes",
        "a sore in foot and toes",
        "a sore in skin of foot and toes",
        "an abnormailty in foot and toes",
        "an open sore or lesion in foot and toes",
    ),
}

CAMUS_STRUCTURES = {
    "mask_1": "Left ventricular cavity",
    "mask_2": "Myocardium",
    "mask_3": "Left atrium cavity",
}


def number_word(n: int) -> str:
    """0..999 in words as num2words writes them ("one", "forty-five", "one hundred and two")."""
    if not 0 <= n < 1000:
        return str(n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    rest = n % 100
    return f"{_ONES[n // 100]} hundred" + (f" and {number_word(rest)}" if rest else "")


def size_class(coverage: float) -> str:
    """Reference thresholds on the fraction of image pixels a component covers."""
    if coverage > 0.30:
        return "large"
    if coverage > 0.08:
        return "medium"
    if coverage < 0.001:
        return "tiny"
    return "small"


def components(mask: np.ndarray) -> list[np.ndarray]:
    """(H, W) bool mask -> one (H, W) bool array per 4-connected component, in label order."""
    labels, n = ndimage.label(np.asarray(mask, bool))
    return [labels == k for k in range(1, n + 1)]


def location_of(component: np.ndarray, reference: bool = False) -> str:
    """Grid cell of one component, (H, W) bool; see the module docstring for the rule."""
    h, w = component.shape
    col_extent = h if reference else w  # the reference cuts columns at thirds of the height
    ys, xs = np.nonzero(component)
    rows = np.minimum(ys * 3 // h, 2)
    cols = np.minimum(xs * 3 // col_extent, 2)
    shares = np.zeros((3, 3))
    np.add.at(shares, (rows, cols), 1.0)
    shares /= len(ys)
    big = np.argwhere(shares >= 0.10)
    if len(big) == 1:
        r, c = big[0]
    elif reference and len(big) == 0:
        r, c = np.argwhere(shares == shares[shares > 0].min())[0]
    else:
        cy = (ys.min() + ys.max()) / 2.0
        cx = (xs.min() + xs.max()) / 2.0
        r = min(int(cy * 3 // h), 2)
        c = min(int(cx * 3 // col_extent), 2)
    return LOCATIONS[r][c]


@dataclass(frozen=True)
class MaskAttributes:
    """What the mask says: component count, size classes and grid locations."""

    count: int
    sizes: tuple[str, ...]  # de-duplicated, ordered tiny..large
    locations: tuple[str, ...]  # one per component, label order

    @property
    def count_word(self) -> str:
        return number_word(self.count)

    @property
    def size(self) -> str | None:
        return ", ".join(self.sizes) or None

    @property
    def location(self) -> str | None:
        return ", ".join(self.locations) or None


def mask_attributes(mask: np.ndarray, reference_location: bool = False) -> MaskAttributes:
    """(H, W) bool mask -> MaskAttributes (count 0 and empty tuples for an empty mask)."""
    comps = components(mask)
    total = float(np.asarray(mask).size)
    sizes = set()
    for comp in comps:
        coverage = comp.sum() / total
        if coverage > 1e-4:
            sizes.add(size_class(coverage))
    return MaskAttributes(
        count=len(comps),
        sizes=tuple(s for s in SIZE_ORDER if s in sizes),
        locations=tuple(location_of(c, reference_location) for c in comps),
    )


def _words(*parts: str | None) -> str:
    return " ".join(p for p in parts if p)


def _located(location: str | None, comma: bool) -> str:
    if not location:
        return ""
    return f"{',' if comma else ''} located in {location} of the image"


def non_radiology_prompts(
    attrs: MaskAttributes,
    class_name: str,
    shape: str | None = None,
    colour: str | None = None,
    descriptions: tuple[str, ...] | None = None,
) -> dict[str, str | list[str]]:
    """P0-P9 of the endoscopy / dermoscopy / foot-ulcer family, as the reference's templates.

    p1 class; p2 +shape; p3 +colour; p4 +size; p5 +count; p6 p5 + location; p7 class + each
    description; p8 p5 + each description; p9 p8 + location. Descriptions default to the
    reference's list for the class (``CLASS_DESCRIPTIONS``).
    """
    descriptions = descriptions or CLASS_DESCRIPTIONS.get(class_name, ())
    if not descriptions:
        raise KeyError(
            f"no general descriptions for class {class_name!r}; pass descriptions=(...) or use "
            f"one of: {', '.join(CLASS_DESCRIPTIONS)}"
        )
    p5 = _words(attrs.count_word if attrs.count else None, attrs.size, colour, shape, class_name)
    p8 = [f"{p5} which is {d}" for d in descriptions]
    return {
        "p0": "",
        "p1": class_name,
        "p2": _words(shape, class_name),
        "p3": _words(colour, shape, class_name),
        "p4": _words(attrs.size, colour, shape, class_name),
        "p5": p5,
        "p6": p5 + _located(attrs.location, comma=True),
        "p7": [f"{class_name} which is {d}" for d in descriptions],
        "p8": p8,
        "p9": [p + _located(attrs.location, comma=False) for p in p8],
    }


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def busi_prompts(
    attrs: MaskAttributes,
    tumour_class: str | None,
    regularity: str | None = None,
    shape: str | None = None,
) -> dict[str, str | list[str]]:
    """P0-P6 of the breast-ultrasound family, as the reference's templates.

    Args:
        tumour_class: "benign" or "malignant"; ignored for an empty mask (a normal image).
        regularity: "regular" or "irregular" (the second alternative of p2-p6).
        shape: e.g. "oval" (p6).
    An empty mask gives "No tumor in the breast ultrasound image." for p1-p6.
    """
    tail = "in the breast ultrasound image."
    if attrs.count == 0:
        return {"p0": "", **{f"p{k}": f"No tumor {tail}" for k in range(1, 7)}}
    noun = "tumor" if attrs.count == 1 else "tumors"
    at = f"at the {attrs.location}" if attrs.location else None
    shaped = f"{shape}-shaped" if shape else None
    # One alternative per known descriptor: (word used in p2-p5, word used in p6 after the shape).
    kinds = [(tumour_class, tumour_class)] if tumour_class else []
    if regularity:
        kinds.append((f"{regularity}-shaped", regularity))
    kinds = kinds or [(None, None)]

    def level(*parts) -> str | list[str]:
        out = [_sentence(_words(*part)) for part in parts]
        return out if len(out) > 1 else out[0]

    n, size = attrs.count_word, attrs.size
    return {
        "p0": "",
        "p1": f"Tumor {tail}",
        "p2": level(*[(k, "tumor", tail) for k, _ in kinds]),
        "p3": level(*[(n, k, noun, tail) for k, _ in kinds]),
        "p4": level(*[(n, size, k, noun, tail) for k, _ in kinds]),
        "p5": level(*[(n, size, k, noun, at, tail) for k, _ in kinds]),
        "p6": level(*[(n, size, shaped, k6, noun, at, tail) for _, k6 in kinds]),
    }


def camus_prompts(
    structure: str,
    view: str | None = None,
    cycle: str | None = None,
    sex: str | None = None,
    age: int | None = None,
    quality: str | None = None,
    shape: str | None = None,
) -> dict[str, str | list[str]]:
    """P0-P7 of the echocardiography family, as the reference's templates; two alternatives a
    level.

    Args:
        structure: "mask_1" / "mask_2" / "mask_3" or a structure name ("Myocardium").
        view: "two" or "four" (-chamber); cycle: "diastole" or "systole"; sex: "male"/"female";
        age: years; quality: "good" / "medium" / "poor"; shape: free text (p7).
    """
    name = CAMUS_STRUCTURES.get(structure, structure)
    view_s = f"in {view}-chamber view" if view else None
    cycle_s = f"at end of the {cycle} cycle" if cycle else None
    sex_s = f"of a {sex}" if sex else None
    aged = f"of a {number_word(age)}-year-old {sex}" if age is not None and sex else sex_s
    quality_s = f"with {quality} image quality" if quality else None
    # (words before the anchor phrase, words after it), level by level (spec Appendix A)
    levels = [
        ((), ()),
        ((view_s,), ()),
        ((view_s,), (cycle_s,)),
        ((view_s,), (cycle_s, sex_s)),
        ((view_s,), (cycle_s, aged)),
        ((view_s,), (cycle_s, aged, quality_s)),
        ((f"of {shape} shape" if shape else None, view_s), (cycle_s, aged, quality_s)),
    ]
    out: dict[str, str | list[str]] = {"p0": ""}
    for k, (before, after) in enumerate(levels, start=1):
        out[f"p{k}"] = [
            _words(name, *before, anchor, *after) + "."
            for anchor in ("of the heart", "in the cardiac ultrasound")
        ]
    return out


def chexlocalize_prompts(
    attrs: MaskAttributes,
    pathology: str,
    view: str | None = "frontal",
    shape: str | None = None,
    findings: tuple[str, ...] = (),
) -> dict[str, str]:
    """P0-P6 of the chest X-ray family, as the reference's templates, strings only.

    ``findings`` are the observations present in the study (the radiology report), in order.
    """
    name = _sentence(pathology)
    view_s = f"the {view} view of a Chest Xray" if view else "a Chest Xray"
    shape_s = f" of shape {shape}" if shape else ""
    loc_s = f", and located in {attrs.location} of" if attrs.location else " in"
    found = f" {', '.join(findings)} are present." if findings else ""
    p4 = f"{name}{shape_s}{loc_s} {view_s}."
    return {
        "p0": "",
        "p1": f"{name} in a chest Xray.",
        "p2": f"{name} in {view_s}.",
        "p3": f"{name}{shape_s} in {view_s}.",
        "p4": p4,
        "p5": p4 + found,
        "p6": f"{name} in a Chest Xray.{found} ",
    }


def referring_prompts(
    attrs: MaskAttributes, shape: str, colour: str | None = None
) -> dict[str, str]:
    """P0-P4 referring expressions for one object ("small red star, located in top left ...")."""
    return {
        "p0": "",
        "p1": shape,
        "p2": _words(colour, shape),
        "p3": _words(attrs.size, colour, shape),
        "p4": _words(attrs.size, colour, shape) + _located(attrs.location, comma=True),
    }
