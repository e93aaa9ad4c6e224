"""Saved models: a fingerprint of data, settings, config and code; load on a match, retrain (saying why) otherwise."""

from __future__ import annotations

import json
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from test_models_deep import N_ITEMS, two_groups

from recsys_workshop.models.hybrid import HybridModel
from recsys_workshop.models.ncf import NCF
from recsys_workshop.models.two_tower import TwoTower
from recsys_workshop.train import TrainConfig, saved

pytestmark = pytest.mark.tf

CONFIG = TrainConfig(epochs=3, batch_size=64, learning_rate=1e-2, patience=1, verbose=0)
ITEMS = pd.DataFrame({
    "item_id": np.arange(1, N_ITEMS + 1),
    "title": [f"Film {i} (1995)" for i in range(1, N_ITEMS + 1)],
    "year": 1995,
    "genres": [["Comedy"] if i <= 20 else ["Drama", "War"] for i in range(1, N_ITEMS + 1)],
})


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv(saved.ENV_DIR, str(tmp_path / "saved"))
    return tmp_path / "saved"


def fit_quietly(model, train, config=CONFIG, **kwargs):
    said = []
    return saved.fit(model, train, config=config, print_fn=said.append, **kwargs), said


def test_a_second_run_loads_the_same_model_instead_of_training(store):
    train = two_groups()
    first, said = fit_quietly(NCF("neumf", n_factors=4, mlp_layers=(8, 4), seed=3), train)
    assert said[0] == "neumf: training (no saved neumf yet)"
    assert said[1].startswith("neumf: saved to ") and len(list(store.iterdir())) == 1

    with mock.patch("keras.Model.fit", side_effect=AssertionError("trained again")):
        second, said = fit_quietly(NCF("neumf", n_factors=4, mlp_layers=(8, 4), seed=3), train)
    assert said == [f"neumf: loaded from {next(store.iterdir())} (same data, split, settings, config and code)"]
    users, items = np.repeat(np.arange(1, 61), N_ITEMS), np.tile(np.arange(1, N_ITEMS + 1), 60)
    np.testing.assert_array_equal(second.score(users, items), first.score(users, items))
    pd.testing.assert_frame_equal(second.recommend(range(1, 61), k=5), first.recommend(range(1, 61), k=5))
    pd.testing.assert_frame_equal(second.history_, first.history_, check_dtype=False)


def _learners_fuse(gmf_vector, mlp_vector):  # stands for a learner's function defined in a notebook
    from keras import layers

    return layers.Dense(1, name="prediction")(layers.Concatenate(name="fusion")([gmf_vector, mlp_vector]))


def _another_draft(gmf_vector, mlp_vector):
    from keras import layers

    fused = layers.Concatenate(name="fusion")([gmf_vector, mlp_vector])
    return layers.Dense(1, name="prediction")(fused)


def test_a_model_saved_by_other_code_is_trained_again_with_the_learners(store):
    train, make = two_groups(), lambda: NCF("neumf", n_factors=4, mlp_layers=(8, 4), seed=3)
    fit_quietly(make(), train)  # the solution notebook, say: the package's code, no learner's function
    folder = next(store.iterdir())
    _, said = fit_quietly(make(), train, yours={"3.2": _learners_fuse})
    assert said[0] == "neumf: training (the saved neumf was trained by other code for Exercise 3.2: this run " \
        "trains it with yours)"  # fmt: skip
    assert said[1] == f"neumf: saved to {folder}" and list(store.iterdir()) == [folder], "replaced, not beside it"
    assert json.loads((folder / "yours.json").read_text()) == {"3.2": saved.function_digest(_learners_fuse)}

    with mock.patch("keras.Model.fit", side_effect=AssertionError("trained again")):
        _, said = fit_quietly(make(), train, yours={"3.2": _learners_fuse})  # Run All again: the same code
        assert said[0].endswith("and trained with your code for Exercise 3.2)")
        _, said = fit_quietly(make(), train)  # a later lab asks for the package's model: loads the learner's
        assert said[0].startswith("neumf: loaded from")
    _, said = fit_quietly(make(), train, yours={"3.2": _another_draft})
    assert said[0].startswith("neumf: training (the saved neumf was trained by other code for Exercise 3.2")


