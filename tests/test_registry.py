"""The model table of the training job: every name builds its model from a config, and the job trains the
classical models and the autoencoders as it trains the others."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from recsys_workshop.models import registry
from recsys_workshop.train import job
from recsys_workshop.train.job import ConfigError, JobConfig

# the smallest config section of each model: its name, plus what the constructor cannot do without
MINIMAL = {name: {"name": name} for name in registry.MODELS}
# the models the job could not train before they joined the table; each is fitted below
TRAINED_HERE = ("mult-vae", "mult-dae", "ease", "item-knn", "most-popular", "bias-baseline", "global-mean")
METADATA = SimpleNamespace(
    users=pd.DataFrame({"user_id": [1], "age": [30], "gender": ["F"], "occupation": ["other"]}),
    items=pd.DataFrame({"item_id": [1], "title": ["A film"], "genres": ["Drama"]}),
)

pytestmark = pytest.mark.tf


def tiny_ratings(n_users: int = 40, n_items: int = 30, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """About 500 ratings on 1-5 stars, and the last rating of every user held out."""
    rng = np.random.default_rng(seed)
    users, items = np.nonzero(rng.random((n_users, n_items)) < 0.4)
    frame = pd.DataFrame(
        {"user_id": users + 1, "item_id": items + 1, "rating": rng.integers(1, 6, len(users)).astype("float32")}
    )
    frame["timestamp"] = np.arange(len(frame))
    held_out = frame.groupby("user_id").tail(1)
    return frame.drop(held_out.index), held_out


def test_every_model_the_benchmarks_train_is_in_the_table():
    # bench/recsys101.py and bench/deep.py (Blend combines fitted models: not something a job builds)
    classes = {registry.model_class(name).__name__ for name in registry.MODELS}
    benchmarked = {
        "MatrixFactorization", "GlobalMean", "BiasBaseline", "MostPopular", "ItemKNN", "EASE",
        "MultVAE", "NCF", "TripletModel", "TwoTower", "HybridModel",
    }  # fmt: skip
    assert benchmarked <= classes, f"missing from the registry: {sorted(benchmarked - classes)}"
    assert registry.MODELS is job.MODELS, "the job reads the one table"


@pytest.mark.parametrize("name", sorted(registry.MODELS))
def test_every_name_builds_its_model_from_a_minimal_config(name):
    config = JobConfig.from_dict({"model": MINIMAL[name]})
    model = job.build_model(config.model, METADATA)
    assert isinstance(model, registry.model_class(name))
    assert not hasattr(model, "item_ids_"), "built, not fitted"


def test_a_name_fixes_what_it_implies_and_strings_become_layer_widths():
    dae = job.build_model({"name": "mult-dae", "hidden": "", "latent": 16})
    vae = job.build_model({"name": "mult-vae", "hidden": "600-300"})
    assert (dae.variational, dae.hidden, dae.latent, dae.name) == (False, (), 16, "mult-dae")
    assert (vae.variational, vae.hidden, vae.name) == (True, (600, 300), "mult-vae")
    assert job.build_model({"name": "ease", "l2": 200.0}).l2 == 200.0


def test_bad_model_sections_are_config_errors():
    with pytest.raises(ConfigError, match="model.name must be one of"):
        JobConfig.from_dict({"model": {"name": "bivae"}})
    with pytest.raises(ConfigError, match="model: .*unexpected keyword argument 'n_factors'"):
        job.build_model({"name": "ease", "n_factors": 8})
    with pytest.raises(ConfigError, match="model: l2 must be a finite number > 0"):
        job.build_model({"name": "ease", "l2": 0})
    with pytest.raises(ConfigError, match="needs the data set's users and items tables"):
        job.build_model({"name": "hybrid"})


@pytest.mark.parametrize("name", TRAINED_HERE)
def test_the_job_trains_evaluates_and_reports_each_new_model(name):
    train, held_out = tiny_ratings()
    model = {"name": name} | ({"hidden": [], "latent": 8, "anneal_steps": 0} if name.startswith("mult-") else {})
    config = JobConfig.from_dict(
        {"model": model, "train": {"epochs": 2, "batch_size": 8, "verbose": 0, "patience": 0}, "top_k": 5}
    )
    lines = []
    results = job.run(config, log=lines.append, train=train, evaluation=held_out)
    assert results["epochs"] >= 1 and results["train_seconds"] > 0
    assert 0 <= results["ndcg_at_5"] <= 1 and 0 <= results["precision_at_5"] <= 1
    assert "ndcg_at_5=" in "\n".join(lines), "the Katib StdOut collector reads name=value lines"


def test_a_classical_model_is_exported_like_the_others(tmp_path):
    train, held_out = tiny_ratings()
    config = JobConfig.from_dict({"model": {"name": "ease", "l2": 10.0}, "model_dir": str(tmp_path / "models")})
    results = job.run(config, log=lambda line: None, train=train, evaluation=held_out)
    assert (tmp_path / "models" / "1" / "metadata.json").is_file() and results["exported"].endswith("1")


def test_the_table_imports_no_model():
    code = (
        "import sys, recsys_workshop.models.registry as r; "
        "print(sorted({'tensorflow', 'keras', 'recsys_workshop.models.vae', 'recsys_workshop.models.mf'} "
        "& set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
