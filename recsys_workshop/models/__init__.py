"""Recommenders: every model exposes ``fit``, ``score(user_ids, item_ids)`` and
``recommend(user_ids, k, exclude_seen=True)``.

Classical models (no TensorFlow): :mod:`.base` (the shared machinery) and :mod:`.classic`.
Keras 3 models live in their own modules and import TensorFlow only when used.
"""

from recsys_workshop.models.base import Recommender
from recsys_workshop.models.classic import (
    BiasBaseline,
    ContentBased,
    GlobalMean,
    ItemKNN,
    MostPopular,
)

__all__ = ["BiasBaseline", "ContentBased", "GlobalMean", "ItemKNN", "MostPopular", "Recommender"]
