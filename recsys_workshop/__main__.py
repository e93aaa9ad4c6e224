"""``python -m recsys_workshop``: the workshop's command line (see ``--help``)."""

from recsys_workshop.cli import main

raise SystemExit(main())
