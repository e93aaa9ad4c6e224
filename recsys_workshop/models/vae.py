"""Autoencoders with a multinomial likelihood over the whole catalogue: Mult-VAE and Mult-DAE
(Liang, Krishnan, Hoffman and Jebara, "Variational Autoencoders for Collaborative Filtering", WWW 2018).

A user is their history: a multi-hot row ``x_u`` over every item of the catalogue. The encoder maps
the (L2-normalised, dropout-corrupted) row to a small code, the decoder maps the code back to one
logit per item, and the loss is the **multinomial log-likelihood** of the user's items under the
softmax of those logits::

    loss(u) = - sum_i x_ui * log softmax(logits_u)_i

Every item competes with every other for the user's probability mass (a full softmax over the
1,682 films of ml-100k, no sampled negatives), which is exactly what a top-k list needs.

- **Mult-DAE** (``variational=False``): a denoising autoencoder; the code is a ``tanh`` layer.
- **Mult-VAE** (``variational=True``): the code is a Gaussian ``q(z | x_u) = N(mu, diag(sigma^2))``,
  sampled with the reparameterisation trick while training, plus ``beta`` times its KL divergence to
  ``N(0, I)``; ``beta`` is annealed linearly from 0 to ``beta`` over ``anneal_steps`` batches. At
  scoring time the code is the mean ``mu``.

Validation (early stopping) follows the paper's protocol: the network reads the user's history
*without* the held-out interactions and the loss is the likelihood of the held-out ones.
A user unknown at training time has no history here: they get the popularity fallback of
:class:`~recsys_workshop.models.base.Recommender`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_workshop.models.keras_base import KerasRecommender


def multinomial_nll(y_true, logits):
    """Per-user multinomial negative log-likelihood ``-sum_i y_i log softmax(logits)_i`` (Keras)."""
    from keras import ops

    return -ops.sum(ops.cast(y_true, logits.dtype) * ops.log_softmax(logits, axis=-1), axis=-1)


def multinomial_nll_numpy(y_true: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """The same loss in numpy (the reference the tests compare the Keras version against)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return -(np.asarray(y_true, dtype=np.float64) * log_softmax).sum(axis=-1)


def gaussian_kl(mu, log_var):
    """KL(N(mu, exp(log_var)) || N(0, I)) per row: ``0.5 * sum(exp(lv) + mu^2 - 1 - lv)``."""
    from keras import ops

    return 0.5 * ops.sum(ops.exp(log_var) + ops.square(mu) - 1.0 - log_var, axis=-1)


