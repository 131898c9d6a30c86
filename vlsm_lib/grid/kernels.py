"""Lean run start: the next run's kernel starts, and imports what its notebook needs, while the
current run executes; finished kernels are killed in the background.

Before its first cell does any work, a papermill run waits for a Python kernel to start (~3 s on
a 2-core machine), for its imports (torch, pandas, matplotlib, the model's backend: 3-9 s), and
after its last cell, for a graceful kernel shutdown (~3 s). ``KernelPool`` moves all three off
the run's critical path:

1. ``prepare(run)`` launches a kernel in a background thread, with the environment and working
   folder papermill would give it (the runner's environment, ``TQDM_DISABLE``, the runner's pid
   that ``lifetime.exit_with_runner`` watches), and executes there the code cells before the
   notebook's ``parameters`` cell (its imports: notebooks are reports whose first cells import;
   a test keeps them free of side effects beyond imports and environment defaults) and the import
   of the run's model backend (``models.MODELS``).
2. ``take(run)`` hands that kernel to papermill (``km=``), which runs every cell in it as
   usual, the imports again (instant: the modules are loaded). A run that finds none ready
   starts one the same way, and waits.
3. ``release(km)`` kills a finished kernel in the background: the notebook's last cell wrote
   the run's results synchronously, nothing is left to flush.

What the warm-up executes never shows in the notebook and sets no state a cell reads besides the
imports' own; seeds, threads and CPU settings come from the notebook's setup cell as before.
When a kernel cannot be started ahead (an error in a background start), ``take`` says so and
returns None, and papermill starts its own kernel (the eager path).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import warnings
from pathlib import Path

from vlsm_lib import lifetime, paths

STARTUP_TIMEOUT_S = 120.0
# The grid's console shows progress and errors: a kernel's own log (ipykernel warns at every
# start that its local TCP ports are not encrypted) stays out of it; a cell's errors still reach
# the run's record and notebook.
KERNEL_ARGUMENTS = ("--IPKernelApp.log_level=ERROR",)


def import_cells(notebook: Path) -> str:
    """The code cells before a notebook's ``parameters`` cell (its imports), joined."""
    try:
        cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return ""
    code = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            break
        source = cell.get("source", "")
        code.append(source if isinstance(source, str) else "".join(source))
    return "\n".join(code)


def backend_import(model: object) -> str:
    """The import of a registered model's backend and its shared resources (``models.warm_up``);
    "" for anything else."""
    from vlsm_lib.models import MODELS

    if not (isinstance(model, str) and model in MODELS):
        return ""
    return f"__import__('vlsm_lib.models', fromlist=['warm_up']).warm_up({model!r})"


def warm_code(notebook: Path, model: object = None) -> str:
    """The code a kernel runs ahead of its run: the notebook's imports, the model backend's
    import, and the runner watch."""
    code = [import_cells(notebook), backend_import(model)]
    code.append("__import__('vlsm_lib.lifetime').lifetime.exit_with_runner()")
    return "\n".join(c for c in code if c)


def grid_code(runs) -> str:
    """What the fork server imports for a grid: every notebook's imports and model backend."""
    notebooks = dict.fromkeys(run.notebook for run in runs)
    models = dict.fromkeys(run.params.get("model") for run in runs if run.params.get("model"))
    code = [import_cells(nb) for nb in notebooks] + [backend_import(m) for m in models]
    return "\n".join(c for c in code if c)


class ForkServer:
    """The fork server process of a grid (``forkserver``) and the kernel spec that uses it."""

    def __init__(self, code: str):
        import subprocess
        import sys
        import tempfile

        from vlsm_lib.grid.forkserver import kernel_spec_dir

        self.folder = tempfile.mkdtemp(prefix="vlsm-fork-")
        self.path = os.path.join(self.folder, "server.sock")
        self.specs = kernel_spec_dir(self.folder, self.path)
        argv = [sys.executable, "-m", "vlsm_lib.grid.forkserver", "serve", self.path, code]
        self.proc = subprocess.Popen(argv, env=kernel_env(), cwd=str(paths.REPO_ROOT))

    def ready(self, timeout: float = STARTUP_TIMEOUT_S) -> bool:
        """True once the server listens (its imports done); False when it died or timed out."""
        end = time.monotonic() + timeout
        while not os.path.exists(self.path):
            if self.proc.poll() is not None or time.monotonic() > end:
                return False
            time.sleep(0.05)
        return True

    def manager(self):
        from jupyter_client.kernelspec import KernelSpecManager

        from vlsm_lib.grid.forkserver import FORK_KERNEL

        return _Tracked.make(FORK_KERNEL, KernelSpecManager(kernel_dirs=[self.specs]))

    def close(self) -> None:
        import shutil

        self.proc.terminate()
        try:
            self.proc.wait(10)
        except Exception:  # noqa: BLE001 - it will not outlive us: it watches our pid
            self.proc.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


def kernel_env() -> dict[str, str]:
    """The environment of a run's kernel: the runner's, without progress bars, with the pid
    the kernel watches (it ends with its runner)."""
    return {**os.environ, "TQDM_DISABLE": "1", lifetime.RUNNER_PID: str(os.getpid())}


