"""MovieLens: download, verify, load and split.

Everything the labs need to get from the GroupLens archive to a train/test split, in pure
pandas/numpy (no TensorFlow here, so lab 00 and the metric tests start in seconds).

Where the data comes from, in this order:

1. ``MOVIELENS_DIR``: a folder holding the official zips (``ml-100k.zip`` or ``zips/ml-100k.zip``)
   and/or the extracted folders (``ml-100k/u.data`` ...). It is only read, never written.
2. The download cache (``RECSYS_WORKSHOP_CACHE``, by default ``datasets/cache/`` in a checkout of the
   workshop, else ``~/.cache/recsys-workshop``), holding zips downloaded earlier.
3. A download from GroupLens, with a progress bar, written to a temporary file and renamed into the
   cache only once its SHA-256 matches the official checksum.

Every file is checked against the published checksums before it is parsed, and every loader
returns DataFrames with named, typed columns (``user_id``, ``item_id``, ``rating``, ``timestamp``):
no column is ever read by position without being named.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
import re
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from recsys_workshop import downloads, paths

__all__ = [
    "DATASETS",
    "ChecksumError",
    "DataUnavailableError",
    "MovieLens",
    "MovieLensError",
    "cache_dir",
    "check_ratings",
    "check_split",
    "chrono_split",
    "global_time_split",
    "cold_start_split",
    "download",
    "genre_matrix",
    "head_share",
    "item_popularity",
    "leave_one_out_split",
    "load",
    "load_items",
    "load_ratings",
    "load_tags",
    "load_users",
    "official_split",
    "random_split",
    "stratified_split",
    "stratified_split_group_sample",
    "to_implicit",
    "validate_interactions",
]

ENV_LOCAL_DIR = "MOVIELENS_DIR"
ENV_CACHE_DIR = paths.ENV_CACHE_DIR
BASE_URL = "https://files.grouplens.org/datasets/movielens/"

INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


class MovieLensError(RuntimeError):
    """Base class of every data error this module raises."""


class ChecksumError(MovieLensError):
    """A file does not have the content GroupLens published."""


class DataUnavailableError(MovieLensError):
    """The data set is neither available locally nor downloadable."""


@dataclasses.dataclass(frozen=True)
class _Spec:
    """One MovieLens release: the official archive and the members this module reads."""

    name: str
    zip_sha256: str
    zip_size: int
    # member file name -> sha256 (a prefix where only a prefix is published)
    members: dict[str, str]

    @property
    def url(self) -> str:
        return BASE_URL + self.name + ".zip"

    @property
    def zip_name(self) -> str:
        return self.name + ".zip"


# Official archives: sizes and SHA-256 as recorded by tensorflow/datasets
# (url_checksums/movielens.txt); member checksums from the GroupLens archives themselves.
DATASETS: dict[str, _Spec] = {
    "ml-100k": _Spec(
        name="ml-100k",
        zip_sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        zip_size=4924029,
        members={
            "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
            "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
            "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
            "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
            "u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
            "u1.base": "ce253ec86c448b44fb3ba9a30d12dcfc2e9210cbde71efada3730c22e9ac212a",
            "u1.test": "18c6014a4b2c7324f250a63f8904a7b16b2b19f911129e346141507b0cbac950",
            "u2.base": "6c06f0b5df4b256da1a994f3ac66edc8da4d3f09bc9282df6b14d893366d703e",
            "u2.test": "4de658d1e04ed9104629509a2e2528fce833ac8e048280183f1df167632038c3",
            "u3.base": "afdc155c291c6edc41c0407e39d7462eb98d341e064f0b0a12175b80b3c4af5d",
            "u3.test": "0f548b51c78327de4c156461d3e430b7e5579fe2b5681586a59416e48fd35f6d",
            "u4.base": "219f0f4d40dfe9c5141d425f53fa91ee23ed275f14e280bbf1b50117afb064ca",
            "u4.test": "7c02ad0a1e7ab1083c8b9d4b627203a051dd7b5eab46d99fa44de33470de8db9",
            "u5.base": "a9574e59ce961eec2121627760b6e9b0974ce1637b3fe69ac32cb14a4bfab485",
            "u5.test": "351cc52e0d15b6c721466276fc24671d40936899e3d01fadeaf312915b8c5634",
            "ua.base": "67b5bcdb380c29f85d56a012ecd88612ae020f30a6730d117a334ee8203b91f2",
            "ua.test": "d0497e202417720f57a184ec8c66be2d1afa4ff41bb53787c57b28d6bf79bc42",
            "ub.base": "237254d253b6ad7de84f919d041055428646254f34ed8f562703c899430cd881",
            "ub.test": "d54a72d05730d5892062734b2bec73e976f9b713d18c828a18b968d6cce442da",
        },
    ),
    "ml-latest-small": _Spec(
        name="ml-latest-small",
        zip_sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        zip_size=978202,
        members={
            "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
            "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
            "tags.csv": "92a9f8bb7916dceef6151209845788c3643f794dfa79d1feaec7121b5960399d",
            "links.csv": "97ad18e4e56a09363c65676b6cb3482ce3e2cea2372a24620c1599c843325f31",
        },
    ),
    "ml-1m": _Spec(
        name="ml-1m",
        zip_sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        zip_size=5917549,
        members={
            "ratings.dat": "506d64ca44484487c11dc2d9a28de5c54948213e6b96285e298afe28d6ea4e0f",
            # only these prefixes of the member digests are published; the zip digest is complete
            "movies.dat": "0140fc23",
            "users.dat": "1dc3a953",
        },
    ),
}

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip

# ml-1m README: occupation codes of users.dat
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Where files live: local copy, cache, download
# --------------------------------------------------------------------------------------------


def _spec(name: str) -> _Spec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"Unknown MovieLens data set {name!r}; choose one of {sorted(DATASETS)}") from None


def cache_dir() -> Path:
    """The folder where downloaded archives are kept (see :func:`recsys_workshop.paths.cache_dir`)."""
    return paths.cache_dir()


_sha256_file = downloads.sha256_file


def _check_digest(label: str, actual: str, expected: str, advice: str) -> None:
    if not actual.startswith(expected):
        raise ChecksumError(
            f"Checksum mismatch for {label}:\n  expected sha256 {expected}\n  actual   sha256 {actual}\n{advice}"
        )


def download(
    name: str,
    dest_dir: Path | str | None = None,
    *,
    base_url: str = BASE_URL,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download the official ``<name>.zip`` into ``dest_dir`` (the cache by default) and verify it.

    The archive is streamed to a temporary file in ``dest_dir`` while its SHA-256 is computed; only a
    complete file with the official checksum is renamed to ``<name>.zip``. An interrupted or corrupted
    download leaves nothing behind. Returns the path of the verified archive.
    """
    spec = _spec(name)
    target = (Path(dest_dir) if dest_dir is not None else cache_dir()) / spec.zip_name
    url = base_url.rstrip("/") + "/" + spec.zip_name
    try:
        return downloads.fetch(url, target, sha256=spec.zip_sha256, size=spec.zip_size, progress=progress,
                               timeout=timeout)
    except downloads.DownloadFailed as exc:
        raise DataUnavailableError(f"{exc}.\n{_offline_advice(spec)}") from exc
    except downloads.ChecksumMismatch as exc:
        raise ChecksumError(
            f"Checksum mismatch for {url} (downloaded):\n  expected sha256 {exc.expected}\n  actual   sha256 "
            f"{exc.actual}\nThe download was discarded. Retry; if it keeps failing, fetch the archive by hand from "
            f"GroupLens and point {ENV_LOCAL_DIR} at its folder."
        ) from exc


