"""The command line."""

from vlsm_lib.cli.main import main

__all__ = ["main"]
