"""The paper's 11 public datasets from their official downloads: ``vlsm data prepare NAME``.

Each dataset has a ``Source`` (where to get it, its terms, the paper's split sizes, its prompt
family) and a module in this package whose ``records(folder, attributes)`` lists the download's
image-mask pairs as ``build.Record``s, reading the files, folder structure, mask encodings and
metadata files as they ship. ``prepare`` unpacks an archive when given one, calls the module and
writes the dataset with ``build.write_dataset`` (atomic; splits seeded; prompts generated).

Shape and colour, which the paper took from a visual question-answering model, come from an
optional attributes CSV (``read_attributes``: columns ``image`` (file name or stem), ``shape``,
``colour``); without one they are left out of the sentences.

``prepare(..., anns=DIR)`` takes the reference's annotation files instead: its exact splits and
prompts (``regenerate_prompts=True`` keeps the splits and rewrites the prompts with the project's
generator), after checking that every file they name exists in the download.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vlsm_lib.data.build import write_dataset
from vlsm_lib.data.io import DataError


class SourceError(DataError):
    """The folder or archive given is not the named dataset's download (says what was
    expected and what was found)."""


@dataclass(frozen=True)
class Source:
    name: str  # the dataset's folder name, as the reference's
    title: str
    url: str
    terms: str  # licence or access terms, as the provider states them
    family: str  # prompt family (build.FAMILIES)
    sizes: dict  # the paper's records per split
    module: str  # the module of this package that reads the download
    expects: str  # what the download holds, for errors and --list


TEST_ONLY = {"test": 1.0}
SOURCES: dict[str, Source] = {}


def register(source: Source) -> Source:
    SOURCES[source.name] = source
    return source


def get(name: str) -> Source:
    if name not in SOURCES:
        raise KeyError(f"unknown dataset {name!r}; valid: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


@contextmanager
def unpacked(path: str | Path) -> Iterator[Path]:
    """The download as a folder: a folder as it is, a .zip / .tar(.gz) extracted to a
    temporary folder that is removed afterwards."""
    path = Path(path)
    if path.is_dir():
        yield path
        return
    if not path.is_file():
        raise SourceError(f"{path} not found; pass the downloaded archive or its folder")
    if path.suffix.lower() in (".rar", ".7z"):  # no pure-Python reader: say how, do not guess
        raise SourceError(
            f"{path} is a {path.suffix} archive: extract it first (`unrar x` or `7z x`) and pass "
            "the extracted folder"
        )
    tmp = Path(tempfile.mkdtemp(prefix="vlsm-source-"))
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                z.extractall(tmp)
        elif tarfile.is_tarfile(path):
            with tarfile.open(path) as t:
                t.extractall(tmp, filter="data")
        else:
            raise SourceError(f"{path} is neither a folder nor a zip/tar archive")
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def find_dir(root: Path, name: str, source: str) -> Path:
    """The folder called ``name`` (case-insensitive) at or below ``root``; SourceError naming
    what was expected and what the download holds otherwise."""
    if root.name.lower() == name.lower():
        return root
    found = sorted(
        p
        for p in root.rglob("*")
        if p.is_dir() and p.name.lower() == name.lower() and "__MACOSX" not in p.parts
    )
    if not found:
        top = sorted(p.name for p in root.iterdir())[:12]
        raise SourceError(
            f"{root} does not look like the {source} download: expected a folder {name!r} "
            f"inside it; found {top}"
        )
    return found[0]


def files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The files directly in ``folder`` with one of ``suffixes`` (case-insensitive), sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def read_attributes(path: str | Path | None) -> dict[str, dict]:
    """An attributes CSV (``image`` = file name or stem, then e.g. ``shape``, ``colour``) as
    {image stem: {column: value}}; {} for None. Empty cells are left out."""
    if not path:
        return {}
    path = Path(path)
    if not path.is_file():
        raise DataError(f"attributes file {path} not found")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and "image" not in rows[0]:
        raise DataError(f"{path}: needs a column 'image' (file name or stem); has {list(rows[0])}")
    return {Path(r["image"]).stem: {k: v for k, v in r.items() if k != "image" and v} for r in rows}


def prepare(
    name: str,
    source: str | Path,
    out: str | Path,
    seed: int = 42,
    attributes: str | Path | None = None,
    anns: str | Path | None = None,
    regenerate_prompts: bool = False,
) -> Path:
    """Write dataset ``name`` under ``out`` from its official download ``source`` (module
    docstring); returns the dataset folder."""
    spec = get(name)
    reader = importlib.import_module(f"vlsm_lib.data.sources.{spec.module}")
    about = {
        "source": spec.title,
        "url": spec.url,
        "terms": spec.terms,
        "source_path": str(Path(source).resolve()),
    }
    with unpacked(source) as folder:
        # readers that deal splits themselves (ISIC's fixed test set, BUSI by class) take the seed
        takes_seed = "seed" in inspect.signature(reader.records).parameters
        extra = {"seed": seed} if takes_seed else {}
        records = reader.records(folder, read_attributes(attributes), **extra)
        if anns:
            from vlsm_lib.data.sources.reference import with_reference

            records = with_reference(records, Path(anns), regenerate_prompts)
            about["prompts_from"] = (
                "reference splits, prompts regenerated"
                if regenerate_prompts
                else "reference annotation files (splits and prompts)"
            )
        return write_dataset(name, records, out, spec.family, spec.sizes, seed, about)


def _register_all() -> None:
    # each module registers its Sources on import: the paper's 11 datasets
    for module in ("polyps", "isic", "dfu", "busi", "camus", "chexlocalize"):
        importlib.import_module(f"vlsm_lib.data.sources.{module}")


_register_all()