def _offline_advice(spec: _Spec) -> str:
    where = f"{spec.zip_name}, zips/{spec.zip_name} or the extracted {spec.name}/ folder"
    local = os.environ.get(ENV_LOCAL_DIR)
    if local:
        return (f"{ENV_LOCAL_DIR}={local} holds none of {where}: put a copy of the official archive there "
                "(made on a machine with internet), and run again.")
    return (f"If this machine is offline, set {ENV_LOCAL_DIR} to a folder holding {where} (for example a copy "
            "made on another machine), and run again.")


class _Source:
    """Reads the members of one data set from a verified zip or an extracted folder."""

    def __init__(self, spec: _Spec, *, zip_path: Path | None = None, folder: Path | None = None):
        self.spec, self.zip_path, self.folder = spec, zip_path, folder

    def __repr__(self) -> str:
        return f"<{self.spec.name} from {self.zip_path or self.folder}>"

    def read(self, member: str) -> bytes:
        expected = self.spec.members.get(member)
        if self.zip_path is not None:
            with zipfile.ZipFile(self.zip_path) as archive:
                data = archive.read(f"{self.spec.name}/{member}")
            where = f"{self.zip_path}:{self.spec.name}/{member}"
        else:
            path = self.folder / member
            if not path.is_file():
                raise DataUnavailableError(f"{path} is missing: the folder {self.folder} is not a complete copy.")
            data = path.read_bytes()
            where = str(path)
        if expected is not None:
            _check_digest(
                where,
                hashlib.sha256(data).hexdigest(),
                expected,
                "This file is not the GroupLens original (edited, truncated or line endings converted?). "
                "Replace it with a fresh copy of the official archive.",
            )
        return data


