"""The logic of the pipeline's steps (:mod:`recsys_workshop.pipelines`), as plain tested functions.

A KFP component runs its function body in a fresh process where ``kfp.dsl`` is reduced to the runtime
types, so this module must not import the module that declares the components
(:mod:`recsys_workshop.pipelines.components`), nor KFP: each component calls one ``step_*`` function
from here (``from recsys_workshop.pipelines import steps``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

METRIC = "ndcg@10"
COLUMNS = {"user_id": "int64", "item_id": "int64", "rating": "float64", "timestamp": "int64"}


class ValidationFailed(ValueError):
    """The data did not pass a validation step; the message is the report."""


# ---------------------------------------------------------------------------------------------- step logic


# What each feedback action counts as, on MovieLens' 1-5 scale (see :func:`feedback_to_ratings`).
FEEDBACK_RATINGS = {"like": 5.0, "click": 4.0, "dislike": 1.0}
# ``feedback_db="env"``: the URL is in this variable (a cluster sets it from the ``recsys-postgres`` Secret).
FROM_ENV = "env"


def feedback_to_ratings(feedback):
    """The API's feedback events (:meth:`recsys_workshop.store.Store.feedback_frame`: user_id, item_id,
    action, time) as rating rows (user_id, item_id, rating, timestamp), one per (user, item) pair: the
    latest event wins (largest ``time``; of two at the same time, the later row), oldest first.

    The mapping, :data:`FEEDBACK_RATINGS`: like -> 5.0 (the top of the scale: an explicit "yes"), click ->
    4.0 (the user chose to open it: interest, not yet a verdict), dislike -> 1.0 (the bottom). 4 is the
    workshop's threshold for "liked" (the content-based model's ``like_threshold``, and the implicit models'
    ``positive_threshold`` when a config sets it), so clicks and likes count as liked and a dislike never
    does. What the training then does with the value depends on the model: the pipeline's default job
    (``train.json``: NeuMF, an implicit model without ``positive_threshold``) takes *every* row as a
    positive, a dislike too, exactly as it does a 1-star MovieLens rating (the user watched the film);
    with ``model.positive_threshold=4`` only likes and clicks are positives and a dislike only marks the
    film as seen (never sampled as a negative, never recommended); an explicit model (``mf``) fits the
    value itself. The evaluation counts every test row as relevant, whatever its rating.

    Pandas only. Raises ``ValueError`` for an action outside :data:`FEEDBACK_RATINGS`.
    """
    import pandas as pd

    unknown = sorted(set(feedback["action"]) - set(FEEDBACK_RATINGS))
    if unknown:
        raise ValueError(f"unknown feedback action(s) {unknown}: expected one of {sorted(FEEDBACK_RATINGS)}")
    events = feedback.reset_index(drop=True).sort_values("time", kind="stable")  # ties keep the stored order
    latest = events.drop_duplicates(["user_id", "item_id"], keep="last")
    return pd.DataFrame(
        {
            "user_id": latest["user_id"].astype("int64").to_numpy(),
            "item_id": latest["item_id"].astype("int64").to_numpy(),
            "rating": latest["action"].map(FEEDBACK_RATINGS).astype("float64").to_numpy(),
            "timestamp": latest["time"].astype("float64").astype("int64").to_numpy(),  # int(time): whole seconds
        }
    )


def add_interactions(ratings, new):
    """``ratings`` with the rows of ``new`` (both: user_id, item_id, rating, timestamp) added, and
    ``{"added": n, "changed": m}``: a pair of ``new`` that ``ratings`` lacks is appended (added); a pair
    that ``ratings`` has keeps its latest row (largest timestamp; on a tie, ``new``'s), so a newer event
    replaces the rating (changed) and an older one is dropped. The untouched ratings keep their order.

    Duplicates *within* ``ratings`` whose pair ``new`` does not touch are left alone: they are a broken
    source, and the validation step must see and report them.
    """
    import numpy as np
    import pandas as pd

    keys = ["user_id", "item_id"]
    if len(new) == 0:
        return ratings, {"added": 0, "changed": 0}
    if missing := [column for column in COLUMNS if column not in ratings]:
        raise ValueError(f"the ratings lack column(s) {missing}: cannot add interactions to them")
    ratings = ratings.reset_index(drop=True)
    old_pairs = pd.MultiIndex.from_frame(ratings[keys])
    touched = old_pairs.isin(pd.MultiIndex.from_frame(new[keys]))
    pool = pd.concat(
        [ratings.loc[touched, [*COLUMNS]].assign(_row=np.flatnonzero(touched)), new[[*COLUMNS]].assign(_row=-1)],
        ignore_index=True,
    )
    pool = pool.sort_values("timestamp", kind="stable").drop_duplicates(keys, keep="last")
    kept_old = ratings.index.isin(pool.loc[pool["_row"] >= 0, "_row"])
    from_new = pool[pool["_row"] < 0].drop(columns="_row")
    existed = pd.MultiIndex.from_frame(from_new[keys]).isin(old_pairs)
    merged = pd.concat([ratings[~touched | kept_old], from_new], ignore_index=True)
    return merged, {"added": int((~existed).sum()), "changed": int(existed.sum())}


def read_feedback(feedback_db: str, namespace: str):
    """Every stored feedback event of ``namespace`` (:meth:`recsys_workshop.store.Store.feedback_frame`).

    ``feedback_db``: a database URL, or ``"env"`` for ``$RECSYS_DATABASE_URL`` (how a cluster passes it
    from a Secret, without a password in a pipeline parameter). An SQLite file that does not exist is an
    error (a mistyped path), not an empty store."""
    from recsys_workshop.store import ENV_DATABASE_URL, Store, database_url

    url = os.environ.get(ENV_DATABASE_URL, "") if feedback_db == FROM_ENV else feedback_db
    if not url:
        raise ValueError(f"feedback_db={FROM_ENV!r} but ${ENV_DATABASE_URL} is not set")
    parsed = database_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database).expanduser().is_file():
        raise FileNotFoundError(f"no feedback database at {parsed.database}")
    with Store.open(parsed, namespace=namespace) as store:
        return store.feedback_frame()


def step_ingest(dataset: str, ratings_csv: str, out_path: str, feedback_db: str = "") -> dict[str, int]:
    """Write the ratings to ``out_path`` (CSV): MovieLens ``dataset`` through the workshop loader, or a
    CSV of your own (``ratings_csv``: columns user_id, item_id, rating, timestamp).

    ``feedback_db`` (a database URL, or ``"env"``: see :func:`read_feedback`; empty: none) adds the API's
    stored feedback of namespace ``dataset`` as new interactions (:func:`feedback_to_ratings`, then
    :func:`add_interactions`). Returns the sizes, and with ``feedback_db`` how many events were read
    (``feedback_events``) and how many rows they added (``feedback_added``: new pairs) or changed
    (``feedback_changed``: a newer event replaced a rating)."""
    import pandas as pd

    from recsys_workshop import data

    if ratings_csv:
        ratings = pd.read_csv(ratings_csv)
    else:
        ratings = data.load_ratings(dataset, progress=False)
    figures = {}
    if feedback_db:
        events = read_feedback(feedback_db, dataset)
        ratings, counts = add_interactions(ratings, feedback_to_ratings(events))
        figures = {"feedback_events": len(events), "feedback_added": counts["added"],
                   "feedback_changed": counts["changed"]}  # fmt: skip
    ratings.to_csv(out_path, index=False)
    return {"rows": len(ratings), "columns": len(ratings.columns), **figures}


def read_ratings(path: str):
    """A ratings CSV written by a pipeline step, with the workshop's column types where they fit."""
    import pandas as pd

    frame = pd.read_csv(path)
    for column, dtype in COLUMNS.items():
        if column in frame and frame[column].notna().all():
            try:
                frame[column] = frame[column].astype(dtype)
            except (TypeError, ValueError):
                pass  # left as read: the validation step reports the wrong type
    return frame


def report(title: str, problems: list[str], facts: Mapping[str, Any]) -> str:
    lines = [f"# {title}: {'FAILED' if problems else 'passed'}", ""]
    lines += [f"- {key}: {value}" for key, value in facts.items()]
    if problems:
        lines += ["", "## Problems", ""] + [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"


def step_validate(ratings_path: str, report_path: str, rating_min: float, rating_max: float) -> None:
    """Schema, ranges, missing values, duplicates (:func:`recsys_workshop.data.check_ratings`); raises
    :class:`ValidationFailed` with the report when anything is wrong."""
    from recsys_workshop import data

    ratings = read_ratings(ratings_path)
    problems = data.check_ratings(ratings, rating_range=(rating_min, rating_max))
    facts = {"rows": f"{len(ratings):,}", "columns": ", ".join(ratings.columns)}
    if not problems:
        facts |= {"users": f"{ratings['user_id'].nunique():,}", "items": f"{ratings['item_id'].nunique():,}"}
    text = report("Data validation", problems, facts)
    Path(report_path).write_text(text, encoding="utf-8")
    if problems:
        raise ValidationFailed(text)


def step_split(
    ratings_path: str, method: str, ratio: float, seed: int, train_path: str, test_path: str, report_path: str
) -> dict[str, int]:
    """Split as the training job does (:func:`recsys_workshop.train.job.split_data`), then check the
    splits for leakage (:func:`recsys_workshop.data.check_split`)."""
    from recsys_workshop import data
    from recsys_workshop.train.job import JobConfig, split_data

    ratings = read_ratings(ratings_path)
    config = JobConfig.from_dict({"split": {"method": method, "ratio": ratio, "seed": seed}})
    train, test = split_data(config, ratings)
    problems = data.check_split(train, test)
    text = report("Split check", problems, {"train": f"{len(train):,}", "test": f"{len(test):,}", "method": method})
    Path(report_path).write_text(text, encoding="utf-8")
    if problems:
        raise ValidationFailed(text)
    train.to_csv(train_path, index=False)
    test.to_csv(test_path, index=False)
    return {"train": len(train), "test": len(test)}


def step_train(train_path: str, job_config: str, model_path: str) -> dict[str, Any]:
    """Train with the job config (JSON) on the pipeline's training split and export version 1 of the
    model under ``model_path``. Returns the training figures (epochs, seconds)."""
    from recsys_workshop.train.job import JobConfig, run

    config = JobConfig.from_dict({**json.loads(job_config or "{}"), "model_dir": None, "checkpoint_dir": None})
    train = read_ratings(train_path)
    return run(config, train=train, evaluation=None, model_dir=model_path, evaluate=False)


def evaluate_version(version_dir: str | os.PathLike[str], train, test, k: int = 10) -> dict[str, float]:
    """Top-k metrics of an exported version, computed through the model server's own code path
    (:class:`recsys_workshop.serving.LoadedVersion`): what is measured is what would be served."""
    import numpy as np
    import pandas as pd

    from recsys_workshop import metrics
    from recsys_workshop.serving import LoadedVersion

    version = LoadedVersion.load(version_dir)
    users = np.sort(test["user_id"].unique())
    seen = train.groupby("user_id")["item_id"].apply(list).to_dict()
    items, scores, _ = version.top_k(users, k, [seen.get(int(u), []) for u in users])
    recs = pd.DataFrame(
        {
            "user_id": np.repeat(users, [len(i) for i in items]),
            "item_id": np.concatenate(items),
            "score": np.concatenate(scores).astype(float),
        }
    )
    recs["rank"] = recs.groupby("user_id").cumcount() + 1
    return {name: float(value) for name, value in metrics.ranking_metrics(test, recs, k).items()}


def latest_version_dir(base: str | os.PathLike[str]) -> Path | None:
    from recsys_workshop.export import list_versions

    versions = list_versions(base) if Path(base).is_dir() else []
    return Path(base) / str(versions[-1]) if versions else None


def is_better(candidate: float, deployed: float | None, min_improvement: float = 0.0) -> bool:
    """The push gate: nothing deployed yet, or the candidate beats the deployed model by more than
    ``min_improvement`` (a tie is not an improvement: a new version must earn its rollout)."""
    if min_improvement < 0:
        raise ValueError("min_improvement must be >= 0")
    return deployed is None or candidate > deployed + min_improvement


def step_compare(
    candidate_dir: str, train_path: str, test_path: str, deployed_dir: str, k: int, min_improvement: float
) -> dict[str, Any]:
    """Champion vs challenger on the same held-out data: the candidate and the latest deployed version
    are both evaluated on this run's test split. ``better`` when there is no deployed model, or the
    candidate's NDCG@k beats it by more than ``min_improvement``.

    ``deployed_dir``: a folder, or the model server's URL (a cluster run): the latest version is then
    downloaded through the server's admin API (:mod:`.model_store`) and evaluated the same way."""
    import tempfile

    from recsys_workshop.pipelines import model_store

    if model_store.is_url(deployed_dir):
        with tempfile.TemporaryDirectory(prefix="deployed-") as folder:
            downloaded = model_store.download_latest(deployed_dir, folder)
            return _compare(candidate_dir, train_path, test_path, downloaded, k, min_improvement)
    return _compare(candidate_dir, train_path, test_path, latest_version_dir(deployed_dir), k, min_improvement)


def _compare(candidate_dir: str, train_path: str, test_path: str, deployed_version: Path | None, k: int,
             min_improvement: float) -> dict[str, Any]:  # fmt: skip
    train, test = read_ratings(train_path), read_ratings(test_path)
    candidate = evaluate_version(candidate_dir, train, test, k)[f"ndcg@{k}"]
    if deployed_version is None:
        return {"better": True, "candidate": candidate, "deployed": None, "reason": "nothing deployed yet"}
    deployed = evaluate_version(deployed_version, train, test, k)[f"ndcg@{k}"]
    better = is_better(candidate, deployed, min_improvement)
    verdict = "better" if better else "not better"
    reason = f"candidate ndcg@{k} {candidate:.4f} vs deployed v{deployed_version.name} {deployed:.4f}: {verdict}"
    return {"better": better, "candidate": candidate, "deployed": deployed, "reason": reason}


def step_evaluate_deployed(train_path: str, test_path: str, deployed_dir: str, k: int) -> tuple[str | None, dict]:
    """The champion's half of :func:`step_compare` as a step of its own: ``(version, metrics)`` of the latest
    deployed version evaluated on this run's test split, or ``(None, {})`` when nothing is deployed yet.
    ``deployed_dir``: a folder, or the model server's URL (the version is downloaded as for the compare)."""
    import tempfile

    from recsys_workshop.pipelines import model_store

    with tempfile.TemporaryDirectory(prefix="deployed-") as folder:
        url = model_store.is_url(deployed_dir)
        version = model_store.download_latest(deployed_dir, folder) if url else latest_version_dir(deployed_dir)
        if version is None:
            return None, {}
        return version.name, evaluate_version(version, read_ratings(train_path), read_ratings(test_path), k)


def step_push(candidate_dir: str, deployed_dir: str, metrics: Mapping[str, float]) -> str:
    """Copy the candidate into ``deployed_dir`` as the next version (atomically: a temp folder renamed
    into place), with its metrics in ``metadata.json``. A model server watching the folder serves it.

    ``deployed_dir`` the model server's URL (a cluster run): upload the candidate through the server's admin
    API, which checks it and publishes it as its next version, then activate that version (the server never
    switches by itself); returns the version's URL."""
    from recsys_workshop.export import METADATA_FILE, next_version
    from recsys_workshop.pipelines import model_store

    if model_store.is_url(deployed_dir):
        metadata = model_store.candidate_metadata(candidate_dir, metrics)
        version = model_store.upload_version(deployed_dir, candidate_dir, metadata)
        model_store.activate(deployed_dir, version)
        return f"version {version} on {deployed_dir.rstrip('/')}"
    base = Path(deployed_dir)
    base.mkdir(parents=True, exist_ok=True)
    version = next_version(base)
    staging = base / f".push-{version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(candidate_dir, staging)
        metadata_path = staging / METADATA_FILE
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        metadata.update(version=version, metrics={**metadata.get("metrics", {}), **metrics})
        metadata_path.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
        os.rename(staging, base / str(version))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return str(base / str(version))


def step_evaluate(version_dir: str, train_path: str, test_path: str, k: int) -> dict[str, float]:
    return evaluate_version(version_dir, read_ratings(train_path), read_ratings(test_path), k)
