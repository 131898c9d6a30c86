"""DFUC 2022 (Diabetic Foot Ulcer Challenge 2022), the training release.

The organisers send the data after a licence agreement is signed; the training release
``DFUC2022_train_release`` holds

- ``DFUC2022_train_images/``: 2,000 foot photographs ``<6 digits>.jpg`` (e.g. ``100001.jpg``);
- ``DFUC2022_train_masks/``: their ulcer masks ``<same digits>.png``, 0 = background and
  255 = ulcer (read with ``build.decode_mask``: greyscale, grey saved as RGB or a two-level
  palette all decode the same).

The 2,000 test images were released without masks and are not used. The paper deals the
training pairs 1600 / 200 / 200 (seeded, by ``write_dataset``). Names follow the reference's
(``101570.jpg`` / ``101570.png``), so ``--anns`` matches by stem.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from vlsm_lib.data.build import Record
from vlsm_lib.data.sources import Source, files, find_dir, register

SOURCE = register(
    Source(
        name="dfu",
        title="DFUC 2022: Diabetic Foot Ulcer Challenge 2022 (training release)",
        url="https://dfuc2022.grand-challenge.org/dataset/",
        terms="available on request from the organisers (Manchester Metropolitan University) "
        "after signing their licence agreement; use as that agreement allows, cite Kendrick "
        "et al., arXiv:2204.11618",
        family="non_radiology",
        sizes={"train": 1600, "val": 200, "test": 200},
        module="dfu",
        expects="DFUC2022_train_release with DFUC2022_train_images/*.jpg and "
        "DFUC2022_train_masks/*.png (same stems)",
    )
)

CLASS = "foot ulcer"
IMAGES, MASKS = "DFUC2022_train_images", "DFUC2022_train_masks"


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    # macOS resource forks ("._100001.jpg") ride along in some re-packed archives
    return {p.stem: p for p in files(folder, suffixes) if not p.name.startswith("._")}


def records(folder: Path, attributes: dict[str, dict]) -> list[Record]:
    """One record per image with a mask of the same stem; the rest is skipped and warned
    about. Splits are left to ``write_dataset`` (no official split of the training set)."""
    folder = Path(folder)
    images = _by_stem(find_dir(folder, IMAGES, SOURCE.title), (".jpg", ".jpeg", ".png"))
    masks = _by_stem(find_dir(folder, MASKS, SOURCE.title), (".png",))
    lonely = [f"image {images[s].name} (no mask)" for s in sorted(set(images) - set(masks))]
    lonely += [f"mask {masks[s].name} (no image)" for s in sorted(set(masks) - set(images))]
    if lonely:
        warnings.warn(
            f"DFUC 2022: skipped {len(lonely)} unmatched files (first: {lonely[:5]})",
            stacklevel=2,
        )
    out = []
    for stem in sorted(set(images) & set(masks)):
        words = attributes.get(stem, {})
        out.append(
            Record(
                image=images[stem],
                mask=masks[stem],
                img_name=stem + images[stem].suffix.lower(),
                mask_name=stem + ".png",
                meta={
                    "class_name": CLASS,
                    **{k: words[k] for k in ("shape", "colour") if k in words},
                },
            )
        )
    return out