def _locate(name: str, *, download_missing: bool = True, progress: bool = True) -> _Source:
    spec = _spec(name)
    local = os.environ.get(ENV_LOCAL_DIR)
    if local:
        root = Path(local).expanduser()
        if not root.is_dir():
            raise DataUnavailableError(f"{ENV_LOCAL_DIR}={local} is not a folder.")
        for candidate in (root / spec.zip_name, root / "zips" / spec.zip_name):
            if candidate.is_file():
                _verify_zip(candidate, spec)
                return _Source(spec, zip_path=candidate)
        folder = root / spec.name
        if folder.is_dir():
            return _Source(spec, folder=folder)
    cached = cache_dir() / spec.zip_name
    if cached.is_file():
        _verify_zip(cached, spec, cached=True)
        return _Source(spec, zip_path=cached)
    if not download_missing:
        raise DataUnavailableError(f"{name} is not available locally (looked in ${ENV_LOCAL_DIR} and {cached.parent}).")
    if local:
        print(f"{name}: not in {ENV_LOCAL_DIR}={local}; downloading it from GroupLens.")
    return _Source(spec, zip_path=download(name, progress=progress))


_VERIFIED: dict[tuple[str, int, int], bool] = {}


def _verify_zip(path: Path, spec: _Spec, *, cached: bool = False) -> None:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return
    advice = (
        f"Delete {path} and run again to download a fresh copy."
        if cached
        else f"Replace {path} with the official archive from {spec.url}."
    )
    _check_digest(str(path), _sha256_file(path), spec.zip_sha256, advice)
    _VERIFIED[key] = True


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _read_table(data: bytes, *, sep: str, names: Sequence[str], encoding: str = "utf-8", **kwargs) -> pd.DataFrame:
    text = data.decode(encoding)
    if len(sep) > 1:  # '::' in ml-1m: use the fast C parser on a single-character separator
        text = text.replace(sep, "\t")
        sep = "\t"
    return pd.read_csv(io.StringIO(text), sep=sep, names=list(names), header=None, **kwargs)


def _typed_interactions(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": df["user_id"].astype("int64"),
            "item_id": df["item_id"].astype("int64"),
            "rating": df["rating"].astype("float32"),
            "timestamp": df["timestamp"].astype("int64"),
        }
    )


def _parse_ml100k_ratings(data: bytes) -> pd.DataFrame:
    return _typed_interactions(_read_table(data, sep="\t", names=INTERACTION_COLUMNS))


def load_ratings(name: str = "ml-100k", *, progress: bool = True) -> pd.DataFrame:
    """All ratings of a data set, in file order: ``user_id, item_id, rating (float32), timestamp``."""
    source = _locate(name, progress=progress)
    if name == "ml-100k":
        return _parse_ml100k_ratings(source.read("u.data"))
    if name == "ml-1m":
        return _typed_interactions(_read_table(source.read("ratings.dat"), sep="::", names=INTERACTION_COLUMNS))
    raw = pd.read_csv(io.BytesIO(source.read("ratings.csv")))
    return _typed_interactions(raw.rename(columns={"userId": "user_id", "movieId": "item_id"}))


_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


def _year_from_title(titles: pd.Series) -> pd.Series:
    return titles.str.extract(_YEAR_IN_TITLE, expand=False).astype("Int64")


def load_items(name: str = "ml-100k", *, progress: bool = True) -> pd.DataFrame:
    """Films: ``item_id, title, year (nullable Int64), genres (list of str)``.

    ml-100k adds ``release_date`` and ``imdb_url``. The ml-100k title of item 267 is "unknown" and
    has no date: its year is missing (``<NA>``), never guessed.
    """
    source = _locate(name, progress=progress)
    if name == "ml-100k":
        columns = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *ML100K_GENRES]
        raw = _read_table(source.read("u.item"), sep="|", names=columns, encoding="latin-1")
        flags = raw[list(ML100K_GENRES)].to_numpy(dtype=bool)
        genres = [[g for g, on in zip(ML100K_GENRES, row, strict=True) if on] for row in flags]
        release = pd.to_datetime(raw["release_date"], format="%d-%b-%Y", errors="coerce")
        year = release.dt.year.astype("Int64").fillna(_year_from_title(raw["title"]))
        return pd.DataFrame(
            {
                "item_id": raw["item_id"].astype("int64"),
                "title": raw["title"].astype(str),
                "year": year,
                "genres": genres,
                "release_date": release,
                "imdb_url": raw["imdb_url"],
            }
        )
    if name == "ml-1m":
        raw = _read_table(source.read("movies.dat"), sep="::", names=["item_id", "title", "genres"], encoding="latin-1")
    else:
        raw = pd.read_csv(io.BytesIO(source.read("movies.csv"))).rename(columns={"movieId": "item_id"})
    genres = [[] if g == "(no genres listed)" else g.split("|") for g in raw["genres"]]
    return pd.DataFrame(
        {
            "item_id": raw["item_id"].astype("int64"),
            "title": raw["title"].astype(str),
            "year": _year_from_title(raw["title"]),
            "genres": genres,
        }
    )


