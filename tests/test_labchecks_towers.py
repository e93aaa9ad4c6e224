"""Lab 03's Exercise 3.3 (recsys_workshop.labchecks.towers): the metadata tower. The solution notebook's function
and the package's pass; each usual wrong answer gets a message of its own (a layer misnamed, no "unknown" row,
Keras' default initialiser, an unseeded one, no L2, L2 although l2 is 0, another penalty, the concatenation's
order, another activation); and lab 03's hybrid network trains with the learner's tower once it has passed."""

from __future__ import annotations

import keras
import pytest
from check_helpers import fails, solution_functions
from keras import layers

from recsys_workshop.labchecks import towers

pytestmark = [pytest.mark.unit, pytest.mark.tf]


def tower(*, rows=1, init="normal", seeded=True, reg="l2", order=("id", "genre", "numeric"), activation="relu",
          name="item_id_embedding"):  # fmt: skip
    """A tower with one usual mistake (the defaults are right)."""

    def metadata_tower(item_id, genres, year, popularity, n_items, n_factors, seed=None, l2=0.0):
        initialiser = {"normal": keras.initializers.RandomNormal(stddev=0.05, seed=seed if seeded else None),
                       "default": "uniform"}[init]  # fmt: skip
        regulariser = {"l2": keras.regularizers.L2(l2) if l2 else None, "none": None,
                       "always": keras.regularizers.L2(l2 or 1e-3),
                       "l1": keras.regularizers.L1(l2) if l2 else None}[reg]  # fmt: skip
        parts = {
            "id": layers.Embedding(n_items + rows, n_factors, embeddings_initializer=initialiser,
                                   embeddings_regularizer=regulariser, name=name)(item_id),
            "genre": layers.Dense(8, activation="relu", name="genre_dense")(genres),
            "numeric": layers.Concatenate(name="item_numeric")([year, popularity]),
        }  # fmt: skip
        features = layers.Concatenate(name="item_features")([parts[p] for p in order])
        return layers.Dense(n_factors, activation=activation, name="item_tower")(features)

    return metadata_tower


def test_the_solution_and_the_package_pass():
    from recsys_workshop.models.hybrid import metadata_tower

    towers.check_tower(tower())
    towers.check_tower(metadata_tower)
    towers.check_tower(solution_functions("03_deep_recommenders.ipynb", "metadata_tower", keras=keras,
                                          layers=layers)["metadata_tower"])  # fmt: skip


@pytest.mark.parametrize(
    ("mistake", "says"),
    [
        ({"name": "item_embedding"}, "no layer named 'item_id_embedding' (your layers: ["),
        ({"rows": 0}, "item_id_embedding has shape (30, 6), expected (31, 6): 30 films + row 0 for an unknown film"),
        ({"init": "default"}, "a standard deviation of 0.0"),  # Keras' uniform(-0.05, 0.05): about 0.029
        ({"seeded": False}, "starts from other values than RandomNormal(stddev=0.05, seed=7): pass seed"),
        ({"reg": "none"}, "no L2 penalty on item_id_embedding"),
        ({"reg": "l1"}, "the L2 penalty is"),
        ({"reg": "always"}, "l2=0.0): an L2 penalty although l2 is 0"),
        ({"order": ("genre", "id", "numeric")}, "the item vectors: at index"),
        ({"activation": "sigmoid"}, "the item vectors: at index"),
    ],
    ids=["name", "no-unknown-row", "default-init", "unseeded", "no-l2", "l1", "l2-always", "order", "sigmoid"],
)
def test_a_wrong_tower_gets_a_specific_message(mistake, says):
    message = fails(towers.check_tower, tower(**mistake), match=says)
    if "init" in mistake:
        assert "expected 0.05: initialise it from keras.initializers.RandomNormal(stddev=0.05, seed=seed)" in message


def test_lab_03_builds_its_hybrid_network_with_the_learners_tower_once_checked():
    """``your_tower()`` as lab 03 defines it: the package's tower until Exercise 3.3 passed, then the learner's,
    and what it gives saved.fit names the learner's function."""
    from unittest import mock

    from recsys_workshop import selfcheck
    from recsys_workshop.models import hybrid

    calls = []

    def learners(*args, **kwargs):
        calls.append(len(args) + len(kwargs))
        return tower()(*args, **kwargs)

    import contextlib

    lab = solution_functions("03_deep_recommenders.ipynb", "_your_tower", "your_tower", contextlib=contextlib,
                             mock=mock, hybrid=hybrid, selfcheck=selfcheck, metadata_tower=learners)  # fmt: skip
    build = lambda: hybrid.build_hybrid(20, 30, 5, 19, n_factors=4, seed=1, l2=1e-4)  # noqa: E731
    with pytest.raises(selfcheck.ExerciseIncorrect):
        selfcheck.check("3.3", lambda: towers.check_tower(tower(rows=0)))
    with lab["your_tower"]() as yours:
        build()
    assert calls == [] and yours == {}, "the package's tower stands in until the check has passed"
    selfcheck.check("3.3", lambda: towers.check_tower(learners))
    calls.clear()
    with lab["your_tower"]() as yours:
        network = build()
    assert calls == [8] and yours == {"3.3": learners}
    assert network.get_layer("item_id_embedding").embeddings.shape == (31, 4)
