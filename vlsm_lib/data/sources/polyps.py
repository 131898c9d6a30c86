"""The paper's six polyp datasets: their sources, and what their readers share.

One ``Source`` per dataset is registered here; each names the small module of this package
whose ``records(folder, attributes)`` reads that download as it ships (``prepare`` imports the
module named by ``Source.module``):

- ``kvasir_polyp`` -> ``kvasir``: Kvasir-SEG, JPEG images and JPEG masks;
- ``clinicdb_polyp`` -> ``clinicdb``: CVC-ClinicDB, TIFF (or PNG) frames of 29 sequences;
- ``bkai_polyp`` -> ``bkai``: BKAI-IGH NeoPolyp (Kaggle), masks colour-coded red / green;
- ``cvc300_polyp`` -> ``cvc300``, ``colondb_polyp`` -> ``colondb``: PraNet's ``TestDataset``;
- ``etis_polyp`` -> ``etis``: ETIS-LaribPolypDB, PraNet's copy or the original TIFFs.

The helpers below find the folders (a SourceError names what was expected and what was found),
pair images with masks by file stem (the rest is skipped and warned about) and build the
``Record``s with the reference's names (``<stem>.<image suffix>`` for
both image and mask; the mask is written as PNG) and the non-radiology prompt metadata: class
"polyp" plus the shape and colour of the attributes file when it has them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from vlsm_lib.data.build import COPIED, Record
from vlsm_lib.data.sources import TEST_ONLY, Source, SourceError, files, find_dir, register

CLASS = "polyp"
WORDS = ("shape", "colour")  # attribute columns the non-radiology prompts use
IMAGES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
PRANET = "https://github.com/DengPingFan/PraNet"  # where PraNet's TestDataset is linked

KVASIR = register(
    Source(
        name="kvasir_polyp",
        title="Kvasir-SEG",
        url="https://datasets.simula.no/kvasir-seg/",
        terms=(
            "Free for academic and research use without prior permission; commercial use "
            "needs prior permission from Simula. Cite Jha et al., Kvasir-SEG: A Segmented "
            "Polyp Dataset, MMM 2020."
        ),
        family="non_radiology",
        sizes={"train": 800, "val": 100, "test": 100},
        module="kvasir",
        expects="kvasir-seg.zip or its folder Kvasir-SEG/ with images/*.jpg and masks/*.jpg",
    )
)
CLINICDB = register(
    Source(
        name="clinicdb_polyp",
        title="CVC-ClinicDB",
        url="https://polyp.grand-challenge.org/CVCClinicDB/",
        terms=(
            "Research and educational use only; commercial use forbidden. Images property of "
            "Hospital Clinic Barcelona, ground truth of the Computer Vision Center. Cite Bernal "
            "et al., WM-DOVA maps ..., Comput. Med. Imaging Graph. 43 (2015)."
        ),
        family="non_radiology",
        sizes={"train": 490, "val": 61, "test": 61},
        module="clinicdb",
        expects=(
            "the extracted CVC-ClinicDB download (a .rar must be extracted first): "
            "Original/*.tif and 'Ground Truth'/*.tif, or PNG/Original and PNG/Ground Truth"
        ),
    )
)
BKAI = register(
    Source(
        name="bkai_polyp",
        title="BKAI-IGH NeoPolyp-Small",
        url="https://www.kaggle.com/competitions/bkai-igh-neopolyp/data",
        terms=(
            "Kaggle competition data: downloading it means accepting the bkai-igh-neopolyp "
            "competition rules on Kaggle, which govern its use (read them there). Cite Lan et "
            "al., NeoUNet: towards accurate colon polyp segmentation and neoplasm detection, "
            "ISVC 2021 (BKAI, Hanoi University of Science and Technology, and IGH)."
        ),
        family="non_radiology",
        sizes={"train": 800, "val": 100, "test": 100},
        module="bkai",
        expects=(
            "bkai-igh-neopolyp.zip or its folder: train/train/*.jpeg and "
            "train_gt/train_gt/*.jpeg (masks red = neoplastic, green = non-neoplastic)"
        ),
    )
)
CVC300 = register(
    Source(
        name="cvc300_polyp",
        title="CVC-300 (EndoScene test set, PraNet TestDataset)",
        url=PRANET,
        terms=(
            "CVC databases are for research and educational use (as CVC-ClinicDB's terms "
            "state; EndoScene's own page is offline). Cite Vazquez et al., "
            "A benchmark for endoluminal scene segmentation of colonoscopy images, J. Healthc. "
            "Eng. 2017, and Fan et al., PraNet, MICCAI 2020, whose TestDataset is read."
        ),
        family="non_radiology",
        sizes=TEST_ONLY,
        module="cvc300",
        expects="PraNet's TestDataset (zip or folder) with CVC-300/images and CVC-300/masks",
    )
)
COLONDB = register(
    Source(
        name="colondb_polyp",
        title="CVC-ColonDB (PraNet TestDataset)",
        url=PRANET,
        terms=(
            "CVC databases are for research and educational use (as CVC-ClinicDB's terms "
            "state; ColonDB's own page is offline). Cite "
            "Bernal et al., Towards automatic polyp detection with a polyp appearance model, "
            "Pattern Recognit. 45 (2012), and Fan et al., PraNet, MICCAI 2020."
        ),
        family="non_radiology",
        sizes=TEST_ONLY,
        module="colondb",
        expects=(
            "PraNet's TestDataset (zip or folder) with CVC-ColonDB/images and CVC-ColonDB/masks"
        ),
    )
)
ETIS = register(
    Source(
        name="etis_polyp",
        title="ETIS-LaribPolypDB",
        url="https://polyp.grand-challenge.org/EtisLarib/",
        terms=(
            "For research use; images property of Lariboisiere Hospital-APHP and the ETIS "
            "laboratory (ENSEA, Cergy-Pontoise), ground truth of ETIS. Cite Silva et al., "
            "Toward embedded detection of polyps in WCE images ..., IJCARS 9 (2014)."
        ),
        family="non_radiology",
        sizes=TEST_ONLY,
        module="etis",
        expects=(
            "PraNet's TestDataset with ETIS-LaribPolypDB/images and masks, or the extracted "
            "original: ETIS-LaribPolypDB/<n>.tif with 'Ground Truth'/p<n>.tif"
        ),
    )
)


def child(folder: Path, names: Iterable[str]) -> Path | None:
    """The sub-folder of ``folder`` called one of ``names`` (case-insensitive), or None."""
    wanted = {n.lower() for n in names}
    return next(
        (p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.lower() in wanted), None
    )


def require_child(folder: Path, name: str, title: str) -> Path:
    """``child(folder, [name])``; a SourceError listing what ``folder`` holds otherwise."""
    found = child(folder, [name])
    if found is None:
        held = sorted(p.name for p in folder.iterdir())[:12]
        raise SourceError(
            f"{folder} does not look like the {title} download: expected a folder {name!r} "
            f"inside it; found {held}"
        )
    return found


def folders_named(root: Path, names: Iterable[str]) -> list[Path]:
    """Every folder at or below ``root`` called one of ``names`` (case-insensitive), the
    shallowest first."""
    wanted = {n.lower() for n in names}
    below = [p for p in root.rglob("*") if p.is_dir() and p.name.lower() in wanted]
    found = ([root] if root.name.lower() in wanted else []) + below
    return sorted(found, key=lambda p: (len(p.parts), str(p)))


def by_stem(folder: Path, title: str, strip: str = "") -> dict[str, Path]:
    """The image files directly in ``folder`` by file stem (``strip``: a prefix the stems
    carry, e.g. ETIS's "p" on masks); a SourceError when there are none."""
    found = {}
    for path in files(folder, IMAGES):
        stem = path.stem
        found.setdefault(stem[len(strip) :] if strip and stem.startswith(strip) else stem, path)
    if not found:
        raise SourceError(
            f"{folder} holds no image files ({', '.join(IMAGES)}); the {title} download has "
            "its images and masks there"
        )
    return found


def _natural(stem: str) -> tuple:
    # numbered frames (1, 2, ..., 10) in numeric order, named ones after them
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def pair(images: dict[str, Path], masks: dict[str, Path], title: str) -> list[tuple]:
    """(stem, image, mask) for the stems that have both, in natural order. Images without a
    mask and masks without an image are skipped and listed in a warning; a SourceError when
    nothing pairs (the folders are not each other's)."""
    stems = sorted(images.keys() & masks.keys(), key=_natural)
    lonely_images = sorted(images.keys() - masks.keys(), key=_natural)
    lonely_masks = sorted(masks.keys() - images.keys(), key=_natural)
    if not stems:
        raise SourceError(
            f"{title}: no image has a mask of the same name ({len(images)} images, e.g. "
            f"{lonely_images[:3]}; {len(masks)} masks, e.g. {lonely_masks[:3]})"
        )
    if lonely_images or lonely_masks:
        warnings.warn(
            f"{title}: skipped {len(lonely_images)} images without a mask {lonely_images[:10]} "
            f"and {len(lonely_masks)} masks without an image {lonely_masks[:10]}",
            stacklevel=3,
        )
    return [(s, images[s], masks[s]) for s in stems]


def polyp_meta(stem: str, attributes: dict[str, dict]) -> dict:
    """Prompt metadata of one image: the class, and shape / colour when the attributes file
    gives them."""
    row = attributes.get(stem, {})
    return {"class_name": CLASS, **{k: row[k] for k in WORDS if row.get(k)}}


def image_name(stem: str, image: Path) -> str:
    """The image's name under images/: its own suffix when it is copied as is (PNG, JPEG),
    .png when it is converted (TIFF, BMP), as the reference's names are."""
    suffix = image.suffix.lower()
    return stem + (suffix if suffix in COPIED else ".png")


def polyp_records(
    pairs: list[tuple],
    attributes: dict[str, dict],
    group: Callable[[str], str] | None = None,
    mask: Callable[[Path], Callable] | None = None,
    binarise: bool = False,
) -> list[Record]:
    """Records of (stem, image, mask) pairs. ``group``: stem -> group (a sequence); ``mask``:
    wraps a mask file into a callable reader (colour-coded masks); ``binarise``: threshold
    the mask at > 127 whatever grey levels it carries (``Record.jpeg_mask``)."""
    records = []
    for stem, image, mask_path in pairs:
        name = image_name(stem, image)
        records.append(
            Record(
                image=image,
                mask=mask(mask_path) if mask else mask_path,
                img_name=name,
                mask_name=name,  # the reference names a mask as its image; written as .png
                group=group(stem) if group else "",
                meta=polyp_meta(stem, attributes),
                jpeg_mask=binarise or mask_path.suffix.lower() in (".jpg", ".jpeg"),
            )
        )
    return records


def benchmark_records(folder: Path, attributes: dict[str, dict], subset: str, title: str):
    """Records of one subset of PraNet's polyp benchmark: ``TestDataset/<subset>/images/*.png``
    with ``masks/*.png`` of the same names (the subset folder itself may be given).

    Its masks carry grey levels along the polyp border (PraNet issue #54: "you need to
    binarise them"), so they are thresholded at > 127 rather than refused."""
    top = find_dir(folder, subset, title)
    images = require_child(top, "images", title)
    masks = require_child(top, "masks", title)
    pairs = pair(by_stem(images, title), by_stem(masks, title), title)
    return polyp_records(pairs, attributes, binarise=True)