def load_users(name: str = "ml-100k", *, progress: bool = True) -> pd.DataFrame:
    """Users with demographics: ``user_id, age, gender, occupation, zip`` (ml-100k and ml-1m only).

    In ml-1m ``age`` is the lower bound of the README's age bucket (1 means "under 18").
    """
    if name == "ml-latest-small":
        raise ValueError("ml-latest-small has no user demographics; use ml-100k or ml-1m.")
    source = _locate(name, progress=progress)
    if name == "ml-100k":
        raw = _read_table(
            source.read("u.user"), sep="|", names=["user_id", "age", "gender", "occupation", "zip"], dtype={"zip": str}
        )
        occupation = raw["occupation"]
    else:
        raw = _read_table(
            source.read("users.dat"),
            sep="::",
            names=["user_id", "gender", "age", "occupation", "zip"],
            dtype={"zip": str},
            encoding="latin-1",
        )
        occupation = raw["occupation"].map(dict(enumerate(ML1M_OCCUPATIONS)))
    return pd.DataFrame(
        {
            "user_id": raw["user_id"].astype("int64"),
            "age": raw["age"].astype("int64"),
            "gender": raw["gender"].astype("category"),
            "occupation": occupation.astype("category"),
            "zip": raw["zip"].astype(str),
        }
    )


def load_tags(name: str = "ml-latest-small", *, progress: bool = True) -> pd.DataFrame:
    """Free-text tags users gave films: ``user_id, item_id, tag, timestamp`` (ml-latest-small only)."""
    if name != "ml-latest-small":
        raise ValueError(f"{name} has no tags file; only ml-latest-small does.")
    raw = pd.read_csv(io.BytesIO(_locate(name, progress=progress).read("tags.csv")))
    return pd.DataFrame(
        {
            "user_id": raw["userId"].astype("int64"),
            "item_id": raw["movieId"].astype("int64"),
            "tag": raw["tag"].astype(str),
            "timestamp": raw["timestamp"].astype("int64"),
        }
    )


@dataclasses.dataclass(frozen=True)
class MovieLens:
    """One data set, loaded: ratings, items and, where the release has them, users and tags."""

    name: str
    ratings: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame | None = None
    tags: pd.DataFrame | None = None

    def summary(self) -> dict[str, float]:
        n_users = self.ratings["user_id"].nunique()
        n_items = self.ratings["item_id"].nunique()
        return {
            "ratings": len(self.ratings),
            "users": n_users,
            "items": n_items,
            "density": len(self.ratings) / (n_users * n_items),
        }


def load(name: str = "ml-100k", *, progress: bool = True) -> MovieLens:
    """Load every table of a data set (see the ``load_*`` functions)."""
    return MovieLens(
        name=name,
        ratings=load_ratings(name, progress=progress),
        items=load_items(name, progress=progress),
        users=None if name == "ml-latest-small" else load_users(name, progress=progress),
        tags=load_tags(name, progress=progress) if name == "ml-latest-small" else None,
    )


