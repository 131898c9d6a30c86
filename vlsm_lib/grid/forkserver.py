"""Kernels forked from a process that has already imported what the runs need.

A run's kernel is a fresh Python process; importing torch, transformers, pandas and matplotlib
into it costs 5-10 s of CPU on a 2-core machine, for every run of a grid. The fork server pays
it once: a server process (``serve``) imports the modules of the grid's notebooks and models,
then forks one child per kernel. Each child starts as an exact copy of a process that has only
imported modules (no kernel, no thread pool of torch's started, no CUDA context), adopts the
environment and working folder jupyter_client gave the kernel, and becomes an ipykernel kernel
on the connection file jupyter_client wrote. A run therefore still gets a fresh process of its
own: nothing one run does is seen by the next.

How jupyter_client starts it: a kernel spec whose command is this module's ``launch``, a tiny
process (the standard library and ``vlsm_lib.lifetime``) that asks the server for a kernel,
forwards signals to it and lives as long as it does (jupyter_client watches and kills the
launcher; a child whose launcher is gone exits within half a second). A server told to stop
(SIGTERM) waits for its kernels and reaps them, so none is left to init. ``FORK_KERNEL`` names
the spec; ``kernel_spec_dir`` writes it.

Modules are imported in the server with the runner's environment (``MPLBACKEND`` set as
ipykernel would, so figures stay inline): a module that reads an environment variable at import
reads the runner's value, which is what the kernel would inherit anyway.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time

from vlsm_lib.lifetime import RUNNER_PID, alive, children, exit_when_gone

FORK_KERNEL = "vlsm-fork"
INLINE = "module://matplotlib_inline.backend_inline"
KERNEL_EXIT_S = 10.0  # how long a closing server waits for its kernels before killing them


def serve(path: str, code: str) -> None:
    """Import (execute ``code``), then fork a kernel per request on the unix socket ``path``."""
    os.environ.setdefault("MPLBACKEND", INLINE)
    namespace: dict = {}
    try:
        exec(compile(code, "<fork-server warm-up>", "exec"), namespace)
    except Exception as err:  # a failing import fails in the run's own cell, saying why
        print(f"fork server: warm-up failed: {type(err).__name__}: {err}", file=sys.stderr)
    import ipykernel.kernelapp  # noqa: F401 - what every child needs first

    # the runner's pid, as it gave it (a parent that died during the imports above would leave
    # getppid() at 1, which never dies)
    parent = int(os.environ.get(RUNNER_PID) or os.getppid())
    stopping: list[int] = []  # SIGTERM from the runner: stop, and wait for the kernels
    signal.signal(signal.SIGTERM, lambda n, _f: stopping.append(n))
    signal.signal(signal.SIGCHLD, lambda *_: _reap())
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path + ".tmp")
    os.replace(path + ".tmp", path)  # the socket appears once the imports are done
    server.listen(8)
    server.settimeout(1.0)
    while alive(parent) and not stopping:  # the server ends with the runner that started it
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        except InterruptedError:
            continue
        with conn:
            request = json.loads(conn.makefile("r").readline())
            pid = os.fork()
            if pid == 0:
                server.close()
                conn.close()
                _become_kernel(request)
            conn.sendall(f"{pid}\n".encode())
    server.close()
    _wait_for_kernels(KERNEL_EXIT_S)
    if not stopping:  # the runner is gone without closing us: clean up after it
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def _wait_for_kernels(wait_s: float) -> None:
    """Reap every kernel this server forked, so that none is left to init (whose accounting
    nobody reads): a released kernel ends within a second of its launcher; one still running
    after ``wait_s`` is killed."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    end = time.monotonic() + wait_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # none left
        if pid:
            continue
        if time.monotonic() > end:
            _kill_children()
            end = float("inf")  # killed: wait for them without a limit
        time.sleep(0.05)


def _kill_children() -> None:
    # without /proc there are none listed: the kernels end with their launchers all the same
    for pid in children():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def _become_kernel(request: dict) -> None:
    """In the forked child: the launcher's environment and folder, then an ipykernel."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.setdefault("MPLBACKEND", INLINE)
    os.chdir(request["cwd"])
    exit_when_gone(int(request["launcher"]), 0.5, name="vlsm-fork-watch")
    try:
        from ipykernel.kernelapp import IPKernelApp

        # the server is the kernel's parent: the kernel ends with it (ipykernel's poller)
        parent = f"--IPKernelApp.parent_handle={os.getppid()}"
        quiet = "--IPKernelApp.log_level=ERROR"  # as grid.kernels.KERNEL_ARGUMENTS
        sys.argv = ["ipykernel", "-f", request["connection_file"], parent, quiet]
        app = IPKernelApp.instance()
        app.initialize(sys.argv[1:])
        app.start()
    finally:
        os._exit(0)


def launch(path: str, connection_file: str) -> int:
    """The kernel command jupyter_client runs: ask the server for a kernel, then stand for it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        request = {
            "connection_file": os.path.abspath(connection_file),
            "env": dict(os.environ),
            "cwd": os.getcwd(),
            "launcher": os.getpid(),
        }
        conn.sendall((json.dumps(request) + "\n").encode())
        pid = int(conn.makefile("r").readline())
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda n, _f: os.kill(pid, n) if alive(pid) else None)
    while alive(pid):
        time.sleep(0.2)
    return 0


def kernel_spec_dir(folder: str, path: str) -> str:
    """Write the kernel spec ``FORK_KERNEL`` (its command: ``launch`` on socket ``path``)
    under ``folder``; returns the folder holding it, for a ``KernelSpecManager``."""
    spec = os.path.join(folder, "kernels", FORK_KERNEL)
    os.makedirs(spec, exist_ok=True)
    argv = [sys.executable, "-m", "vlsm_lib.grid.forkserver", "launch", path, "{connection_file}"]
    with open(os.path.join(spec, "kernel.json"), "w", encoding="utf-8") as f:
        json.dump({"argv": argv, "display_name": "Python 3 (vlsm fork)", "language": "python"}, f)
    return os.path.join(folder, "kernels")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "launch":
        sys.exit(launch(sys.argv[2], sys.argv[3]))
