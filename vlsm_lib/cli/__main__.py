"""``python -m vlsm_lib.cli``: the ``vlsm`` command."""

import sys

from vlsm_lib.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
