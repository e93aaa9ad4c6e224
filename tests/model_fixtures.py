"""Small trained-and-exported models for the serving, API and load tests (a helper, not a test module).

Training is the slow part, so trained models are cached per process (per pytest session) and every
caller gets its own *copy* of a cached export:

    from model_fixtures import exported_versions, small_model

    @pytest.fixture(scope="module")
    def model_dir(tmp_path_factory):
        return exported_versions(tmp_path_factory.mktemp("models"), n_versions=2)

``exported_versions(base, n_versions)`` writes ``base/1`` (and ``base/2``) and returns ``base``:
version 1 is a matrix factorisation trained for 2 epochs, version 2 one trained for 6 epochs with
another seed, so the two versions recommend visibly different lists. Each takes a few seconds on one
core the first time, well under a second (a copy) afterwards.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

# (kind, epochs, seed) of each version exported by exported_versions
VERSIONS = {1: ("mf", 2, 0), 2: ("mf", 6, 1)}


def _limit_threads() -> None:
    import tensorflow as tf

    try:  # only possible before TensorFlow's first op; harmless to skip afterwards
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass


@functools.cache
def split(seed: int = 42):
    """(train, test) of ml-100k, 90/10 random."""
    from recsys_workshop import data

    ratings = data.load_ratings("ml-100k", progress=False)
    return data.random_split(ratings, 0.9, seed=seed)


@functools.cache
def small_model(kind: str = "mf", epochs: int = 2, seed: int = 0):
    """A small model fitted on the ml-100k training split: ``"mf"`` (MatrixFactorization, 16 factors) or
    ``"bpr"`` (TripletModel with the BPR loss, 16 factors). Cached: do not mutate it."""
    from recsys_workshop.train import TrainConfig

    _limit_threads()
    train, _ = split()
    config = TrainConfig(
        epochs=epochs, batch_size=2048, learning_rate=1e-2, patience=0, validation_fraction=0.0, seed=seed, verbose=0
    )
    if kind == "mf":
        from recsys_workshop.models.mf import MatrixFactorization

        model = MatrixFactorization(16, l2=1e-4, seed=seed)
    elif kind == "bpr":
        from recsys_workshop.models.triplet import TripletModel

        model = TripletModel(16, loss="bpr", seed=seed)
    else:
        raise ValueError(f"kind must be 'mf' or 'bpr', got {kind!r}")
    return model.fit(train, config=config)


def ndcg_at_10(model) -> float:
    from recsys_workshop import metrics

    train, test = split()
    users = test["user_id"].unique()
    return float(metrics.ndcg_at_k(test, model.recommend(users, 10), 10))


@functools.cache
def _cached_export(version: int) -> Path:
    """One exported copy of each version, in a process-wide temporary folder."""
    from recsys_workshop.export import export_model

    kind, epochs, seed = VERSIONS[version]
    model = small_model(kind, epochs, seed)
    base = Path(tempfile.mkdtemp(prefix=f"recsys-fixture-v{version}-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    return export_model(
        model,
        base,
        version=version,
        metadata={
            "dataset": "ml-100k",
            "metrics": {"ndcg@10": ndcg_at_10(model)},
            "train_config": {"kind": kind, "epochs": epochs, "seed": seed},
        },
    )


def exported_versions(base_dir, n_versions: int = 2) -> Path:
    """Export versions 1..``n_versions`` (at most 2) of the fixture model into ``base_dir``; return it."""
    if not 1 <= n_versions <= len(VERSIONS):
        raise ValueError(f"n_versions must be between 1 and {len(VERSIONS)}")
    base = Path(base_dir)
    base.mkdir(parents=True, exist_ok=True)
    for version in range(1, n_versions + 1):
        shutil.copytree(_cached_export(version), base / str(version))
    return base
