"""Process settings, applied where work starts, never on import; the device and the seeds.

``apply()`` is called by ``fit``, ``evaluate``, ``vlsm bench`` and the notebooks' ``setup``, on
the thread that computes (``VLSM_CPU_TUNING=0`` turns it off). Importing any ``vlsm_lib`` module
leaves the process as it was (tested). Two settings, both of which make CPU training faster
without changing what it computes beyond float rounding (measurements in benchmarks/README.md):

- **Denormal floats flushed to zero** (``torch.set_flush_denormal``: FTZ/DAZ in the MXCSR
  register). Softmax probabilities and their gradients underflow into the denormal range
  (below 1.2e-38), which x86 cores handle in microcode, one to two orders of magnitude slower;
  the CLIPSeg decoder's attention backward is where it shows. Only values below 1.2e-38 change
  (to 0). The setting lives in a per-thread register, and a new thread copies it from the thread
  that creates it. ``apply`` sets it on the calling thread and, when torch's OpenMP runtime
  (libgomp) is loaded, on every thread of the calling thread's OpenMP team (one parallel region
  runs the setter on each), so threads started before or after both get it.
- **glibc malloc keeps large blocks** (``mallopt``: blocks up to 32 MiB come from the heap
  instead of a fresh ``mmap`` each, and freed memory is not handed back to the kernel at once).
  By default every activation over glibc's threshold is a new mapping whose pages the kernel
  zero-fills on first touch. The cost: the process keeps its peak heap instead of shrinking
  after it. Linux with glibc only; elsewhere nothing is done. This one cannot be undone.

``state()`` says what was applied; runs record it in ``run.json`` (key ``cpu_tuning``).

``matmul_precision(requested, device)`` is what ``fit`` and ``vlsm bench`` pass to
``torch.set_float32_matmul_precision``. PyTorch defines "high" and "medium" as permissions to
use reduced-precision internals (TF32, bf16) *where a fast algorithm exists*; on a CPU without
bf16 instructions (no ``avx512_bf16`` / ``amx_bf16``; Arm: ``bf16``) PyTorch 2.14 still takes
its emulated bf16 path, which is slower than fp32 (benchmarks/README.md). There the request
becomes "highest", which is also what PyTorch's definition promises for hardware without a fast
path. CUDA devices and CPUs with bf16 instructions get what was asked.

``pick_device``, ``device_name`` and ``seed_everything`` are the one home of those mechanics.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform
import random
from pathlib import Path

import numpy as np
import torch

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's upper limit on 64-bit systems
TRIM_THRESHOLD = 1024 * 1024 * 1024

_STATE: dict = {
    "applied": False,
    "enabled": False,
    "flush_denormal": False,
    "threads": "",
    "malloc": "default",
}
_GOMP: dict = {}  # the loaded libgomp and the callback object (kept alive)


def _set_on_omp_team(flag: bool) -> str:
    """Run ``torch.set_flush_denormal(flag)`` on every thread of the calling thread's OpenMP
    team (GOMP_parallel with a Python callback); returns how far it got, for ``state()``."""
    try:
        if "parallel" not in _GOMP:
            maps = Path("/proc/self/maps").read_text().splitlines()
            libs = [ln.split()[-1] for ln in maps if "libgomp" in ln.rsplit("/", 1)[-1]]
            if not libs:
                return "calling thread (no libgomp loaded)"
            gomp = ctypes.CDLL(libs[0])
            callback_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
            gomp.GOMP_parallel.argtypes = [
                callback_type,
                ctypes.c_void_p,
                ctypes.c_uint,
                ctypes.c_uint,
            ]
            gomp.GOMP_parallel.restype = None
            _GOMP.update(lib=gomp, parallel=gomp.GOMP_parallel, type=callback_type)
        _GOMP["callback"] = _GOMP["type"](lambda _: torch.set_flush_denormal(flag))
        threads = torch.get_num_threads()
        _GOMP["parallel"](_GOMP["callback"], None, threads, 0)
        return f"calling thread + OpenMP team of {threads}"
    except (OSError, AttributeError, IndexError) as err:  # not Linux, another OpenMP runtime
        return f"calling thread ({type(err).__name__}: {err})"


def _tune_malloc() -> str:
    """Raise glibc's mmap and trim thresholds; returns what was done, for ``state()``."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "default (no glibc mallopt)"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    ):
        return "default (mallopt refused)"
    return f"mmap_threshold={MMAP_THRESHOLD}, trim_threshold={TRIM_THRESHOLD}"


def apply(enabled: bool | None = None) -> dict:
    """Apply the settings above (by default unless ``VLSM_CPU_TUNING=0``); returns ``state()``.

    Called where work starts (``fit``, ``evaluate``, ``vlsm bench``, the notebooks' ``setup``);
    calling it again is cheap and harmless. ``apply(False)`` restores denormals on the calling
    thread and its OpenMP team (malloc settings stay).
    """
    if enabled is None:
        enabled = os.environ.get("VLSM_CPU_TUNING", "1").strip().lower() not in ("0", "false", "no")
    flushed = bool(torch.set_flush_denormal(enabled)) and enabled
    threads = _set_on_omp_team(enabled) if flushed or not enabled else ""
    malloc = _STATE["malloc"]
    if enabled and malloc == "default":
        malloc = _tune_malloc()
    _STATE.update(
        applied=True, enabled=enabled, flush_denormal=flushed, threads=threads, malloc=malloc
    )
    return state()


@functools.cache
def cpu_has_fast_bf16() -> bool | None:
    """True/False from /proc/cpuinfo (Linux); None where it cannot be read. Read once per
    process (every ``fit`` asks)."""
    try:
        return bf16_in_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return None


def bf16_in_cpuinfo(text: str) -> bool:
    """Whether /proc/cpuinfo text lists bf16 instructions (x86 ``avx512_bf16`` / ``amx_bf16``
    in ``flags``; Arm ``bf16`` in ``Features``)."""
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[-1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def matmul_precision(requested: str, device: torch.device | str = "cpu") -> str:
    """The float32 matmul precision to apply for ``requested`` on ``device`` (see above)."""
    if torch.device(device).type == "cpu" and requested != "highest":
        if cpu_has_fast_bf16() is False:
            return "highest"
    return requested


def state() -> dict:
    """What ``apply`` last set: {"applied" (False until ``apply`` runs), "enabled",
    "flush_denormal", "threads" (which threads got it), "malloc"}."""
    return dict(_STATE)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """None: CUDA when torch sees it, else the CPU. Asking for CUDA without it is an error."""
    if device is None or device == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA device; use 'cpu'")
    return device


def device_name(device: str | torch.device | None = None) -> str:
    """The GPU's name, or the CPU's model name with its cores and torch's threads."""
    device = pick_device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    return f"{name} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's legacy and torch's generators (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
