"""Helper package of the workshop *Deep-Learning Recommenders in Production*.

Import the submodules you need, module-qualified (``from recsys_workshop import data, metrics``).
Importing the package itself does no work and pulls in nothing heavy.
"""

__version__ = "0.1.0"