def _GaussianCode(beta: float, anneal_steps: int, seed: int | None, name: str = "code"):  # noqa: N802
    """Layer ``[mu, log_var] -> z``: samples and adds the annealed KL term while training, returns
    ``mu`` otherwise (a factory, so Keras is imported only when a model is built)."""
    import keras
    from keras import ops

    class GaussianCode(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.beta, self.anneal_steps = float(beta), int(anneal_steps)
            self.seed_generator = keras.random.SeedGenerator(seed)

        def build(self, input_shape):
            self.step = self.add_weight(shape=(), initializer="zeros", trainable=False, name="step")

        def call(self, inputs, training=None):
            mu, log_var = inputs
            if not training:
                return mu
            if self.anneal_steps > 0:
                weight = ops.minimum(self.beta, self.beta * self.step / self.anneal_steps)
            else:
                weight = self.beta
            self.step.assign_add(1.0)
            self.add_loss(weight * ops.mean(gaussian_kl(mu, log_var)))
            noise = keras.random.normal(ops.shape(mu), seed=self.seed_generator)
            return mu + ops.exp(0.5 * log_var) * noise

        def compute_output_spec(self, inputs, training=None):
            return keras.KerasTensor(inputs[0].shape, dtype=inputs[0].dtype)

    return GaussianCode(name=name)


def build_autoencoder(
    n_items: int,
    *,
    hidden: tuple[int, ...] = (600,),
    latent: int = 200,
    variational: bool = True,
    dropout: float = 0.5,
    beta: float = 0.2,
    anneal_steps: int = 2000,
    l2: float = 0.0,
    seed: int | None = None,
):
    """Keras model ``{"history": (batch, n_items) multi-hot} -> (batch, n_items) logits``.

    Architecture ``[n_items -> hidden... -> latent -> reversed(hidden)... -> n_items]`` with ``tanh``
    layers, as in the paper (``[I -> 600 -> 200 -> 600 -> I]``).
    """
    import keras
    from keras import layers

    reg = keras.regularizers.L2(l2) if l2 else None
    init = keras.initializers.GlorotUniform(seed=seed)

    def dense(width, name, activation="tanh"):
        return layers.Dense(width, activation=activation, kernel_initializer=init, kernel_regularizer=reg, name=name)

    history = keras.Input(shape=(n_items,), dtype="float32", name="history")
    x = layers.UnitNormalization(name="normalise")(history)
    if dropout:
        x = layers.Dropout(dropout, seed=seed, name="corrupt")(x)
    for i, width in enumerate(hidden, start=1):
        x = dense(width, f"encoder_{i}")(x)
    if variational:
        mu = dense(latent, "mu", activation=None)(x)
        log_var = dense(latent, "log_var", activation=None)(x)
        z = _GaussianCode(beta, anneal_steps, seed)([mu, log_var])
    else:
        z = dense(latent, "code")(x)
    for i, width in enumerate(reversed(hidden), start=1):
        z = dense(width, f"decoder_{i}")(z)
    logits = dense(n_items, "logits", activation=None)(z)
    return keras.Model({"history": history}, logits, name="mult_vae" if variational else "mult_dae")


class MultVAE(KerasRecommender):
    """Mult-VAE (``variational=True``) or Mult-DAE (``variational=False``); see the module docstring.

    Every interaction passed to ``fit`` is a positive (with ``positive_threshold``, only those rated
    at least that much; lower ratings still count as seen and are never recommended).
    """

    monitor = "val_loss"
    loss = staticmethod(multinomial_nll)

    def __init__(
        self,
        hidden: tuple[int, ...] = (600,),
        latent: int = 200,
        *,
        variational: bool = True,
        dropout: float = 0.5,
        beta: float = 0.2,
        anneal_steps: int = 2000,
        l2: float = 0.0,
        positive_threshold: float | None = None,
        seed: int = 42,
    ):
        if latent < 1 or any(width < 1 for width in hidden):
            raise ValueError("latent and hidden widths must be >= 1")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if beta < 0 or anneal_steps < 0:
            raise ValueError("beta and anneal_steps must be >= 0")
        self.hidden, self.latent, self.variational = tuple(hidden), latent, variational
        self.dropout, self.beta, self.anneal_steps, self.l2 = dropout, beta, anneal_steps, l2
        self.positive_threshold, self.seed = positive_threshold, seed
        self.name = "mult-vae" if variational else "mult-dae"

    def build(self):
        return build_autoencoder(
            len(self.item_ids_),
            hidden=self.hidden,
            latent=self.latent,
            variational=self.variational,
            dropout=self.dropout,
            beta=self.beta,
            anneal_steps=self.anneal_steps,
            l2=self.l2,
            seed=self.seed,
        )

    # ------------------------------------------------------------------ data

    def _matrix(self, interactions: pd.DataFrame) -> sp.csr_matrix:
        """Users x items multi-hot of the positives in ``interactions`` (unknown ids dropped)."""
        if self.positive_threshold is not None and "rating" in interactions:
            interactions = interactions[interactions["rating"] >= self.positive_threshold]
        rows = self.user_rows(interactions["user_id"].to_numpy())
        cols = self.item_columns(interactions["item_id"].to_numpy())
        keep = (rows >= 0) & (cols >= 0)
        matrix = sp.csr_matrix(
            (np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], cols[keep])),
            shape=(len(self.user_ids_), len(self.item_ids_)),
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return matrix

    def _index(self, train, items) -> None:
        super()._index(train, items)
        self.inputs_ = self._matrix(train)  # the histories the encoder reads at scoring time

    def examples(self, interactions: pd.DataFrame, epoch: int = 0):
        """Training (``epoch >= 0``): each user's row is both input and target. Validation
        (``epoch == -1``): the input is the user's history minus ``interactions``, the target is
        ``interactions`` (the held-out items)."""
        target = self._matrix(interactions)
        users = np.flatnonzero(target.getnnz(axis=1) > 0)
        if epoch >= 0:
            source = target
        else:
            source = self.inputs_ - self.inputs_.multiply(target)
            source.eliminate_zeros()
        x = source[users].toarray()
        return {"history": x}, target[users].toarray()

    # ------------------------------------------------------------------ scoring

    def _after_fit(self, network) -> None:
        self.scorer_ = network

    def _score_rows(self, user_rows: np.ndarray, chunk: int = 512) -> np.ndarray:
        out = np.empty((len(user_rows), len(self.item_ids_)), dtype=np.float64)
        for start in range(0, len(user_rows), chunk):
            history = self.inputs_[user_rows[start : start + chunk]].toarray()
            out[start : start + chunk] = np.asarray(self.scorer_({"history": history}, training=False))
        return out
