"""Lab 03, section 3 (the hybrid network): the check of Exercise 3.3, the metadata tower.

``metadata_tower(item_id, genres, year, popularity, n_items, n_factors, seed=None, l2=0.0)`` builds the item side
of the hybrid network from Keras inputs: the film's ID embedding (a row per film plus row 0 for "unknown",
initialised from N(0, 0.05) with ``seed`` and penalised by L2 ``l2`` when ``l2`` > 0), a small dense layer on the
genres, year and popularity as they are, all concatenated and mapped to the item vector. The package's
:func:`recsys_workshop.models.hybrid.metadata_tower` is the reference; lab 03 trains its hybrid models with the
learner's function in its place once this check has passed.

:func:`check_tower` builds both on the same inputs and says what differs, in the order a learner meets it: a
missing layer name, a table without the "unknown" row, an initialiser that ignores ``seed`` or draws from another
distribution, a missing or wrong L2 penalty, then (with the package's weights copied into the learner's layers) item
vectors that differ: the concatenation's order, a missing input, another activation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["LAYERS", "check_tower"]

LAYERS = ("item_id_embedding", "genre_dense", "item_tower")  # the layers whose weights the check compares
N_ITEMS, N_FACTORS, N_GENRES, BATCH = 30, 6, 19, 50
SEED, L2 = 7, 1e-3


def _model(tower: Callable, **settings):
    import keras

    inputs = {
        "item_id": keras.Input(shape=(), dtype="int32", name="item_id"),
        "genres": keras.Input(shape=(N_GENRES,), name="genres"),
        "year": keras.Input(shape=(1,), name="year"),
        "popularity": keras.Input(shape=(1,), name="popularity"),
    }
    return keras.Model(inputs, tower(**inputs, n_items=N_ITEMS, n_factors=N_FACTORS, **settings))


def _layer(model, name: str, call: str):
    try:
        return model.get_layer(name)
    except ValueError:
        names = [layer.name for layer in model.layers if not layer.name.startswith(("item_id", "genres", "year",
                                                                                    "popularity"))]  # fmt: skip
        raise AssertionError(f"{call}: no layer named {name!r} (your layers: {names}); the check and the saved "
                             "models find the layers by these names") from None  # fmt: skip


def _check_table(yours, package, call: str) -> None:
    table, expected = _layer(yours, "item_id_embedding", call).get_weights()[0], package.get_layer(
        "item_id_embedding").get_weights()[0]  # fmt: skip
    if table.shape != expected.shape:
        raise AssertionError(f"{call}: item_id_embedding has shape {table.shape}, expected {expected.shape}: "
                             f"{N_ITEMS} films + row 0 for an unknown film, {N_FACTORS} factors")  # fmt: skip
    if np.allclose(table, expected, atol=1e-7):
        return
    spread = float(table.std())
    if abs(spread - 0.05) > 0.01:
        raise AssertionError(f"{call}: item_id_embedding starts with a standard deviation of {spread:.3f}, expected "
                             "0.05: initialise it from keras.initializers.RandomNormal(stddev=0.05, seed=seed)")
    raise AssertionError(f"{call}: item_id_embedding starts from other values than RandomNormal(stddev=0.05, "
                         f"seed={SEED}): pass seed to the initialiser, so that a seed reproduces the network")


def _penalty(model) -> float:
    return float(sum(float(np.asarray(loss)) for loss in model.losses))


def _check_penalty(yours, package, call: str) -> None:
    got, expected = _penalty(yours), _penalty(package)
    if np.isclose(got, expected, rtol=1e-5, atol=1e-9):
        return
    if got == 0:
        raise AssertionError(f"{call}: no L2 penalty on item_id_embedding (expected {expected:.6g}): pass "
                             "embeddings_regularizer=keras.regularizers.L2(l2) when l2 > 0")
    raise AssertionError(f"{call}: the L2 penalty is {got:.6g}, expected {expected:.6g}: L2(l2) on the ID embedding "
                         "only, with the l2 given")


def _inputs() -> dict:
    rng = np.random.default_rng(0)
    return {
        "item_id": rng.integers(0, N_ITEMS + 1, BATCH).astype("int32"),
        "genres": (rng.random((BATCH, N_GENRES)) < 0.2).astype("float32"),
        "year": rng.normal(size=(BATCH, 1)).astype("float32"),
        "popularity": rng.random((BATCH, 1)).astype("float32"),
    }


def check_tower(metadata_tower: Callable, reference: Callable | None = None) -> None:
    """Raise ``AssertionError`` naming what the learner's ``metadata_tower`` does differently from ``reference``
    (the package's tower by default)."""
    if reference is None:
        from recsys_workshop.models.hybrid import metadata_tower as reference
    from recsys_workshop.selfcheck import close

    call = f"metadata_tower(..., n_items={N_ITEMS}, n_factors={N_FACTORS}, seed={SEED}, l2={L2})"
    package, yours = _model(reference, seed=SEED, l2=L2), _model(metadata_tower, seed=SEED, l2=L2)
    for name in LAYERS:
        _layer(yours, name, call)
    _check_table(yours, package, call)
    _check_penalty(yours, package, call)
    if _penalty(_model(metadata_tower, seed=SEED, l2=0.0)) != 0:
        raise AssertionError(f"{call.replace(f'l2={L2}', 'l2=0.0')}: an L2 penalty although l2 is 0: add the "
                             "regulariser only when l2 > 0")  # fmt: skip
    for name in LAYERS:
        mine, theirs = yours.get_layer(name), package.get_layer(name)
        shapes = [w.shape for w in mine.get_weights()], [w.shape for w in theirs.get_weights()]
        if shapes[0] != shapes[1]:
            raise AssertionError(f"{call}: layer {name!r} has weights of shapes {shapes[0]}, expected {shapes[1]}: "
                                 "check its width and what goes into it (the concatenation's order matters)")
        mine.set_weights(theirs.get_weights())
    x = _inputs()
    close(np.asarray(yours(x)), np.asarray(package(x)), rtol=1e-5, atol=1e-6,
          what=f"{call}, with the package's weights copied into your layers: the item vectors")  # fmt: skip
