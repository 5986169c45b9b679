"""``python -m bulwark.cli``: the same as the ``bulwark`` command."""

import sys

from bulwark.cli import main

sys.exit(main())
