"""``python -m skinfix_nb``: the same as the ``skinfix`` command."""

import sys

from skinfix_nb.cli import main

sys.exit(main())
