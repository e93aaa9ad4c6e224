"""Development tools of the workshop, run from the repository root (``python -m tools.<name>``).

Not part of the ``recsys_workshop`` package and not installed with it: nothing here is needed to run the
labs, the training job or the servers.

- :mod:`tools.labbuild`: builds ``labs/`` and ``solutions/`` from ``source/`` (``make labs``; ``--check``
  in CI).
"""
