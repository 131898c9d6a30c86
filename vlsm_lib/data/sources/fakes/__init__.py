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


def prepare_all(downloads: str | Path, data_root: str | Path, names=None) -> list[Path]:
    """Write the fake download of each dataset (``names``, default all 11) under
    ``downloads`` and prepare it into ``data_root`` with the dataset's real reader
    (``sources.prepare``); returns the dataset folders."""
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
    return out
