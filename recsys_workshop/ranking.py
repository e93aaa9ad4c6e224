"""Ranking heads: the part of a model's score that is not a dot product, in numpy, for the second serving stage.

Two-stage serving (issue #16) retrieves a few hundred candidates with a dot product over an index, then ranks
them by the model's full score. For a factorised model the full score *is* the dot product. NeuMF's is not:

    logit(u, i) = (p_u * q_i) . h_gmf  +  MLP([p'_u, q'_i]) . h_mlp  +  b

The first term is a dot product of ``p_u * h_gmf`` and ``q_i``: it can retrieve (an index over the ``q_i``).
The second is a tower of ReLU layers over the concatenated MLP embeddings: the **ranking head**, which no
index can search, but which costs only a few small matrix products for a few hundred candidates.
:func:`neumf_stages` splits a fitted NeuMF into the two; :class:`MLPHead` scores candidates with numpy only
(no TensorFlow call per request). The first layer is split too, ``W_1 = [W_u; W_i]``, so that
``[p'_u, q'_i] W_1 = p'_u W_u + q'_i W_i``: the item half is computed once for the whole catalogue, and a
candidate's first layer is a row lookup and an addition.

Not yet wired into export and the model server (a NeuMF version is still exported as its score matrix,
"small catalogues only"): this module is the tested numpy half of that change.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MLPHead", "neumf_stages"]


class MLPHead:
    """``MLP([user_embeddings[u], item_embeddings[i]]) . output``: ReLU layers ``weights``/``biases``."""

    def __init__(
        self,
        user_embeddings: np.ndarray,
        item_embeddings: np.ndarray,
        weights: list[np.ndarray],
        biases: list[np.ndarray],
        output: np.ndarray,
    ):
        if not weights or len(weights) != len(biases):
            raise ValueError("an MLP head needs at least one layer, and one bias per layer")
        half = user_embeddings.shape[1]
        if item_embeddings.shape[1] != half or weights[0].shape[0] != 2 * half:
            raise ValueError(f"the first layer takes {weights[0].shape[0]} inputs, the embeddings give "
                             f"{half} + {item_embeddings.shape[1]}")  # fmt: skip
        self.weights = [np.asarray(w, np.float32) for w in weights]
        self.biases = [np.asarray(b, np.float32) for b in biases]
        self.output = np.asarray(output, np.float32).reshape(-1)
        # the first layer, split into its user and item halves (bias on the item side), computed once
        self.user_first = np.asarray(user_embeddings, np.float32) @ self.weights[0][:half]
        self.item_first = np.asarray(item_embeddings, np.float32) @ self.weights[0][half:] + self.biases[0]

    def scores(self, user_rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The head's term for each user ``user_rows[j]`` and each of its candidates ``cols[j]`` (shape
        ``(users, candidates)``)."""
        hidden = np.maximum(self.user_first[user_rows][:, None, :] + self.item_first[cols], 0.0)
        return self._rest(hidden)

    def pair_scores(self, user_rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The head's term for each (``user_rows[j]``, ``cols[j]``) pair."""
        hidden = np.maximum(self.user_first[user_rows] + self.item_first[cols], 0.0)
        return self._rest(hidden)

    def _rest(self, hidden: np.ndarray) -> np.ndarray:
        for weight, bias in zip(self.weights[1:], self.biases[1:], strict=True):
            hidden = np.maximum(hidden @ weight + bias, 0.0)
        return hidden @ self.output


def neumf_stages(model) -> tuple[dict[str, np.ndarray], MLPHead]:
    """Split a fitted :class:`~recsys_workshop.models.ncf.NCF` of kind ``"neumf"`` into its retrieval part
    (``user_vectors`` = ``p_u * h_gmf``, ``item_vectors`` = ``q_i``, ``global_bias`` = ``b``: the dot-product
    term and the output bias) and its :class:`MLPHead`; their sum is the model's logit."""
    if getattr(model, "kind", None) != "neumf" or not hasattr(model, "scorer_"):
        raise ValueError("neumf_stages needs a fitted NCF of kind 'neumf'")
    if len(model.mlp_layers) < 2:
        raise ValueError("neumf_stages needs an MLP with at least one hidden layer (mlp_layers of 2 or more)")
    network = model.scorer_
    p = network.get_layer("gmf_user").get_weights()[0]
    q = network.get_layer("gmf_item").get_weights()[0]
    kernel, bias = network.get_layer("prediction").get_weights()
    n_factors = p.shape[1]
    weights, biases = [], []
    for depth in range(1, len(model.mlp_layers)):
        weight, layer_bias = network.get_layer(f"mlp_{depth}").get_weights()
        weights.append(weight)
        biases.append(layer_bias)
    head = MLPHead(
        network.get_layer("mlp_user").get_weights()[0],
        network.get_layer("mlp_item").get_weights()[0],
        weights,
        biases,
        kernel[n_factors:, 0],
    )
    retrieval = {
        "user_vectors": (p * kernel[:n_factors, 0][None, :]).astype(np.float32),
        "item_vectors": q.astype(np.float32),
        "global_bias": np.float32(bias[0]),
    }
    return retrieval, head
