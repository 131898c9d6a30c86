"""Where a run's numbers come from: git SHA, package versions, device, CPU tuning and the
feature store's hits, as one dict that ``notebook.verbs.save`` writes into run.json."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata

from vlsm_lib import paths
from vlsm_lib.engine import feature_store, runtime

PACKAGES = (
    "torch",
    "transformers",
    "open_clip_torch",
    "timm",
    "segmentation_models_pytorch",
    "monai",
    "numpy",
    "pandas",
    "papermill",
)


def git_sha() -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=paths.REPO_ROOT,
                text=True,
                capture_output=True,
                timeout=5,
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def record() -> dict:
    """The provenance keys of run.json for this process (the run's kernel)."""
    return {
        "git_sha": git_sha(),
        "versions": versions(),
        "device": runtime.device_name(),
        "cpu_tuning": runtime.state(),  # what runtime applied here ("applied" False when nothing)
        # hits and misses of the suite's shared feature store in this process (the run)
        "feature_store": feature_store.stats(feature_store.active()),
    }
