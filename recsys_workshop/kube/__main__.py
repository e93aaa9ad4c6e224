"""``python -m recsys_workshop.kube build|validate|diff|context|write-config``: see :mod:`recsys_workshop.kube.cli`."""

import sys

from recsys_workshop.kube.cli import main

if __name__ == "__main__":
    sys.exit(main())