def test_the_package_standing_in_for_an_unchecked_exercise_loads_what_is_saved(store):
    from recsys_workshop.models import ncf

    train, make = two_groups(), lambda: NCF("neumf", n_factors=4, mlp_layers=(8, 4), seed=3)
    fit_quietly(make(), train)
    assert saved.learners_code({"3.2": ncf.fuse, "3.1": _learners_fuse}) == {
        "3.1": saved.function_digest(_learners_fuse)}  # fmt: skip
    with mock.patch("keras.Model.fit", side_effect=AssertionError("trained again")):
        _, said = fit_quietly(make(), train, yours={"3.2": ncf.fuse})
    assert said[0].startswith("neumf: loaded from")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"config": TrainConfig(epochs=3, batch_size=32, learning_rate=1e-2, patience=1, verbose=0)},
         "config.batch_size (64 -> 32)"),
        ({"model": NCF("neumf", n_factors=6, mlp_layers=(8, 4), seed=3)}, "settings.n_factors (4 -> 6)"),
        ({"train": two_groups(seed=1)}, "data"),
    ],
    ids=["config", "settings", "data"],
)
def test_a_different_fingerprint_trains_again_and_says_what_differs(store, change, reason):
    fit_quietly(NCF("neumf", n_factors=4, mlp_layers=(8, 4), seed=3), two_groups())
    model = change.get("model", NCF("neumf", n_factors=4, mlp_layers=(8, 4), seed=3))
    _, said = fit_quietly(model, change.get("train", two_groups()), config=change.get("config", CONFIG))
    assert said[0] == f"neumf: training (the saved neumf differs in {reason})"
    assert len(list(store.iterdir())) == 2


def test_verbosity_is_not_part_of_the_fingerprint():
    model, train = NCF("gmf", n_factors=4, seed=0), two_groups()
    loud = saved.fingerprint(model, train, TrainConfig(epochs=3, verbose=2))
    quiet = saved.fingerprint(model, train, TrainConfig(epochs=3, verbose=0))
    assert loud == quiet
    assert saved.fingerprint(model, train, TrainConfig(epochs=4))["hash"] != loud["hash"]


@pytest.mark.parametrize("edited", ["ncf.py", "sampling.py", "text.py", "optimizers.py", "data.py"])
def test_a_change_in_the_code_a_network_depends_on_changes_the_fingerprint(edited):
    """The model's module, and what it builds on: negatives, text encoders, optimisers, the data helpers."""
    from pathlib import Path

    model, train = NCF("gmf", n_factors=4, seed=0), two_groups()
    before = saved.fingerprint(model, train, CONFIG)
    real = Path.read_bytes

    def read_bytes(path):
        return real(path) + (b"\n# edited" if path.name == edited else b"")

    with mock.patch.object(Path, "read_bytes", read_bytes):
        after = saved.fingerprint(model, train, CONFIG)
    assert saved.differences(before["parts"], after["parts"]) == ["code"]


def test_object_arrays_count_by_content_not_by_address():
    first = saved.canonical(np.array([["a", 1], ["b", 2]], dtype=object))
    assert saved.canonical(np.array([["a", 1], ["b", 2]], dtype=object)) == first
    assert saved.canonical(np.array([["a", 1], ["b", 3]], dtype=object)) != first


def test_the_reason_compares_with_models_of_the_same_name_only(store):
    """triplet-bpr's reason must not come from triplet-bpr-popularity's save (a longer name, same prefix)."""
    train = two_groups()
    fit_quietly(NCF("gmf", n_factors=4, seed=0), train)
    (store / next(store.iterdir()).name.replace("gmf-", "gmf-like-")).mkdir()
    _, said = fit_quietly(NCF("gmf", n_factors=8, seed=0), train)
    assert said[0] == "gmf: training (the saved gmf differs in settings.n_factors (4 -> 8))"


def test_a_saved_model_that_no_longer_loads_is_trained_again(store):
    train = two_groups()
    fit_quietly(NCF("gmf", n_factors=4, seed=0), train)
    folder = next(store.iterdir())
    np.savez(folder / "weights.npz", w0000=np.zeros(3))  # weights that fit no network of these settings
    model, said = fit_quietly(NCF("gmf", n_factors=4, seed=0), train)
    assert said[0].startswith("gmf: training (the saved gmf could not be loaded: ValueError"), said
    assert hasattr(model, "history_") and said[-1].startswith("gmf: saved to")
    with mock.patch("keras.Model.fit", side_effect=AssertionError("trained again")):
        _, said = fit_quietly(NCF("gmf", n_factors=4, seed=0), train)  # the unloadable one was replaced
    assert said[0].startswith("gmf: loaded from") and list(store.iterdir()) == [folder]


def test_a_replacement_that_cannot_take_the_place_of_the_saved_model_keeps_it(store):
    from pathlib import Path

    train, make = two_groups(), lambda: NCF("gmf", n_factors=4, seed=0)
    fit_quietly(make(), train)
    folder = next(store.iterdir())
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    rename = Path.rename

    def failing(self, target):
        if self.name.startswith(f".{folder.name}-") and "-old-" not in self.name and Path(target) == folder:
            raise OSError("disk full")  # the new model's move into place fails
        return rename(self, target)

    with mock.patch.object(Path, "rename", failing):
        model, said = fit_quietly(make(), train, yours={"3.1": _learners_fuse})
    assert said[-1].startswith("gmf: not saved (disk full") and hasattr(model, "history_")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before, "the earlier model is back, unchanged"
    assert list(store.iterdir()) == [folder], "nothing left aside"


