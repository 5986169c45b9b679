"""``python -m keeper.cli``: the same as the ``bulwark`` command."""

import sys

from keeper.cli import main

sys.exit(main())
