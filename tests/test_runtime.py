"""vlsm_lib.runtime: denormals flushed on every torch thread, glibc keeping large blocks."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import vlsm_lib

PACKAGE = Path(vlsm_lib.__file__).parent

# Squares of 1e-20 underflow to 1e-40, a denormal: nonzero unless flushed. The multiplication of
# 4 Mi elements is split over torch's threads, so a thread without the setting leaves nonzeros.
UNDERFLOW = """
import json, os, torch
torch.set_num_threads(2)
{before}
import vlsm_lib.train
from vlsm_lib import runtime
y = torch.full((1 << 22,), 1e-20)
print(json.dumps({{"nonzero": int((y * y).count_nonzero()), "state": runtime.state()}}))
"""
START_POOL = "a = torch.randn(512, 512); (a @ a).sum(); (torch.randn(1 << 22) * 2).sum()"


def run_python(code: str, **env) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("before", ["", START_POOL], ids=["fresh", "pool_already_running"])
def test_denormals_flushed_on_every_thread(before):
    got = run_python(UNDERFLOW.format(before=before), VLSM_CPU_TUNING="1")
    assert got["state"]["flush_denormal"] is True
    assert got["nonzero"] == 0, got


def test_tuning_can_be_turned_off():
    got = run_python(UNDERFLOW.format(before=""), VLSM_CPU_TUNING="0")
    assert got["state"] == {
        "enabled": False,
        "flush_denormal": False,
        "threads": got["state"]["threads"],
        "malloc": "default",
    }
    assert got["nonzero"] == 1 << 22  # denormals kept: the same code path flushes them above


MAPPED = """
import ctypes, json, torch
import vlsm_lib.train
from vlsm_lib import runtime
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = MallInfo2
before = mallinfo2().hblkhd
block = torch.empty(30 * 2**20 // 4)  # 30 MiB, under the 32 MiB limit
print(json.dumps({"mapped": mallinfo2().hblkhd - before, "state": runtime.state()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_large_blocks_come_from_the_heap():
    """A 30 MiB block: its own mmap by default (fresh zero-filled pages every time), from the
    reusable heap with the setting (glibc's allocation statistics, mallinfo2)."""
    tuned = run_python(MAPPED, VLSM_CPU_TUNING="1")
    default = run_python(MAPPED, VLSM_CPU_TUNING="0")
    assert tuned["state"]["malloc"].startswith("mmap_threshold=")
    assert default["mapped"] >= 30 * 2**20, default
    assert tuned["mapped"] == 0, tuned


def test_every_torch_module_imports_runtime_first():
    """The settings must be in place before vlsm_lib computes anything with torch."""
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "runtime.py":
            continue
        tree = ast.parse(path.read_text())
        imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        names = {a.name for n in imports if isinstance(n, ast.Import) for a in n.names}
        froms = {
            (n.module, a.name) for n in imports if isinstance(n, ast.ImportFrom) for a in n.names
        }
        uses_torch = "torch" in names or any(m and m.split(".")[0] == "torch" for m, _ in froms)
        if uses_torch and ("vlsm_lib", "runtime") not in froms:
            missing.append(str(path.relative_to(PACKAGE)))
    assert not missing, f"import vlsm_lib.runtime in: {missing}"


def test_run_json_records_cpu_tuning(tmp_path):
    from vlsm_lib import runtime
    from vlsm_lib.results import read_run, save_run

    save_run(tmp_path / "run", {"model": "unet"}, metrics={"dice": 1.0})
    assert read_run(tmp_path / "run")["cpu_tuning"] == runtime.state()


@pytest.mark.parametrize(
    "fast_bf16, device, requested, applied",
    [
        (False, "cpu", "medium", "highest"),
        (False, "cpu", "high", "highest"),
        (False, "cpu", "highest", "highest"),
        (True, "cpu", "medium", "medium"),
        (None, "cpu", "medium", "medium"),  # flags unreadable: as asked
        (False, "cuda", "medium", "medium"),
    ],
)
def test_reduced_matmul_precision_only_where_the_cpu_has_bf16(
    monkeypatch, fast_bf16, device, requested, applied
):
    from vlsm_lib import runtime

    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: fast_bf16)
    assert runtime.matmul_precision(requested, device) == applied


def test_cpu_flags_are_read():
    from vlsm_lib import runtime

    readable = Path("/proc/cpuinfo").is_file()
    assert (runtime.cpu_has_fast_bf16() is None) == (not readable)
