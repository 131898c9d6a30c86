"""Geometry and texture primitives of MedShapes: irregular blobs, polygons, noise, placement.

Everything takes a ``numpy.random.Generator`` so a scene is a pure function of its seed.
Masks are (H, W) bool arrays; images are (H, W, 3) float32 in [0, 1] until written.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from vlsm_lib.data.prompts import LOCATIONS, location_of, size_class

# Coverage (fraction of image pixels) drawn for each planned size class; inside the reference's
# class thresholds with a margin so that roughness and clipping rarely push an object across.
COVERAGE_RANGE = {
    "tiny": (0.0005, 0.0009),
    "small": (0.004, 0.06),
    "medium": (0.10, 0.24),
    "large": (0.33, 0.45),
}
CELLS = tuple((r, c) for r in range(3) for c in range(3))


def smooth_noise(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    """(H, W) float32 Gaussian-filtered white noise, zero mean, unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), sigma)
    return (field - field.mean()) / (field.std() + 1e-8)


def blob(
    h: int,
    w: int,
    centre: tuple[float, float],
    radius: float,
    rng: np.random.Generator,
    aspect: float = 1.0,
    roughness: float = 0.08,
) -> np.ndarray:
    """A star-shaped irregular region (so always one connected piece), (H, W) bool.

    Its boundary is r(theta) = radius * (1 + sum_k a_k cos(k theta + phi_k)), k = 2..7, with
    amplitudes up to ``roughness / sqrt(k)``, stretched by ``aspect`` along a random axis.
    """
    cy, cx = centre
    amps = [rng.uniform(0, roughness) / np.sqrt(k) for k in range(2, 8)]
    phases = rng.uniform(0, 2 * np.pi, 6)
    angle = rng.uniform(0, np.pi)
    # Work in the window that can hold the shape: the whole grid costs 10x more for small blobs.
    reach = radius * (1 + sum(amps)) * np.sqrt(max(aspect, 1 / aspect)) + 2
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, h)
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, w)
    out = np.zeros((h, w), bool)
    if y0 >= y1 or x0 >= x1:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    u, v = u / np.sqrt(aspect), v * np.sqrt(aspect)
    theta = np.arctan2(v, u)
    boundary = np.ones_like(theta)
    for k, (amp, phase) in enumerate(zip(amps, phases), start=2):
        boundary += amp * np.cos(k * theta + phase)
    out[y0:y1, x0:x1] = np.hypot(u, v) <= radius * boundary
    return out


def polygon(h: int, w: int, points: np.ndarray) -> np.ndarray:
    """Filled polygon from (N, 2) (x, y) vertices, (H, W) bool."""
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).polygon([tuple(map(float, p)) for p in points], fill=255)
    return np.asarray(canvas) > 0


def regular_shape(
    kind: str, centre: tuple[float, float], radius: float, angle: float
) -> np.ndarray:
    """Vertices (N, 2) as (x, y) of a circle, square, triangle, star or hexagon."""
    cy, cx = centre
    if kind == "star":
        t = angle + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
    else:
        n = {"circle": 48, "square": 4, "triangle": 3, "hexagon": 6}[kind]
        t = angle + np.arange(n) * 2 * np.pi / n
        r = np.full(n, radius)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


# Area of each shape at radius 1 (circumradius for polygons).
UNIT_AREA = {
    "blob": np.pi,
    "circle": np.pi,
    "square": 2.0,
    "triangle": 1.299,
    "star": 1.3,
    "hexagon": 2.598,
}


def radius_for(coverage: float, h: int, w: int, kind: str = "blob") -> float:
    """Radius whose shape covers about ``coverage`` of an H x W image."""
    return float(np.sqrt(coverage * h * w / UNIT_AREA[kind]))


def cell_centre(
    rng: np.random.Generator, cell: tuple[int, int], h: int, w: int
) -> tuple[float, float]:
    """A point in the inner half of a 3x3 grid cell, as (y, x)."""
    r, c = cell
    return (
        h * (r + 0.5 + rng.uniform(-0.25, 0.25)) / 3,
        w * (c + 0.5 + rng.uniform(-0.25, 0.25)) / 3,
    )


def place(
    rng: np.random.Generator,
    h: int,
    w: int,
    plan: list[tuple[str, tuple[int, int]]],
    draw: Callable[[np.random.Generator, int, tuple[float, float], float], np.ndarray],
    inside: np.ndarray | None = None,
    gap: int = 3,
    tries: int = 40,
) -> list[np.ndarray] | None:
    """Place one object per (size class, cell) of ``plan``; None when the plan cannot be met.

    ``draw(rng, k, centre, radius) -> (H, W) bool`` makes object k of the plan. An accepted
    object is one 4-connected piece inside ``inside`` (when given), at least ``gap`` pixels from
    the others, and its coverage and grid location, computed by the prompt generator's rules,
    equal the plan; so prompts written from the masks always agree with the planned scene.
    """
    masks: list[np.ndarray] = []
    forbidden = np.zeros((h, w), bool)  # the placed objects grown by ``gap``
    for k, (size, cell) in enumerate(plan):
        for _ in range(tries):
            coverage = rng.uniform(*COVERAGE_RANGE[size])
            radius = radius_for(coverage, h, w)
            mask = draw(rng, k, cell_centre(rng, cell, h, w), radius)
            if inside is not None:
                mask &= inside
            if _fits(mask, forbidden, size, cell):
                masks.append(mask)
                forbidden |= ndimage.binary_dilation(mask, iterations=gap)
                break
        else:
            return None
    return masks


def _fits(mask: np.ndarray, forbidden: np.ndarray, size: str, cell: tuple[int, int]) -> bool:
    if not mask.any() or (forbidden & mask).any() or ndimage.label(mask)[1] != 1:
        return False
    if size_class(mask.mean()) != size:
        return False
    return location_of(mask) == LOCATIONS[cell[0]][cell[1]]


def blend(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """image (H, W, 3) <- alpha * colour + (1 - alpha) * image, alpha (H, W) in [0, 1].

    Only the bounding box of the nonzero alpha is touched (most layers are small objects).
    """
    a = np.clip(alpha, 0, 1).astype(np.float32)
    rows, cols = np.flatnonzero(a.any(axis=1)), np.flatnonzero(a.any(axis=0))
    out = np.array(image, dtype=np.float32, copy=True)
    if len(rows) == 0:
        return out
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    a = a[box][..., None]
    colour = np.asarray(colour, np.float32)
    if colour.ndim == 3:
        colour = colour[box]
    out[box] = out[box] * (1 - a) + colour * a
    return out


def soft(mask: np.ndarray, sigma: float = 0.8) -> np.ndarray:
    """A mask's anti-aliased alpha, (H, W) float32."""
    return ndimage.gaussian_filter(mask.astype(np.float32), sigma)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
