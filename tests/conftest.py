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
