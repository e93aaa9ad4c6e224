"""``python -m recsys_workshop.api --model-dir DIR``: the local stack (see :mod:`recsys_workshop.api.stack`)."""

import sys

from recsys_workshop.api.stack import main

sys.exit(main())