def test_a_failed_save_keeps_the_trained_model(store):
    with mock.patch.object(saved, "_save", side_effect=OSError(28, "No space left on device")):
        model, said = fit_quietly(NCF("gmf", n_factors=4, seed=0), two_groups())
    assert said == ["gmf: training (no saved gmf yet)", "gmf: not saved ([Errno 28] No space left on device)"]
    assert len(model.history_) >= 1


def test_film_metadata_counts_by_content_including_list_cells():
    model = HybridModel(None, ITEMS, task="ranking", n_factors=4)
    base = saved.fingerprint(model, two_groups(), CONFIG)
    regenred = ITEMS.assign(genres=[["Comedy"]] * 19 + [["Horror"]] + list(ITEMS.genres[20:]))
    other = saved.fingerprint(HybridModel(None, regenred, task="ranking", n_factors=4), two_groups(), CONFIG)
    assert saved.differences(base["parts"], other["parts"])[0].startswith("settings.items (")
    same = saved.fingerprint(HybridModel(None, ITEMS.copy(), task="ranking", n_factors=4), two_groups(), CONFIG)
    assert same["hash"] == base["hash"]


@pytest.mark.parametrize("make", [
    lambda: HybridModel(None, ITEMS, task="ranking", n_factors=4, seed=1),
    lambda: TwoTower(8, items=ITEMS, seed=1),
], ids=["hybrid", "two-tower"])
def test_models_with_metadata_load_to_the_same_scores(store, make):
    train = two_groups()
    first, _ = fit_quietly(make(), train)
    second, said = fit_quietly(make(), train)
    assert "loaded from" in said[0]
    users, items = np.repeat(np.arange(1, 61), N_ITEMS), np.tile(np.arange(1, N_ITEMS + 1), 60)
    np.testing.assert_allclose(second.score(users, items), first.score(users, items), rtol=1e-6)


def test_a_half_written_model_is_never_loaded(store):
    train = two_groups()
    model, _ = fit_quietly(NCF("gmf", n_factors=4, seed=0), train)
    folder = next(store.iterdir())
    (folder / "weights.npz").unlink()
    _, said = fit_quietly(NCF("gmf", n_factors=4, seed=0), train)
    assert said[0] == "gmf: training (no saved gmf yet)"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*saved.FILES, "yours.json"])
    assert json.loads((folder / "fingerprint.json").read_text())["hash"] == model.fingerprint_["hash"]
    assert not [p for p in store.iterdir() if p.name.startswith(".")], "a staging folder was left behind"


def test_off_trains_and_saves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(saved.ENV_DIR, "off")
    monkeypatch.chdir(tmp_path)
    assert saved.directory() is None
    model, said = fit_quietly(NCF("gmf", n_factors=4, seed=0), two_groups())
    assert said == [] and hasattr(model, "history_")


def test_an_unfingerprintable_setting_trains_without_saving(store):
    model = NCF("gmf", n_factors=4, seed=0)
    model.custom = object()
    _, said = fit_quietly(model, two_groups())
    assert said == ["gmf: training (not saved: cannot fingerprint a object)"]
    assert not store.exists()


def test_a_function_without_source_is_known_by_what_it_does_not_where_it_was_compiled():
    def compiled(text: str, filename: str):
        namespace: dict = {}
        exec(compile(text, filename, "exec"), namespace)  # noqa: S102 - no source file: inspect cannot find it
        return namespace["f"]

    text = "def f(x):\n    g = lambda y: y + 1\n    return g(x)\n"
    first, second = compiled(text, "<cell-1>"), compiled("\n\n" + text, "<cell-2>")
    assert saved.function_digest(first) == saved.function_digest(second)
    assert saved.function_digest(first) != saved.function_digest(compiled(text.replace("+ 1", "+ 2"), "<cell-1>"))


def test_a_function_without_source_has_the_same_digest_in_every_process():
    """A set constant's order follows the hash seed; the digest must not (else every Run All would retrain)."""
    import subprocess
    import sys

    script = ("from recsys_workshop.train import saved\n"
              "ns = {}\nexec(compile('def f(x):\\n    return x in {\"alpha\", \"beta\", \"gamma\", \"delta\"}\\n',"
              " '<cell>', 'exec'), ns)\nprint(saved.function_digest(ns['f']))")  # fmt: skip
    digests = {
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                       env={**__import__("os").environ, "PYTHONHASHSEED": str(seed)}).stdout.strip()
        for seed in (1, 2, 3)
    }  # fmt: skip
    assert len(digests) == 1, digests


def test_a_changed_default_changes_the_digest_of_a_function_without_source():
    namespace: dict = {}
    exec(compile("def f(x, k=1):\n    return x + k\ndef g(x, k=2):\n    return x + k\n", "<cell>", "exec"), namespace)  # noqa: S102
    assert saved.function_digest(namespace["f"]) != saved.function_digest(namespace["g"])
