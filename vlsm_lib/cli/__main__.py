"""``python -m vlsm_lib.cli``: the ``vlsm`` command."""

import sys

from vlsm_lib.cli.main import main

sys.exit(main())