class _Tracked:
    """Made on first use: an ``AsyncKernelManager`` that keeps the clients it hands out, so
    that their channels (and heartbeat threads) can be stopped once the run is over."""

    cls = None

    @classmethod
    def make(cls, kernel_name: str = "python3", kernel_spec_manager=None):
        if cls.cls is None:
            from jupyter_client.manager import AsyncKernelManager

            class Tracked(AsyncKernelManager):
                def client(self, **kwargs):
                    kc = super().client(**kwargs)
                    self.__dict__.setdefault("vlsm_clients", []).append(kc)
                    return kc

                async def start_kernel(self, **kwargs):
                    # papermill starts it without an environment: the kernel's is ours, never
                    # the runner's os.environ changed for good
                    kwargs.setdefault("env", kernel_env())
                    extra = kwargs.get("extra_arguments") or []
                    kwargs["extra_arguments"] = [*extra, *KERNEL_ARGUMENTS]
                    return await super().start_kernel(**kwargs)

            cls.cls = Tracked
        extra = {"kernel_spec_manager": kernel_spec_manager} if kernel_spec_manager else {}
        return cls.cls(kernel_name=kernel_name, **extra)


class Prestarted:
    """One kernel started in a background thread, its warm-up code executed."""

    def __init__(self, notebook: Path, model: object = None, server: ForkServer | None = None):
        self.km, self.server = None, server
        self.error = ""
        self.code = warm_code(notebook, model)
        self.env = kernel_env()
        self.thread = threading.Thread(target=self._start, name="vlsm-kernel-start", daemon=True)
        self.thread.start()

    def _start(self) -> None:
        try:
            asyncio.run(self._astart())
        except Exception as err:  # reported by take(); the run starts its own kernel
            self.error = f"{type(err).__name__}: {err}"

    async def _astart(self) -> None:
        forked = self.server is not None and await asyncio.to_thread(self.server.ready)
        km = self.server.manager() if forked else _Tracked.make()
        await km.start_kernel(env=self.env, cwd=str(paths.REPO_ROOT))
        self.km = km
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=STARTUP_TIMEOUT_S)
            msg_id = kc.execute(self.code, silent=True, store_history=False)
            while True:
                reply = await kc.get_shell_msg(timeout=STARTUP_TIMEOUT_S)
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
            if reply["content"].get("status") != "ok":  # the notebook's own cell will say why
                self.error = "warm-up failed: " + reply["content"].get("evalue", "")
        finally:
            kc.stop_channels()
            km.__dict__.pop("vlsm_clients", None)

    def take(self):
        """The ready kernel manager, or None (the reason is warned about)."""
        self.thread.join(STARTUP_TIMEOUT_S * 2)
        if self.km is not None and not self.thread.is_alive() and not self.error:
            return self.km
        warnings.warn(
            f"a kernel started ahead could not be used ({self.error or 'start timed out'}); "
            "papermill starts its own",
            stacklevel=2,
        )
        if self.km is not None:
            release(self.km)
        return None


def fresh_manager():
    """A kernel manager for papermill to start (the eager path: no kernel started ahead), whose
    kernel gets ``kernel_env``."""
    return _Tracked.make()


def release(km) -> threading.Thread:
    """Stop the clients handed out for a run and kill its kernel, in a background thread."""

    def stop():
        for kc in km.__dict__.pop("vlsm_clients", []):
            try:
                kc.stop_channels()
            except Exception:  # noqa: BLE001 - a client already closed
                pass
        try:
            asyncio.run(km.shutdown_kernel(now=True))
        except Exception:  # noqa: BLE001 - the kernel is gone already
            pass

    thread = threading.Thread(target=stop, name="vlsm-kernel-stop", daemon=True)
    thread.start()
    _STOPPING.append(thread)
    return thread


_STOPPING: list[threading.Thread] = []


class KernelPool:
    """At most one kernel started ahead of need (see the module docstring)."""

    def __init__(self, fork_code: str | None = None):
        """``fork_code``: what a fork server imports (``grid_code``); None: no fork server,
        each kernel starts as a new process (and imports ahead of need)."""
        self.ready: Prestarted | None = None
        self.upcoming = None  # the run after the one taking a kernel (set by the runner)
        self.lock = threading.Lock()  # a Dask worker's threads share one pool
        self.server = ForkServer(fork_code) if fork_code is not None else None
        lifetime.keep_descendants()  # a kernel orphaned by its server stays in our tree

    def prepare(self, run) -> None:
        """Start a kernel for ``run`` (a ``runner.Run``) unless one is already waiting."""
        if self.ready is None:
            self.ready = Prestarted(run.notebook, run.params.get("model"), self.server)

    def take(self, run):
        """A started kernel manager for ``run`` (waiting for it when needed), or None; then
        the kernel of ``upcoming`` starts while ``run`` executes."""
        with self.lock:
            self.prepare(run)
            ready, self.ready = self.ready, None
        km = ready.take()
        with self.lock:
            if self.upcoming is not None:
                self.prepare(self.upcoming)
        return km

    def close(self) -> None:
        """Kill a kernel still waiting, and wait for the kernels being stopped."""
        if self.ready is not None:
            self.ready.thread.join(STARTUP_TIMEOUT_S)
            if self.ready.km is not None:
                release(self.ready.km)
            self.ready = None
        while _STOPPING:
            _STOPPING.pop().join(30)
        if self.server is not None:
            self.server.close()
        lifetime.reap()
