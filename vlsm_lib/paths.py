"""Where data and outputs live.

The data root is ``$VLSM_DATA`` when set, else ``outputs/data`` under the repository (where the
demo writes MedShapes). Outputs go to ``$VLSM_OUTPUTS`` or ``outputs/``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def outputs_root() -> Path:
    return Path(os.environ.get("VLSM_OUTPUTS", REPO_ROOT / "outputs"))


def data_root() -> Path:
    """The folder holding ``<name>/{images,masks,anns}`` datasets."""
    env = os.environ.get("VLSM_DATA")
    return Path(env) if env else outputs_root() / "data"
