"""Miniature fakes of the paper's 11 official downloads, in their layouts and encodings.

Each builder writes a few small frames under a folder and returns what a user would pass to
``vlsm data prepare`` (an archive or an extracted folder). The source readers' tests use them,
and so does the rehearsal of the paper suite (``vlsm data fakes``): the paper's grid runs on
them unchanged, at tiny size, before it meets a GPU.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from vlsm_lib.data.sources.fakes import camus_cxr, polyps, skin_us

FAKES = {**polyps.FAKES, **skin_us.FAKES, **camus_cxr.FAKES}

# Where the paper suite's reference-faults study finds Kvasir prepared from the reference's own
# annotation files (``data_root: "{data_root}/reference_prompts"`` in its params).
REFERENCE_PROMPTS = "reference_prompts"


def reference_annotations(dataset: Path, folder: Path) -> Path:
    """Stand-ins for the reference's annotation files of a prepared ``dataset``: its
    ``anns/{train,val,test}.json`` under ``folder``, every p6 prompt (the level with location
    words) rewritten so that a run can tell the kept prompts from regenerated ones."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted((dataset / "anns").glob("*.json")):
        entries = json.loads(path.read_text(encoding="utf-8"))
        for entry in entries:
            if "p6" in entry.get("prompts", {}):
                entry["prompts"]["p6"] = f"{entry['prompts']['p6']} (reference wording)"
        (folder / path.name).write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return folder


def prepare_all(downloads: str | Path, data_root: str | Path, names=None) -> list[Path]:
    """Write the fake download of each dataset (``names``, default all 11) under
    ``downloads`` and prepare it into ``data_root`` with the dataset's real reader
    (``sources.prepare``); returns the dataset folders. Kvasir is prepared a second time, from
    stand-ins of the reference's annotation files (``reference_annotations``), into
    ``data_root/reference_prompts``, as the reference-faults study of the paper suite needs."""
    from vlsm_lib.data import sources

    unknown = sorted(set(names or ()) - set(FAKES))
    if unknown:
        raise KeyError(f"no fake of {unknown}; valid: {', '.join(sorted(FAKES))}")
    out = []
    for name, build in FAKES.items():
        if names and name not in names:
            continue
        download = build(Path(downloads) / name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fakes hold unpaired files on purpose
            out.append(sources.prepare(name, download, data_root))
            if name == "kvasir_polyp":
                anns = reference_annotations(out[-1], Path(downloads) / "reference_anns" / name)
                out.append(
                    sources.prepare(name, download, Path(data_root) / REFERENCE_PROMPTS, anns=anns)
                )
    return out
