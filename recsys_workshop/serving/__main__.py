"""``python -m recsys_workshop.serving``: see :mod:`recsys_workshop.serving.cli`."""

import sys

from recsys_workshop.serving.cli import main

sys.exit(main())
