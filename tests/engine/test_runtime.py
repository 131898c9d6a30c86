"""vlsm_lib.engine.runtime: nothing on import; where applied, denormals flushed on every torch
thread
and glibc keeping large blocks."""

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
import vlsm_lib.engine.train
from vlsm_lib.engine import runtime
runtime.apply()
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


def test_apply_reaches_the_whole_openmp_team():
    got = run_python(UNDERFLOW.format(before=START_POOL), VLSM_CPU_TUNING="1")
    assert got["state"]["threads"] == "calling thread + OpenMP team of 2"


def test_tuning_can_be_turned_off():
    got = run_python(UNDERFLOW.format(before=""), VLSM_CPU_TUNING="0")
    assert got["state"]["applied"] is True and got["state"]["enabled"] is False
    assert got["state"]["flush_denormal"] is False and got["state"]["malloc"] == "default"
    assert got["nonzero"] == 1 << 22  # denormals kept: the same code path flushes them above


MAPPED = """
import ctypes, json, torch
import vlsm_lib.engine.train
from vlsm_lib.engine import runtime
{apply}
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = MallInfo2
before = mallinfo2().hblkhd
block = torch.empty(30 * 2**20 // 4)  # 30 MiB, under the 32 MiB limit
print(json.dumps({{"mapped": mallinfo2().hblkhd - before, "state": runtime.state()}}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_large_blocks_come_from_the_heap():
    """A 30 MiB block: its own mmap by default (fresh zero-filled pages every time), from the
    reusable heap with the setting (glibc's allocation statistics, mallinfo2)."""
    tuned = run_python(MAPPED.format(apply="runtime.apply()"), VLSM_CPU_TUNING="1")
    default = run_python(MAPPED.format(apply="runtime.apply()"), VLSM_CPU_TUNING="0")
    assert tuned["state"]["malloc"].startswith("mmap_threshold=")
    assert default["mapped"] >= 30 * 2**20, default
    assert tuned["mapped"] == 0, tuned


IMPORT_ALL = """
import importlib, json, pkgutil, torch
import vlsm_lib
names = [m.name for m in pkgutil.walk_packages(vlsm_lib.__path__, "vlsm_lib.")]
for name in names:
    importlib.import_module(name)
torch.set_num_threads(2)
from vlsm_lib.engine import runtime
y = torch.full((1 << 22,), 1e-20)
print(json.dumps({"modules": len(names), "scalar": float(torch.tensor(1e-39) * 1.0),
                  "nonzero": int((y * y).count_nonzero()), "state": runtime.state()}))
"""


@pytest.mark.slow
def test_importing_every_module_leaves_the_process_as_it_was():
    got = run_python(IMPORT_ALL, VLSM_CPU_TUNING="1")
    assert got["modules"] > 30
    assert got["scalar"] != 0.0  # a denormal product survives: nothing flushed on import
    assert got["nonzero"] == 1 << 22  # on any of torch's threads
    assert got["state"]["applied"] is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_malloc_untouched_until_applied():
    got = run_python(MAPPED.format(apply=""), VLSM_CPU_TUNING="1")
    assert got["mapped"] >= 30 * 2**20 and got["state"]["malloc"] == "default"


def test_run_json_records_cpu_tuning(tmp_path):
    from vlsm_lib.engine import runtime
    from vlsm_lib.notebook import verbs
    from vlsm_lib.results import read_run

    verbs.save(tmp_path / "run", {"model": "unet"}, metrics={"dice": 1.0})
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
    from vlsm_lib.engine import runtime

    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: fast_bf16)
    assert runtime.matmul_precision(requested, device) == applied


@pytest.mark.parametrize(
    "cpuinfo, fast",
    [
        ("flags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n", True),
        ("flags\t\t: fpu avx2 avx512f avx512_vnni\n", False),
        ("Features\t: fp asimd bf16 i8mm\n", True),  # Arm
        ("processor\t: 0\n", False),
    ],
)
def test_bf16_read_from_cpu_flags(cpuinfo, fast):
    from vlsm_lib.engine import runtime

    assert runtime.bf16_in_cpuinfo(cpuinfo) is fast
