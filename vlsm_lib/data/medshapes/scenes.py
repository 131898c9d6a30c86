"""MedShapes scene renderers: one function per modality, ``(rng, h, w) -> Scene``.

Each scene is an RGB image and one or more targets (a mask with its prompts and attributes).
Count, size and location come from the mask through the prompt generator; shape, colour, class,
view and findings come from what the renderer drew.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from vlsm_lib.data import prompts as P
from vlsm_lib.data.medshapes.shapes import (
    CELLS,
    UNIT_AREA,
    blend,
    blob,
    place,
    polygon,
    regular_shape,
    smooth_noise,
    soft,
    to_uint8,
)

POLYP_COLOURS = {"pink": (0.93, 0.55, 0.60), "red": (0.80, 0.22, 0.20), "white": (0.95, 0.86, 0.80)}
SKIN_COLOURS = {"brown": (0.47, 0.28, 0.16), "black": (0.20, 0.14, 0.12), "red": (0.68, 0.28, 0.24)}
# shape word -> (aspect, roughness) of the blob drawn for it
BLOB_SHAPES = {
    "round": (1.0, 0.06),
    "oval": (1.9, 0.06),
    "irregular": (1.2, 0.30),
    "lobulated": (1.3, 0.30),
    "spiculated": (1.1, 0.50),
}
POLYP_SHAPES = {"round": 0.45, "oval": 0.35, "irregular": 0.20}
SHAPE_COLOURS = {
    "red": (0.85, 0.12, 0.10),
    "green": (0.15, 0.65, 0.20),
    "blue": (0.15, 0.30, 0.85),
    "yellow": (0.95, 0.85, 0.15),
    "white": (0.97, 0.97, 0.97),
    "pink": (0.95, 0.55, 0.70),
    "brown": (0.50, 0.30, 0.15),
    "black": (0.06, 0.06, 0.06),
}
SHAPE_KINDS = ("circle", "square", "triangle", "star", "hexagon")


@dataclass
class Target:
    mask: np.ndarray  # (H, W) bool
    prompts: dict
    attrs: dict = field(default_factory=dict)


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8
    targets: list[Target]


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    """One key of ``weights`` drawn with probability proportional to its value."""
    keys = list(weights)
    p = np.array([weights[k] for k in keys], float)
    return keys[rng.choice(len(keys), p=p / p.sum())]


def _plan(rng, n: int, sizes: dict[str, float], distinct_sizes=False, cells=CELLS):
    """n (size class, cell) pairs with distinct cells; 'large' only for a single object."""
    names = [s for s in sizes if n == 1 or s != "large"]
    prob = np.array([sizes[s] for s in names]) / sum(sizes[s] for s in names)
    chosen = rng.choice(len(names), size=n, replace=not distinct_sizes, p=prob)
    picked = rng.choice(len(cells), size=n, replace=False)
    return [(names[s], cells[c]) for s, c in zip(chosen, picked)]


def _cells_inside(region: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Grid cells whose inner half lies mostly inside ``region`` (H, W) bool."""
    h, w = region.shape
    share = {}
    for r, c in CELLS:
        inner = region[
            int(h * (r + 0.25) / 3) : int(h * (r + 0.75) / 3),
            int(w * (c + 0.25) / 3) : int(w * (c + 0.75) / 3),
        ]
        share[(r, c)] = inner.mean()
    keep = tuple(cell for cell in CELLS if share[cell] > 0.3)
    return keep or (max(share, key=share.get),)


def _placed(rng, h, w, counts, sizes, draw, inside=None, distinct_sizes=False):
    """Masks for a random count and plan; re-plans until a scene fits (rarely more than twice)."""
    cells = CELLS if inside is None else _cells_inside(inside)
    while True:
        n = min(int(_pick(rng, counts)), len(cells))
        plan = _plan(rng, n, sizes, distinct_sizes, cells)
        masks = place(rng, h, w, plan, draw, inside)
        if masks is not None:
            return masks


def _draw_blobs(h, w, shapes: list[str], extra_roughness: float = 0.0):
    """A ``place`` drawer: object k is a blob of shape ``shapes[k]`` (round, oval, irregular)."""

    def draw(rng, k, centre, radius):
        aspect, roughness = BLOB_SHAPES[shapes[k]]
        return blob(h, w, centre, radius, rng, aspect, roughness + extra_roughness)

    return draw


def _attrs(mask: np.ndarray, reference_location=False, **known) -> tuple[P.MaskAttributes, dict]:
    a = P.mask_attributes(mask, reference_location=reference_location)
    meta = {"count": a.count, "sizes": list(a.sizes), "locations": list(a.locations)}
    meta.update({k: v for k, v in known.items() if v is not None})
    return a, meta