def validate_interactions(df: pd.DataFrame, *, require: Sequence[str] = ("user_id", "item_id")) -> pd.DataFrame:
    """Check that ``df`` is an interactions table with the named columns; returns it unchanged."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame of interactions, got {type(df).__name__}")
    missing = [c for c in require if c not in df.columns]
    if missing:
        raise ValueError(f"interactions are missing column(s) {missing}; they have {list(df.columns)}")
    return df


def check_ratings(df: pd.DataFrame, *, rating_range: tuple[float, float] = (0.5, 5.0)) -> list[str]:
    """Every problem that makes a ratings table unfit for training, as readable sentences (empty: fit).

    Schema (columns ``user_id``, ``item_id``, ``rating``, ``timestamp``; integer ids; numeric ratings),
    missing values, ratings outside ``rating_range``, ids below 1, timestamps before 1995 (MovieLens
    started in 1997) or in the future, and duplicate ``(user_id, item_id)`` pairs. A pipeline's
    validation step stops the run when this list is not empty.
    """
    if not isinstance(df, pd.DataFrame):
        return [f"expected a pandas DataFrame, got {type(df).__name__}"]
    problems = []
    missing = [c for c in ("user_id", "item_id", "rating", "timestamp") if c not in df.columns]
    if missing:
        return [f"missing column(s) {missing}; the table has {list(df.columns)}"]
    if df.empty:
        return ["the table has no rows"]
    for column in ("user_id", "item_id", "rating", "timestamp"):
        nulls = int(df[column].isna().sum())
        if nulls:
            problems.append(f"{column}: {nulls:,} missing value(s)")
    for column in ("user_id", "item_id", "timestamp"):
        if not pd.api.types.is_integer_dtype(df[column]):
            problems.append(f"{column}: expected integers, found dtype {df[column].dtype}")
    if not pd.api.types.is_numeric_dtype(df["rating"]):
        problems.append(f"rating: expected numbers, found dtype {df['rating'].dtype}")
    if problems:
        return problems
    low, high = rating_range
    outside = df[(df["rating"] < low) | (df["rating"] > high)]
    if len(outside):
        examples = ", ".join(str(v) for v in sorted(outside["rating"].unique())[:5])
        problems.append(f"rating: {len(outside):,} value(s) outside [{low}, {high}] (e.g. {examples})")
    for column in ("user_id", "item_id"):
        bad = int((df[column] < 1).sum())
        if bad:
            problems.append(f"{column}: {bad:,} id(s) below 1")
    first, now = 788_918_400, time.time()  # 1995-01-01
    stale = int(((df["timestamp"] < first) | (df["timestamp"] > now)).sum())
    if stale:
        problems.append(f"timestamp: {stale:,} value(s) before 1995 or in the future")
    duplicated = df.duplicated(["user_id", "item_id"], keep=False)
    if duplicated.any():
        pairs = df.loc[duplicated, ["user_id", "item_id"]].drop_duplicates()
        shown = ", ".join(f"({u}, {i})" for u, i in pairs.head(3).itertuples(index=False))
        problems.append(f"{len(pairs):,} duplicate (user_id, item_id) pair(s), e.g. {shown}")
    return problems


def check_split(train: pd.DataFrame, test: pd.DataFrame) -> list[str]:
    """Leakage and coverage problems between a training and a test split (empty: none).

    A ``(user_id, item_id)`` pair in both splits is leakage: the model would be tested on what it was
    trained on. A test user absent from training cannot be scored by a collaborative model (use a
    cold-start protocol on purpose, not by accident).
    """
    problems = []
    for name, df in (("train", train), ("test", test)):
        if df.empty:
            problems.append(f"the {name} split is empty")
    if problems:
        return problems
    both = train[["user_id", "item_id"]].merge(test[["user_id", "item_id"]].drop_duplicates(), how="inner")
    if len(both):
        shown = ", ".join(f"({u}, {i})" for u, i in both.head(3).itertuples(index=False))
        problems.append(f"leakage: {len(both):,} (user_id, item_id) pair(s) are in both splits, e.g. {shown}")
    cold = np.setdiff1d(test["user_id"].unique(), train["user_id"].unique())
    if len(cold):
        problems.append(f"{len(cold):,} test user(s) have no training interactions (e.g. {cold[:3].tolist()})")
    return problems


def to_implicit(df: pd.DataFrame, threshold: float = 4.0) -> pd.DataFrame:
    """Ratings -> implicit feedback: keep the interactions rated ``>= threshold``, without the rating value."""
    validate_interactions(df, require=("user_id", "item_id", "rating"))
    kept = df[df["rating"] >= threshold]
    return kept.drop(columns=["rating"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Splits (all deterministic given their seed)
# --------------------------------------------------------------------------------------------


def _normalise_ratios(ratio: float | Sequence[float]) -> list[float]:
    ratios = [float(ratio), 1.0 - float(ratio)] if np.isscalar(ratio) else [float(r) for r in ratio]
    if len(ratios) < 2 or any(r <= 0 for r in ratios):
        raise ValueError(f"ratio must be a float in (0, 1) or a list of positive floats, got {ratio!r}")
    total = sum(ratios)
    return [r / total for r in ratios]


def random_split(
    df: pd.DataFrame, ratio: float | Sequence[float] = 0.75, *, seed: int = 42
) -> tuple[pd.DataFrame, ...]:
    """Shuffle the rows with ``seed`` and cut them into consecutive parts of the given ratios.

    ``ratio=0.75`` gives (train, test); ``ratio=[0.64, 0.16, 0.2]`` gives (train, validation, test).
    Users and items may appear in any part (this is the split of the rating-prediction literature).
    """
    validate_interactions(df)
    ratios = _normalise_ratios(ratio)
    order = np.random.RandomState(seed).permutation(len(df))
    cuts = np.round(np.cumsum(ratios)[:-1] * len(df)).astype(int)
    return tuple(df.iloc[np.sort(part)] for part in np.split(order, cuts))


def _library_ratios(ratio: float | Sequence[float]) -> list[float]:
    """The split ratios as Microsoft Recommenders' ``process_split_ratio`` makes them: a float ``r`` gives
    ``[r, 1 - r]``; a list is divided by its ``math.fsum`` only when that sum is not exactly 1."""
    if np.isscalar(ratio):
        first = float(ratio)
        if not 0.0 < first < 1.0:
            raise ValueError(f"ratio must be a float in (0, 1) or a list of positive floats, got {ratio!r}")
        return [first, 1.0 - first]
    ratios = [float(r) for r in ratio]
    if len(ratios) < 2 or any(r <= 0 for r in ratios):
        raise ValueError(f"ratio must be a float in (0, 1) or a list of positive floats, got {ratio!r}")
    total = math.fsum(ratios)
    return ratios if total == 1.0 else [r / total for r in ratios]


def _check_stratification(filter_by: str, min_rating: int) -> str:
    if filter_by not in ("user", "item"):
        raise ValueError(f"filter_by must be 'user' or 'item', got {filter_by!r}")
    if min_rating < 1:
        raise ValueError("min_rating must be an integer >= 1")
    return f"{filter_by}_id"


def _keep_groups_of(df: pd.DataFrame, key: str, min_rating: int) -> pd.DataFrame:
    """The rows of the users (items) with at least ``min_rating`` rows, in their order."""
    if min_rating <= 1:
        return df
    return df[df.groupby(key)[key].transform("size") >= min_rating]


def _stratify(
    df: pd.DataFrame, ratio: float | Sequence[float], filter_by: str, min_rating: int, seed: int | None
) -> tuple[pd.DataFrame, ...]:
    """Microsoft Recommenders' ``_do_stratification`` (1.2.0 onwards): order the rows by group, then by
    one uniform draw per row (``seed``) or by timestamp (``seed=None``); rank them within their group;
    part ``j`` holds the ranks in ``(round(c[j-1] * n), round(c[j] * n)]`` with ``c`` the cumulative
    ratios and ``n`` the group's size (numpy's round, half to even)."""
    key = _check_stratification(filter_by, min_rating)
    ratios = _library_ratios(ratio)
    data = _keep_groups_of(df, key, min_rating)
    if seed is None:
        within = data["timestamp"].to_numpy()
    else:
        # the library's np.random.seed(seed); np.random.rand(n), without touching numpy's global state
        within = np.random.RandomState(seed).rand(len(data))
    # sort_values([key, within]): a stable sort, so equal timestamps keep their order in the file
    data = data.iloc[np.lexsort((within, data[key].to_numpy()))]
    groups = data.groupby(key, sort=False)
    count = groups[key].transform("size").to_numpy()
    rank = groups.cumcount().to_numpy() + 1
    parts, previous = [], None
    for threshold in np.cumsum(ratios):
        keep = rank <= np.round(threshold * count)
        if previous is not None:
            keep &= rank > np.round(previous * count)
        parts.append(data[keep])
        previous = threshold
    return tuple(parts)


def stratified_split(
    df: pd.DataFrame,
    ratio: float | Sequence[float] = 0.75,
    *,
    min_rating: int = 1,
    filter_by: str = "user",
    seed: int = 42,
) -> tuple[pd.DataFrame, ...]:
    """Per user (or per item) random split: each user keeps ``round(ratio * n)`` of their ``n`` ratings
    for training (half to even) and the rest go to test.

    Row for row Microsoft Recommenders' ``python_stratified_split`` of version 1.2.0 onwards (checked
    against 1.2.1): one ``np.random.rand`` draw per row with ``np.random.seed(seed)`` (rows in the
    order of ``df``), rows sorted by user (item) and draw, ranked within each user (item), rank
    ``<= round(0.75 * n)`` to train. The parts come back in that order, with the index, columns and
    dtypes of ``df``. ``stratified_split(ml100k, 0.75, filter_by="item", seed=42)`` is the split of
    their ml-100k benchmark (75,066 train and 24,934 test rows). ``ratio`` may be a list (one part
    each, divided by its sum unless it sums to 1); ``min_rating`` first drops the users (items) with
    fewer ratings. A user (item) with a single rating lands in train (``round(0.75) == 1``).

    Versions up to 1.1.1 shuffled each group instead (same counts, other rows): that split is
    :func:`stratified_split_group_sample`.
    """
    validate_interactions(df)
    return _stratify(df, ratio, filter_by, min_rating, seed)


def stratified_split_group_sample(
    df: pd.DataFrame,
    ratio: float | Sequence[float] = 0.75,
    *,
    min_rating: int = 1,
    filter_by: str = "user",
    seed: int = 42,
) -> tuple[pd.DataFrame, ...]:
    """The per-group shuffle of Microsoft Recommenders' ``python_stratified_split`` up to version 1.1.1
    (and the older ``reco_utils``): each user's (item's) rows shuffled by
    ``group.sample(frac=1, random_state=seed)``, then cut at ``round(ratio * n)``.

    Same row counts per user (item) as :func:`stratified_split`, but other rows: kept only to
    reproduce splits and results made with those versions. Parts ordered by user (item), then by
    the shuffle.
    """
    validate_interactions(df)
    key = _check_stratification(filter_by, min_rating)
    ratios = _normalise_ratios(ratio)
    data = _keep_groups_of(df, key, min_rating)
    groups = data.groupby(key, sort=False)
    size = groups[key].transform("size").to_numpy()
    position = groups.cumcount().to_numpy()
    # Each group is shuffled with a fresh RandomState(seed), as pandas' group.sample(frac=1,
    # random_state=seed) does: a row at position p moves to inverse_permutation(size)[p].
    for n in np.unique(size):
        in_group = size == n
        inverse = np.argsort(np.random.RandomState(seed).permutation(n))
        position[in_group] = inverse[position[in_group]]
    # cut points round(x * n) with Python's round (half to even), per group
    cut_ratios = np.cumsum(ratios)[:-1]
    part = np.zeros(len(data), dtype=int)
    for n in np.unique(size):
        in_group = size == n
        cuts = [round(x * n) for x in cut_ratios]
        part[in_group] = np.searchsorted(cuts, position[in_group], side="right")
    ordered = data.assign(_key=data[key].to_numpy(), _pos=position, _part=part).sort_values(
        ["_key", "_pos"], kind="mergesort"
    )
    return tuple(ordered[ordered["_part"] == i].drop(columns=["_key", "_pos", "_part"]) for i in range(len(ratios)))


def chrono_split(
    df: pd.DataFrame, ratio: float | Sequence[float] = 0.75, *, min_rating: int = 1, filter_by: str = "user"
) -> tuple[pd.DataFrame, ...]:
    """Per user (or item) chronological split: the earliest ``round(ratio * n)`` ratings of each user train,
    the later ones test (Microsoft Recommenders' ``python_chrono_split``). Equal timestamps keep file order.
    """
    validate_interactions(df, require=("user_id", "item_id", "timestamp"))
    return _stratify(df, ratio, filter_by, min_rating, None)


def global_time_split(
    df: pd.DataFrame, ratio: float = 0.8, *, known_only: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One cut-off date for everybody: ratings before the ``ratio`` quantile of the timestamps train, the
    rest test. Unlike :func:`chrono_split` (a cut per user), no model trains on anything rated after any
    test rating, which is how a model trained tonight meets tomorrow's traffic.

    ``known_only`` keeps only test rows whose user and item appear in train (a collaborative model cannot
    score the others; the cold-start protocols measure those separately).
    """
    validate_interactions(df, require=("user_id", "item_id", "timestamp"))
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    cutoff = df["timestamp"].quantile(ratio, interpolation="higher")
    before = df["timestamp"] < cutoff
    train, test = df[before], df[~before]
    if train.empty or test.empty:
        raise ValueError(f"the cut-off {cutoff} leaves an empty side: too few distinct timestamps")
    if known_only:
        test = test[test["user_id"].isin(train["user_id"]) & test["item_id"].isin(train["item_id"])]
    return train, test


@dataclasses.dataclass(frozen=True)
class LeaveOneOut:
    """The NCF evaluation protocol: each user's latest interaction is the test item, ranked among
    ``negatives`` (items the user never interacted with)."""

    train: pd.DataFrame
    test: pd.DataFrame
    negatives: pd.DataFrame  # user_id, item_id: n_negatives rows per test user

    def candidates(self) -> pd.DataFrame:
        """Test item plus its negatives, one row per (user, candidate), with ``label`` 1/0."""
        positives = self.test[["user_id", "item_id"]].assign(label=1)
        return pd.concat([positives, self.negatives.assign(label=0)], ignore_index=True)


def leave_one_out_split(df: pd.DataFrame, *, n_negatives: int = 99, seed: int = 42) -> LeaveOneOut:
    """Hold out each user's latest interaction (ties: the later row in the file) and sample negatives.

    Negatives are drawn uniformly without replacement from the items of the data set that the user
    never interacted with (in train or test), as in He et al., *Neural Collaborative Filtering* (2017).
    """
    validate_interactions(df, require=("user_id", "item_id", "timestamp"))
    ordered = df.assign(_row=np.arange(len(df))).sort_values(["user_id", "timestamp", "_row"], kind="mergesort")
    is_last = ~ordered["user_id"].duplicated(keep="last")
    test = ordered[is_last].drop(columns="_row")
    train = ordered[~is_last].drop(columns="_row").sort_index()
    catalogue = np.sort(df["item_id"].unique())
    seen = df.groupby("user_id")["item_id"].agg(lambda s: set(s.to_numpy().tolist()))
    rng = np.random.default_rng(seed)
    users, items = [], []
    for user in test["user_id"].to_numpy():
        pool = catalogue[~np.isin(catalogue, list(seen[user]))]
        if len(pool) < n_negatives:
            raise ValueError(f"user {user} has only {len(pool)} unseen items; cannot sample {n_negatives} negatives")
        users.append(np.full(n_negatives, user))
        items.append(rng.choice(pool, size=n_negatives, replace=False))
    negatives = pd.DataFrame(
        {
            "user_id": np.concatenate(users) if users else np.array([], dtype="int64"),
            "item_id": np.concatenate(items) if items else np.array([], dtype="int64"),
        }
    )
    return LeaveOneOut(train=train, test=test.reset_index(drop=True), negatives=negatives)


OFFICIAL_SPLITS = ("ua", "ub", "u1", "u2", "u3", "u4", "u5")


def official_split(split: str = "ua", *, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The splits GroupLens ships with ml-100k: ``ua``/``ub`` (10 test ratings per user) or
    ``u1`` ... ``u5`` (5-fold, 80/20). Returns (train, test)."""
    if split not in OFFICIAL_SPLITS:
        raise ValueError(f"official ml-100k splits are {OFFICIAL_SPLITS}, got {split!r}")
    source = _locate("ml-100k", progress=progress)
    return (
        _parse_ml100k_ratings(source.read(f"{split}.base")),
        _parse_ml100k_ratings(source.read(f"{split}.test")),
    )


# --------------------------------------------------------------------------------------------
# Popularity (the long tail)
# --------------------------------------------------------------------------------------------


def item_popularity(ratings: pd.DataFrame) -> pd.Series:
    """Number of interactions per item, most popular first (ties by item id)."""
    validate_interactions(ratings)
    counts = ratings.groupby("item_id").size().rename("n_ratings")
    return counts.sort_index().sort_values(ascending=False, kind="mergesort")


def head_share(ratings: pd.DataFrame, top_fraction: float = 0.1) -> float:
    """Share of all interactions that go to the ``top_fraction`` most popular items (the "head").

    The top ``ceil(top_fraction * n_items)`` items count as the head.
    """
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    counts = item_popularity(ratings).to_numpy()
    n_head = int(np.ceil(top_fraction * len(counts)))
    return float(counts[:n_head].sum() / counts.sum())


def genre_matrix(items: pd.DataFrame) -> pd.DataFrame:
    """Multi-hot genres: one row per item (indexed by ``item_id``), one 0/1 column per genre."""
    exploded = items[["item_id", "genres"]].explode("genres").dropna()
    matrix = pd.crosstab(exploded["item_id"], exploded["genres"]).clip(upper=1)
    matrix = matrix.reindex(items["item_id"].to_numpy(), fill_value=0)
    matrix.columns.name = None
    return matrix.astype("float32")


def cold_start_split(
    df: pd.DataFrame, fraction: float = 0.2, *, by: str = "user", seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a random ``fraction`` of the users (or items) *entirely*: every interaction of a held-out
    user (item) goes to test, none to train. The test users (items) are unknown to a model trained on
    train: the cold-start problem, measured."""
    if by not in ("user", "item"):
        raise ValueError(f"by must be 'user' or 'item', got {by!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    validate_interactions(df)
    key = f"{by}_id"
    ids = np.sort(df[key].unique())
    held_out = np.random.RandomState(seed).choice(ids, size=max(1, round(fraction * len(ids))), replace=False)
    is_test = df[key].isin(held_out)
    return df[~is_test], df[is_test]
