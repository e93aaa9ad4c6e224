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

:mod:`recsys_workshop.export` stores a head beside the vectors (``ranking: "mlp-head"`` in ``metadata.json``)
and :mod:`recsys_workshop.serving.model` adds its term to the dot product for every candidate.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MLPHead", "neumf_stages"]


class MLPHead:
    """``relu(user_first[u] + item_first[i])`` through the ReLU layers ``weights``/``biases``, then ``. output``.

    ``user_first`` and ``item_first`` are the first layer's two halves (``p'_u W_u`` and ``q'_i W_i + b_1``),
    what an export stores; :meth:`from_layers` makes them from the embeddings and the first layer."""

    def __init__(
        self,
        user_first: np.ndarray,
        item_first: np.ndarray,
        weights: list[np.ndarray],
        biases: list[np.ndarray],
        output: np.ndarray,
    ):
        self.user_first = np.ascontiguousarray(user_first, np.float32)
        self.item_first = np.ascontiguousarray(item_first, np.float32)
        self.weights = [np.asarray(w, np.float32) for w in weights]
        self.biases = [np.asarray(b, np.float32) for b in biases]
        self.output = np.asarray(output, np.float32).reshape(-1)
        if len(self.weights) != len(self.biases):
            raise ValueError("one bias per layer")
        widths = [self.user_first.shape[1]] + [w.shape[1] for w in self.weights]
        inputs = [self.item_first.shape[1]] + [w.shape[0] for w in self.weights] + [len(self.output)]
        if any(a != b for a, b in zip(widths, inputs[1:], strict=False)) or widths[0] != inputs[0]:
            raise ValueError(f"the layers do not chain: widths {widths}, inputs {inputs}")

    @classmethod
    def from_layers(cls, user_embeddings, item_embeddings, weights, biases, output) -> MLPHead:
        """From the tower's embeddings and all its layers: the first one is split into its two halves."""
        if not weights or len(weights) != len(biases):
            raise ValueError("an MLP head needs at least one layer, and one bias per layer")
        half = user_embeddings.shape[1]
        if item_embeddings.shape[1] != half or weights[0].shape[0] != 2 * half:
            raise ValueError(f"the first layer takes {weights[0].shape[0]} inputs, the embeddings give "
                             f"{half} + {item_embeddings.shape[1]}")  # fmt: skip
        first = np.asarray(weights[0], np.float32)
        user_first = np.asarray(user_embeddings, np.float32) @ first[:half]
        item_first = np.asarray(item_embeddings, np.float32) @ first[half:] + np.asarray(biases[0], np.float32)
        return cls(user_first, item_first, list(weights[1:]), list(biases[1:]), output)

    # ------------------------------------------------------------------ storage

    @staticmethod
    def array_names(n_layers: int) -> list[str]:
        """The names an export stores the head under, for a head with ``n_layers`` layers after the first."""
        layers = [name for j in range(n_layers) for name in (f"head_w{j}", f"head_b{j}")]
        return ["head_user_first", "head_item_first", *layers, "head_output"]

    def arrays(self) -> dict[str, np.ndarray]:
        values = [self.user_first, self.item_first]
        for weight, bias in zip(self.weights, self.biases, strict=True):
            values += [weight, bias]
        return dict(zip(self.array_names(len(self.weights)), [*values, self.output], strict=True))

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_layers: int) -> MLPHead:
        weights = [arrays[f"head_w{j}"] for j in range(n_layers)]
        biases = [arrays[f"head_b{j}"] for j in range(n_layers)]
        return cls(arrays["head_user_first"], arrays["head_item_first"], weights, biases, arrays["head_output"])

    # ------------------------------------------------------------------ scores

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
        for weight, bias in zip(self.weights, self.biases, strict=True):
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
    head = MLPHead.from_layers(
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
