"""``python -m recsys_workshop.train --config job.json [key=value ...]``: see :mod:`recsys_workshop.train.job`."""

import sys

from recsys_workshop.train.job import main

sys.exit(main())