def _mucosa(rng, h, w) -> np.ndarray:
    """Endoscopy background: reddish texture, vessels, vignette, dark octagonal corners."""
    base = np.array([0.78, 0.36, 0.30], np.float32)
    tex = 1 + 0.10 * smooth_noise(rng, h, w, 6) + 0.04 * smooth_noise(rng, h, w, 1.5)
    img = base * tex[..., None]
    vessels = np.abs(smooth_noise(rng, h, w, 3)) < 0.06
    img = blend(img, np.array([0.55, 0.12, 0.12]), 0.5 * soft(vessels, 0.7))
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    img *= np.clip(1.15 - 0.45 * r**2, 0.2, 1)[..., None]
    corners = (np.abs(yy - h / 2) / h + np.abs(xx - w / 2) / w) > 0.88
    img[corners] = 0.02
    return img


def _specular(rng, img, h, w, where: np.ndarray, n: int) -> np.ndarray:
    """Add up to n small white highlights centred on pixels of ``where``."""
    ys, xs = np.nonzero(where)
    spots = np.zeros((h, w), bool)
    for k in rng.choice(len(ys), size=min(n, len(ys)), replace=False):
        spots |= blob(h, w, (ys[k], xs[k]), rng.uniform(0.6, 2.0), rng, 1.5, 0.2)
    return blend(img, np.ones(3), 0.9 * soft(spots, 0.6))


def _paint_polyps(rng, img, h, w, masks, colours):
    yy, xx = np.mgrid[0:h, 0:w]
    for mask, colour in zip(masks, colours):
        ring = ndimage.binary_dilation(mask, iterations=2) & ~mask
        img = blend(img, np.array([0.30, 0.08, 0.08]), 0.45 * soft(ring, 1.0))
        cy, cx = np.argwhere(mask).mean(0)
        light = 1 + 0.25 * np.clip(-((yy - cy) + (xx - cx)) / (np.sqrt(mask.sum()) + 1), -1, 1)
        tone = (
            np.array(POLYP_COLOURS[colour])
            * (light * (1 + 0.06 * smooth_noise(rng, h, w, 2)))[..., None]
        )
        img = blend(img, tone, soft(mask))
        img = _specular(rng, img, h, w, mask, int(rng.integers(0, 3)))
    return img


def polyp(rng, h, w, counts=None, shift: str | None = None) -> Scene:
    """Endoscopy-like frame with 1-3 polyps; ``shift`` 'b' or 'c' applies a domain shift."""
    counts = counts or {1: 0.7, 2: 0.22, 3: 0.08}  # Kvasir: one 82 %, two 16 %, three 1 %
    sizes = {"tiny": 0.04, "small": 0.45, "medium": 0.40, "large": 0.11}
    # One shape and colour per image, as the reference labels one per image.
    shape, colour = _pick(rng, POLYP_SHAPES), _pick(rng, dict.fromkeys(POLYP_COLOURS, 1))
    masks = _placed(rng, h, w, counts, sizes, _draw_blobs(h, w, [shape] * 3))
    img = _paint_polyps(rng, _mucosa(rng, h, w), h, w, masks, [colour] * len(masks))
    img = _specular(rng, img, h, w, img.mean(-1) > 0.1, int(rng.integers(2, 6)))
    img = _domain_shift(rng, img, shift)
    mask = np.any(masks, axis=0)
    a, meta = _attrs(mask, shape=shape, colour=colour)
    prompts = P.non_radiology_prompts(a, "polyp", shape, colour)
    return Scene(to_uint8(img), [Target(mask, prompts, meta)])


def _domain_shift(rng, img, shift):
    if shift == "b":  # yellow-green cast, blur: another scope, another processor
        img = img * np.array([1.05, 1.05, 0.70]) + np.array([0.02, 0.06, 0.0])
        return ndimage.gaussian_filter(img, (1.2, 1.2, 0))
    if shift == "c":  # dim, noisy frames with a stronger vignette
        img = 0.75 * img**1.3
        return img + rng.normal(0, 0.05, img.shape)
    return img


def polyp_ref(rng, h, w, reference_location: bool = False) -> Scene:
    """Two polyps in different cells and size classes; one target per polyp.
    ``reference_location``: location words by the reference's rule (columns cut at thirds of
    the image height, ``prompts.location_of``), which differs on non-square images only."""
    sizes = {"small": 0.5, "medium": 0.4, "tiny": 0.1}
    shapes = [_pick(rng, POLYP_SHAPES) for _ in range(2)]
    masks = _placed(rng, h, w, {2: 1.0}, sizes, _draw_blobs(h, w, shapes), distinct_sizes=True)
    colours = [_pick(rng, dict.fromkeys(POLYP_COLOURS, 1)) for _ in masks]
    img = _paint_polyps(rng, _mucosa(rng, h, w), h, w, masks, colours)
    targets = []
    for mask, shape, colour in zip(masks, shapes, colours):
        a, meta = _attrs(mask, reference_location, shape=shape, colour=colour)
        targets.append(Target(mask, P.non_radiology_prompts(a, "polyp", shape, colour), meta))
    return Scene(to_uint8(img), targets)


