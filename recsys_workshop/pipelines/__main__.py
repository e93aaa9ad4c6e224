"""``python -m recsys_workshop.pipelines run|compile ...``: see :mod:`recsys_workshop.pipelines.cli`."""

import sys

from recsys_workshop.pipelines.cli import main

sys.exit(main())
