"""The ``vlsm`` command: all argument parsing, nothing else.

``main`` holds ``vlsm run | gather | report | bench``, ``data`` holds ``vlsm data ...``,
``weights`` ``vlsm weights ...``, ``rehearse`` ``vlsm rehearse`` and ``predict`` ``vlsm
predict``; each parses its arguments and calls the stage that does the work.
"""

from vlsm_lib.cli.main import main

__all__ = ["main"]