def skin(rng, h, w) -> Scene:
    """Dermoscopy-like: skin texture, one brown irregular lesion with speckles, hairs on top."""
    shape = _pick(rng, {"round": 0.35, "oval": 0.30, "irregular": 0.35})
    sizes = {"small": 0.2, "medium": 0.45, "large": 0.35}
    (mask,) = _placed(rng, h, w, {1: 1.0}, sizes, _draw_blobs(h, w, [shape], 0.1))
    colour = _pick(rng, {"brown": 0.65, "black": 0.15, "red": 0.20})
    tone = np.array([0.88, 0.72, 0.60]) * (1 + 0.05 * smooth_noise(rng, h, w, 4))[..., None]
    lesion = np.array(SKIN_COLOURS[colour]) * (1 + 0.15 * smooth_noise(rng, h, w, 2))[..., None]
    img = blend(tone, lesion, soft(mask, 1.2))
    speckles = (rng.random((h, w)) < 0.02) & ndimage.binary_erosion(mask, iterations=2)
    img = blend(img, np.array([0.12, 0.08, 0.06]), soft(speckles, 0.6))
    for _ in range(int(rng.integers(0, 8))):  # hairs: curved dark strokes over everything
        t = np.linspace(0, 1, 60)
        p0, p1 = rng.uniform(0, 1, 2) * (w, h), rng.uniform(0, 1, 2) * (w, h)
        bend = rng.normal(0, 0.15, 2) * (w, h)
        pts = p0 + (p1 - p0) * t[:, None] + bend * np.sin(np.pi * t)[:, None]
        hair = np.zeros((h, w), bool)
        xs, ys = np.clip(pts[:, 0].astype(int), 0, w - 1), np.clip(pts[:, 1].astype(int), 0, h - 1)
        hair[ys, xs] = True
        img = blend(img, np.array([0.15, 0.10, 0.08]), 0.8 * soft(hair, 0.5) * 2)
    a, meta = _attrs(mask, shape=shape, colour=colour)
    return Scene(
        to_uint8(img),
        [Target(mask, P.non_radiology_prompts(a, "skin melanoma", shape, colour), meta)],
    )


