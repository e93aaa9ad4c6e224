"""Shared fixtures. Tests that need MovieLens read it through ``recsys_workshop.data``: from
``$MOVIELENS_DIR`` (CI points it at the read-only shared copy) or from the download cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def ml100k():
    from recsys_workshop import data

    return data.load("ml-100k", progress=False)


@pytest.fixture(scope="session")
def ml100k_ratings(ml100k):
    return ml100k.ratings


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """An empty download cache and no local copy: the loader must use what the test provides."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("RECSYS_WORKSHOP_CACHE", str(cache))
    monkeypatch.delenv("MOVIELENS_DIR", raising=False)
    return cache


def local_copy_dir() -> Path | None:
    value = os.environ.get("MOVIELENS_DIR")
    return Path(value) if value else None


GROUPS = ("unit", "tf", "cluster", "browser", "notebooks")


def pytest_collection_modifyitems(config, items):
    """Every test belongs to a group (a marker of GROUPS, usually the module's ``pytestmark``), so the fast
    lane ``-m "not tf and not browser and not notebooks"`` is defined by markers, not by hand-kept lists."""
    loose = [item.nodeid for item in items if not any(item.get_closest_marker(group) for group in GROUPS)]
    if loose:
        raise pytest.UsageError(f"tests without a group marker ({', '.join(GROUPS)}): {loose[:5]}")


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the store tests (tests/postgres_server.py): ``$RECSYS_TEST_DATABASE_URL``'s,
    else a throwaway one from Debian's binaries, stopped and removed after the session. Without binaries
    the tests that need it are skipped, unless ``POSTGRES_TEST_REQUIRED=1`` (CI), which makes them fail."""
    import contextlib

    import postgres_server as pg

    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(pg.running_server())
        except pg.PostgresUnavailable as err:
            missing = str(err)
        else:
            missing = None
        if missing and os.environ.get(pg.ENV_REQUIRED) == "1":
            pytest.fail(f"{missing} ({pg.ENV_REQUIRED}=1)", pytrace=False)
        if missing:
            pytest.skip(missing)
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server) -> str:
    """The URL (psycopg 3, with its password) of an empty database on :func:`postgres_server`."""
    return postgres_server.url
