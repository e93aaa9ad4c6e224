"""``python -m recsys_workshop.loadtest run|steps|report ...``: see :mod:`recsys_workshop.loadtest.cli`."""

import sys

from recsys_workshop.loadtest.cli import main

sys.exit(main())