def ultrasound(rng, h, w) -> Scene:
    """Breast-ultrasound-like: speckle in a fan; a hypoechoic mass, or none (normal, empty mask)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ay, ax = -0.15 * h, w / 2
    radius, angle = np.hypot(yy - ay, xx - ax), np.arctan2(xx - ax, yy - ay)
    fan = (np.abs(angle) < 0.75) & (radius > 0.25 * h) & (radius < 1.12 * h)
    echo = 0.45 + 0.15 * np.sin(yy / h * rng.uniform(6, 12)) + 0.1 * smooth_noise(rng, h, w, 5)
    kind = _pick(rng, {"benign": 0.55, "malignant": 0.27, "normal": 0.18})
    mask = np.zeros((h, w), bool)
    shape = regularity = None
    if kind != "normal":
        benign = kind == "benign"
        shape = _pick(
            rng, {"oval": 0.6, "round": 0.4} if benign else {"lobulated": 0.5, "spiculated": 0.5}
        )
        regularity = "regular" if benign else "irregular"
        draw = _draw_blobs(h, w, [shape])
        inner = ndimage.binary_erosion(fan, iterations=3)
        (mask,) = _placed(rng, h, w, {1: 1.0}, {"small": 0.6, "medium": 0.4}, draw, inside=inner)
        below = ndimage.binary_dilation(mask, np.ones((1, 3)), iterations=2)
        shadow = np.cumsum(below, axis=0) > 0  # posterior shadow (malignant) or enhancement
        echo = echo * np.where(shadow & ~mask, 0.6 if kind == "malignant" else 1.3, 1.0)
        echo = np.where(mask, 0.08 + 0.04 * smooth_noise(rng, h, w, 3), echo)
    speckle = rng.rayleigh(0.6, (h, w)).astype(np.float32)
    img = ndimage.gaussian_filter(np.clip(echo, 0, 1) * speckle, 0.7) * fan
    a, meta = _attrs(mask, tumour_class=None if kind == "normal" else kind, shape=shape)
    prompts = P.busi_prompts(a, None if kind == "normal" else kind, regularity, shape)
    return Scene(to_uint8(np.repeat(img[..., None], 3, -1)), [Target(mask, prompts, meta)])


XRAY_FINDINGS = {
    "airspace opacity": "Lung Opacity",
    "lung lesion": "Lung Lesion",
    "pleural effusion": "Pleural Effusion",
}


def xray(rng, h, w) -> Scene:
    """Chest-X-ray-like field; 1-2 pathologies, one target (mask) per pathology."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    lungs = []
    for side in (-1, 1):
        cx = w / 2 + side * w * 0.2
        lungs.append(((xx - cx) / (0.15 * w)) ** 2 + ((yy - 0.5 * h) / (0.33 * h)) ** 2 < 1)
    lung = lungs[0] | lungs[1]
    ribs = 0.06 * (np.sin(yy / h * 40 + 3 * np.abs(xx - w / 2) / w * 6) > 0.6)
    img = 0.75 - 0.45 * soft(lung, 3) + ribs * lung + 0.05 * smooth_noise(rng, h, w, 8)
    heart = ((xx - 0.45 * w) / (0.14 * w)) ** 2 + ((yy - 0.68 * h) / (0.14 * h)) ** 2 < 1
    img = blend(img[..., None], np.array([0.85]), 0.8 * soft(heart, 2))[..., 0]
    kinds = [
        str(k) for k in rng.choice(list(XRAY_FINDINGS), int(rng.integers(1, 3)), replace=False)
    ]
    targets = []
    for kind in kinds:
        side = int(rng.integers(0, 2))
        region = ndimage.binary_erosion(lungs[side] & ~heart, iterations=2)
        if kind == "pleural effusion":
            level = rng.uniform(0.62, 0.75) * h + 0.05 * h * np.cos((xx - w / 2) / w * 6)
            mask, shape = region & (yy > level), "crescent"
        else:
            n = 1 if kind == "lung lesion" else int(rng.integers(1, 3))
            size = {"small": 1.0} if kind == "lung lesion" else {"small": 0.6, "medium": 0.4}
            shape = "round" if kind == "lung lesion" else "irregular"
            draw = _draw_blobs(h, w, [shape] * n)
            mask = np.any(_placed(rng, h, w, {n: 1.0}, size, draw, inside=region), axis=0)
        img = img + (0.35 if kind == "lung lesion" else 0.22) * soft(mask, 1.5)
        targets.append((kind, mask, shape))
    img = ndimage.gaussian_filter(img + 0.03 * rng.standard_normal((h, w)), 0.6)
    findings = tuple(XRAY_FINDINGS[k] for k in XRAY_FINDINGS if k in kinds)
    out = []
    for kind, mask, shape in targets:
        a, meta = _attrs(mask, pathology=kind, shape=shape, view="frontal", findings=list(findings))
        out.append(Target(mask, P.chexlocalize_prompts(a, kind, "frontal", shape, findings), meta))
    return Scene(to_uint8(np.repeat(img[..., None], 3, -1)), out)


def shapes(rng, h, w) -> Scene:
    """Natural-scene analogue: 2-4 coloured shapes on clutter; the target is named by text."""
    img = np.linspace(rng.uniform(0.3, 0.7, 3), rng.uniform(0.3, 0.7, 3), h)[:, None, :] * np.ones(
        (1, w, 1)
    )
    for _ in range(12):  # low-contrast clutter
        clutter = polygon(h, w, rng.uniform(0, 1, (int(rng.integers(3, 6)), 2)) * (w, h))
        img = blend(img, rng.uniform(0.2, 0.8, 3), 0.25 * clutter)
    img = img + 0.04 * smooth_noise(rng, h, w, 1)[..., None]
    n = int(rng.integers(2, 5))
    kinds = [str(rng.choice(SHAPE_KINDS)) for _ in range(n)]
    colours = [str(rng.choice(list(SHAPE_COLOURS))) for _ in range(n)]
    while (kinds[0], colours[0]) in zip(kinds[1:], colours[1:]):  # the target is unique
        colours[0] = str(rng.choice(list(SHAPE_COLOURS)))

    def draw(r, k, centre, radius):
        kind = kinds[k]
        scale = np.sqrt(UNIT_AREA["blob"] / UNIT_AREA[kind])  # same area as a blob of radius
        return polygon(h, w, regular_shape(kind, centre, radius * scale, r.uniform(0, 2 * np.pi)))

    masks = None
    while masks is None:
        masks = place(rng, h, w, _plan(rng, n, {"small": 0.55, "medium": 0.45}), draw)
    for mask, colour in zip(masks, colours):
        img = blend(img, np.array(SHAPE_COLOURS[colour]), soft(mask, 0.6))
    a, meta = _attrs(masks[0], shape=kinds[0], colour=colours[0])
    return Scene(
        to_uint8(img), [Target(masks[0], P.referring_prompts(a, kinds[0], colours[0]), meta)]
    )
