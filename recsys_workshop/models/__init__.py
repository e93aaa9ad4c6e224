"""Recommenders: every model exposes ``fit``, ``score(user_ids, item_ids)`` and
``recommend(user_ids, k, exclude_seen=True)``.

Classical models (no TensorFlow): :mod:`.base` (the shared machinery) and :mod:`.classic`.
Keras 3 models live in their own modules and import TensorFlow only when used.
"""

from recsys_workshop.models.base import Recommender
from recsys_workshop.models.classic import (
    EASE,
    BiasBaseline,
    ContentBased,
    GlobalMean,
    ItemKNN,
    MostPopular,
)
from recsys_workshop.models.ensemble import Blend

__all__ = ["EASE", "BiasBaseline", "Blend", "ContentBased", "GlobalMean", "ItemKNN", "MostPopular", "Recommender"]
