"""The API's database (recsys_workshop.store): one suite, run against SQLite (a temporary file) and a real
PostgreSQL server (tests/postgres_server.py; skipped when there is none, unless POSTGRES_TEST_REQUIRED=1).

Several tests run writers in subprocesses (started at once, or killed with SIGKILL): their code is
:func:`worker` at the end of this file, run as ``python -c "... test_store.worker(argv)"``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit, pytest.mark.slow]

TESTS = Path(__file__).resolve().parent
FIRST_ID = 944  # ml-100k's largest user id + 1
_databases = itertools.count()


class Db:
    """A fresh, empty database of one kind: ``url``, ``kind`` (sqlite | postgresql), ``server`` (PostgreSQL)."""

    def __init__(self, kind: str, url: str, server=None):
        self.kind, self.url, self.server = kind, url, server


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        yield Db("sqlite", f"sqlite:///{tmp_path / 'state' / 'api.db'}")
        return
    from postgres_server import create_database, drop_database

    server = request.getfixturevalue("postgres_server")
    url = create_database(server.url, f"store_{os.getpid()}_{next(_databases)}")
    yield Db("postgresql", url, server)
    drop_database(url)


@pytest.fixture
def store(db):
    from recsys_workshop.store import Store

    with Store.open(db.url) as opened:
        yield opened


def event(user_id: int = 1, item_id: int = 50, action: str = "like", arm: str | None = "a", **extra) -> dict:
    return {"user_id": user_id, "item_id": item_id, "action": action, "arm": arm, "request_id": "req",
            "time": 1.7e9, **extra}


def start_workers(mode: str, url: str, *args: str, n: int = 1) -> list[subprocess.Popen]:
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_store; test_store.worker(sys.argv[1:])"
    return [
        subprocess.Popen([sys.executable, "-c", code, mode, url, f"w{i}", *args], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=TESTS.parent)
        for i in range(n)
    ]


# --------------------------------------------------------------------------------------------
# Schema and migrations
# --------------------------------------------------------------------------------------------


def test_migrations_build_the_models_schema_and_are_idempotent(db):
    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from recsys_workshop.store import Store
    from recsys_workshop.store.engine import head_revision
    from recsys_workshop.store.schema import Base

    with Store.open(db.url) as store:
        assert store.revision == head_revision() == "0001"
        user_id = store.create_user([1], None, None, None, first_id=FIRST_ID)
        with store.engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            assert tables == {"alembic_version", "counters", "users", "feedback", "rewards", "bandit_arms"}
            # The migration builds exactly what schema.py declares (a model change without a migration fails)
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            unique = {tuple(u["column_names"]) for u in sa.inspect(conn).get_unique_constraints("feedback")}
            assert ("namespace", "idempotency_key") in unique
    with Store.open(db.url) as again:  # the second upgrade finds nothing to do and keeps the data
        assert again.revision == "0001"
        assert again.get_user(user_id).liked == [1]
        with again.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_importing_the_package_does_not_load_sqlalchemy():
    code = "import sys, recsys_workshop.store as s; s.StoreUnavailable; print('sqlalchemy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------
# What the methods do
# --------------------------------------------------------------------------------------------


def test_users_and_feedback_survive_closing_and_reopening(db):
    from recsys_workshop.store import Store

    with Store.open(db.url) as store:
        users = [store.create_user([i % 7 + 1, 100 + i, i % 7 + 1], 20 + i % 50, "MF"[i % 2], "writer",
                                   first_id=FIRST_ID) for i in range(50)]
        results = [store.add_feedback(event(users[i % 50], i + 1, ("click", "like", "dislike")[i % 3]),
                                      idempotency_key=f"e{i}", reward=(f"rec{i // 2}", "a") if i % 3 < 2 else None)
                   for i in range(500)]
        store.add_pulls({"a": 500, "b": 7})
    assert users == list(range(FIRST_ID, FIRST_ID + 50))
    assert [r.seq for r in results] == list(range(1, 501)) and all(r.stored for r in results)
    rewarded = sum(r.rewarded for r in results)
    with Store.open(db.url) as store:
        assert store.get_user(users[3]).liked == [4, 103] and store.get_user(users[3]).age == 23
        assert store.get_user(FIRST_ID + 50) is None
        page, cursor = store.users_after(0, limit=30)
        rest, cursor = store.users_after(cursor)
        assert [u.user_id for u in page + rest] == users and cursor == users[-1]
        events, seq = [], 0
        while True:  # tail the feedback like a replica, 120 at a time
            batch, seq = store.feedback_after(seq, limit=120)
            if not batch:
                break
            events += batch
        assert [e["seq"] for e in events] == list(range(1, 501)) and events[17]["item_id"] == 18
        assert store.bandit_counts() == {"a": (500, rewarded), "b": (7, 0)}
        recent, total = store.recent_feedback(users[0], limit=5)
        assert total == 10 and [e["item_id"] for e in recent] == [251, 301, 351, 401, 451]
        frame = store.feedback_frame()
        assert frame.shape == (500, 5) and list(frame.columns) == ["user_id", "item_id", "action", "arm", "time"]
        assert frame["item_id"].tolist() == list(range(1, 501)) and str(frame["user_id"].dtype) == "int64"
    assert rewarded == 250  # 334 click/like events, on 250 recommendation ids


def test_retries_with_the_same_idempotency_key_store_nothing_twice(store):
    first = store.create_user([5, 6], 30, "F", "artist", first_id=FIRST_ID, idempotency_key="signup-1")
    assert store.create_user([9], 40, "M", None, first_id=FIRST_ID, idempotency_key="signup-1") == first
    assert store.create_user([9], None, None, None, first_id=FIRST_ID) == first + 1
    assert store.users_after(0)[0][0].liked == [5, 6]
    stored = store.add_feedback(event(first), idempotency_key="click-1", reward=("rec-1", "a"))
    retry = store.add_feedback(event(first), idempotency_key="click-1", reward=("rec-1", "a"))
    assert (stored.stored, stored.rewarded) == (True, True)
    assert (retry.stored, retry.rewarded, retry.duplicate, retry.seq) == (False, False, True, stored.seq)
    assert store.recent_feedback()[1] == 1 and store.bandit_counts() == {"a": (0, 1)}


def test_a_recommendation_is_rewarded_at_most_once(store):
    results = [store.add_feedback(event(action=action), idempotency_key=f"k{i}", reward=(rec, "a"))
               for i, (action, rec) in enumerate([("click", "r1"), ("like", "r1"), ("click", "r1"), ("like", "r2")])]
    assert [r.rewarded for r in results] == [True, False, False, True]
    store.add_pulls({"a": 3})
    assert store.bandit_counts() == {"a": (3, 2)}
    assert store.add_feedback(event(action="dislike"), idempotency_key="k9").rewarded is False
    assert [e["recommendation_id"] for e in store.recent_feedback(limit=2)[0]] == ["r2", None]


def test_threads_sharing_one_store(store):
    errors = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                store.create_user([t + 1], None, None, None, first_id=FIRST_ID)
                store.add_pulls({"a": 1, "b": 2})
                store.add_feedback(event(), idempotency_key=f"t{t}-{i}", reward=(f"rec{i}", "b"))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    users, _ = store.users_after(0, limit=1000)
    assert [u.user_id for u in users] == list(range(FIRST_ID, FIRST_ID + 100))
    assert store.bandit_counts() == {"a": (100, 0), "b": (200, 25)}
    assert [e["seq"] for e in store.feedback_after(0)[0]] == list(range(1, 101))


def test_namespaces_do_not_mix(db):
    from recsys_workshop.store import Store

    with Store.open(db.url, "ml-100k") as small, Store.open(db.url, namespace="ml-1m") as large:
        assert small.create_user([1], None, None, None, first_id=944, idempotency_key="same") == 944
        assert large.create_user([1], None, None, None, first_id=6041, idempotency_key="same") == 6041
        assert small.add_feedback(event(), idempotency_key="same", reward=("rec", "a")).stored
        assert large.add_feedback(event(), idempotency_key="same", reward=("rec", "a")).rewarded
        small.add_pulls({"a": 2})
        assert small.bandit_counts() == {"a": (2, 1)} and large.bandit_counts() == {"a": (0, 1)}
        assert large.get_user(944) is None and small.users_after(0)[1] == 944
        assert len(large.feedback_frame()) == 1 and large.recent_feedback(limit=10)[1] == 1


def test_bad_input_is_refused_before_any_sql(store):
    from recsys_workshop.store import StoreUnavailable

    for bad in (event(action="buy"), event(user_id=0), event(item_id="7"), event(arm="x" * 65)):
        with pytest.raises(ValueError):
            store.add_feedback(bad, idempotency_key="k")
    with pytest.raises(ValueError):
        store.add_feedback(event(), idempotency_key="")
    with pytest.raises(ValueError):
        store.create_user([1], 121, None, None, first_id=FIRST_ID)
    with pytest.raises(ValueError):
        store.add_pulls({"a": -1})
    assert store.recent_feedback() == ([], 0) and store.users_after(0) == ([], 0)
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.bandit_counts()


# --------------------------------------------------------------------------------------------
# Processes at once, processes killed
# --------------------------------------------------------------------------------------------


def test_two_processes_started_at_once(db):
    """Both migrate a new database at once, create users, pull arms and reward the same recommendations."""
    from recsys_workshop.store import Store

    workers = start_workers("mixed", db.url, "60", n=2)
    for w in workers:  # both imported everything: open (and migrate) at the same moment
        assert w.stdout.readline().strip() == "ready", w.stderr.read()
    for w in workers:
        w.stdin.write("go\n")
        w.stdin.flush()
    outputs = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in outputs]
    lines = [json.loads(line) for out, _ in outputs for line in out.splitlines()]
    ids = [line["user"] for line in lines if "user" in line]
    shared: dict[str, set[int]] = {}
    for line in lines:
        if line.get("key"):
            shared.setdefault(line["key"], set()).add(line["user"])
    assert len(ids) == 120 and len(shared) == 6  # keys shared-0, -10, ..., -50 ...
    assert all(len(same) == 1 for same in shared.values())  # ... gave both processes the same id
    assert sorted(set(ids)) == list(range(FIRST_ID, FIRST_ID + 114))  # distinct, none below first_id, no gap
    assert sum(line["stored"] for line in lines if "stored" in line) == 114  # 6 shared feedback keys
    with Store.open(db.url) as store:
        assert store.bandit_counts() == {"a": (120, 60), "b": (240, 0)}  # rec0..rec59: one reward each
        assert store.recent_feedback()[1] == 114


def test_kill_9_keeps_every_committed_write(db):
    from sqlalchemy import text

    from recsys_workshop.store import Store

    (writer,) = start_workers("forever", db.url)
    writer.stdout.readline()
    writer.stdin.write("go\n")
    writer.stdin.flush()
    confirmed = {"user": {}, "event": {}}
    try:
        deadline = time.monotonic() + 60
        while len(confirmed["event"]) < 500 and time.monotonic() < deadline:
            kind, number, key = writer.stdout.readline().split()
            confirmed[kind][key] = int(number)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=30)
    assert writer.returncode == -signal.SIGKILL and len(confirmed["event"]) == 500, writer.stderr
    assert len(confirmed["user"]) >= 50
    with Store.open(db.url) as store:
        users, _ = store.users_after(0, limit=10_000)
        events, _ = store.feedback_after(0, limit=10_000)
        assert {u.user_id for u in users} >= set(confirmed["user"].values())
        assert {e["seq"] for e in events} >= set(confirmed["event"].values())
        assert len(users) - len(confirmed["user"]) <= 1 and len(events) - len(confirmed["event"]) <= 1
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # nothing half-written
        assert all(len(u.liked) == 3 and u.age == 33 for u in users)
        assert store.bandit_counts()["a"][1] == len(events)  # every stored event carries its reward
        if db.kind == "sqlite":
            with store.engine.connect() as conn:
                assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"


# --------------------------------------------------------------------------------------------
# Failures: a full disk, a server that goes away, passwords
# --------------------------------------------------------------------------------------------


def test_disk_full_raises_store_unavailable_and_stores_nothing(tmp_path):
    from sqlalchemy import event as sa_event

    from recsys_workshop.store import Store, StoreUnavailable

    store = Store.open(f"sqlite:///{tmp_path / 'api.db'}")
    with store.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()

    def full_disk(dbapi_connection, _record):  # the database may not grow past its current size
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    sa_event.listen(store.engine, "connect", full_disk)
    store.engine.dispose()
    stored = 0
    with pytest.raises(StoreUnavailable, match="database or disk is full") as failure:
        for i in range(5000):
            store.add_feedback(event(), idempotency_key=f"k{i}", reward=(f"rec{i}", "a"))
            stored += 1
    assert 10 < stored < 5000 and "sqlite" not in failure.value.reason
    assert store.recent_feedback()[1] == stored and store.bandit_counts() == {"a": (0, stored)}
    sa_event.remove(store.engine, "connect", full_disk)
    store.engine.dispose()  # space again: the failed event was never stored, so it is stored now
    assert store.add_feedback(event(), idempotency_key=f"k{stored}", reward=(f"rec{stored}", "a")).rewarded
    assert store.bandit_counts() == {"a": (0, stored + 1)}
    store.close()


postgres_only = pytest.mark.parametrize("db", ["postgresql"], indirect=True)


@postgres_only
def test_postgres_backend_killed_mid_transaction_writes_nothing(db, store):
    """The arm's row is locked by another session, so add_feedback waits inside its transaction (the event
    already inserted); then its backend is terminated: StoreUnavailable, and the retry stores it whole."""
    import psycopg

    from recsys_workshop.store import StoreUnavailable

    store.add_pulls({"a": 1})
    admin_dsn = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    result = {}

    def write():
        try:
            result["ok"] = store.add_feedback(event(), idempotency_key="k1", reward=("rec1", "a"))
        except StoreUnavailable as err:
            result["err"] = err

    with psycopg.connect(admin_dsn) as admin:
        admin.execute("SELECT 1 FROM bandit_arms WHERE arm = 'a' FOR UPDATE")
        thread = threading.Thread(target=write)
        thread.start()
        with psycopg.connect(admin_dsn, autocommit=True) as watcher:
            for _ in range(200):
                pids = watcher.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'recsys-workshop' "
                                       "AND wait_event_type = 'Lock'").fetchall()
                if pids:
                    break
                time.sleep(0.05)
            assert pids, "add_feedback never waited for the lock"
            watcher.execute("SELECT pg_terminate_backend(%s)", pids[0])
        thread.join(30)
    assert "err" in result and "terminat" in result["err"].reason
    assert store.recent_feedback() == ([], 0) and store.bandit_counts() == {"a": (1, 0)}
    again = store.add_feedback(event(), idempotency_key="k1", reward=("rec1", "a"))  # a fresh connection
    assert (again.stored, again.rewarded, again.seq) == (True, True, 1)  # seq 1's bump was rolled back too
    assert store.bandit_counts() == {"a": (1, 1)}


@postgres_only
def test_postgres_server_gone_raises_store_unavailable_then_recovers(db, store):
    from recsys_workshop.store import StoreUnavailable

    if not db.server.managed:
        pytest.skip("RECSYS_TEST_DATABASE_URL's server is not ours to stop")
    store.add_pulls({"a": 1})
    db.server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as failure:
            store.add_feedback(event(), idempotency_key="k1", reward=("rec1", "a"))
        with pytest.raises(StoreUnavailable):
            store.create_user([1], None, None, None, first_id=FIRST_ID)
        assert time.monotonic() - started < 15 and store.engine.url.password not in failure.value.reason
    finally:
        db.server.start()
    assert store.add_feedback(event(), idempotency_key="k1", reward=("rec1", "a")).seq == 1  # reconnected
    assert store.bandit_counts() == {"a": (1, 1)}


@postgres_only
def test_a_password_never_shows(db, caplog):
    from sqlalchemy.engine import make_url

    from recsys_workshop.store import Store, StoreUnavailable

    password = make_url(db.url).password
    assert password and len(password) >= 16
    caplog.set_level(logging.DEBUG)
    with Store.open(db.url) as store:
        store.ping()
        shown = [repr(store), store.url, str(store.engine), str(store.engine.url)]
    assert "***" in store.url
    wrong = make_url(db.url).set(password=password[::-1])
    with pytest.raises(StoreUnavailable, match="password authentication failed") as failure:
        Store.open(wrong.render_as_string(hide_password=False))
    shown += [str(failure.value), "".join(traceback.format_exception(failure.value))]
    shown += [record.getMessage() + str(record.__dict__) for record in caplog.records]
    assert not [text for text in shown if password in text or password[::-1] in text]


def test_a_password_never_shows_without_a_server():
    from recsys_workshop.procs import free_port
    from recsys_workshop.store import Store, StoreUnavailable, database_url

    secret = "s3cret-" + str(os.getpid())
    with pytest.raises(StoreUnavailable) as failure:
        Store.open(f"postgresql://recsys:{secret}@127.0.0.1:{free_port()}/db")  # nothing listens there
    shown = [str(failure.value), "".join(traceback.format_exception(failure.value))]
    for bad in (f"mysql://u:{secret}@host/db", f"postgresql://u:{secret}@host:port/db", f"sqlite://u:{secret}@/"):
        with pytest.raises(ValueError) as refused:
            database_url(bad)
        shown.append(str(refused.value))
    assert "refused" in shown[0] and not [text for text in shown if secret in text]


def test_default_url_is_an_sqlite_file_under_artifacts(tmp_path, monkeypatch):
    from recsys_workshop import paths
    from recsys_workshop.store import Store, database_url

    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)
    monkeypatch.setattr(paths, "ARTIFACTS_DIR", tmp_path / "artifacts")
    assert database_url().database == str(tmp_path / "artifacts" / "state" / "api.db")
    assert database_url("postgresql://u:p@h/d").drivername == "postgresql+psycopg"
    with Store.open() as store:
        store.add_pulls({"latest": 1})
        with store.engine.connect() as conn:
            settings = [conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                        for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")]
    assert settings == ["wal", 2, 1, 30000]  # synchronous 2 = FULL
    monkeypatch.setenv("RECSYS_DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    with Store.open() as store:
        assert store.bandit_counts() == {}
    assert (tmp_path / "artifacts" / "state" / "api.db").exists() and (tmp_path / "elsewhere.db").exists()


# --------------------------------------------------------------------------------------------
# The writer processes (run by start_workers)
# --------------------------------------------------------------------------------------------


def worker(argv: list[str]) -> None:
    """``mixed URL TAG N``: N rounds of create_user + add_pulls + add_feedback, some keys shared between
    processes; ``forever URL TAG``: users and rewarded events until killed. Both print one line per commit
    and start after reading ``go`` on stdin (so two of them open the database at the same moment)."""
    from recsys_workshop.store import Store

    mode, url, tag, *rest = argv
    print("ready", flush=True)
    sys.stdin.readline()
    with Store.open(url) as store:
        if mode == "mixed":
            for i in range(int(rest[0])):
                key = f"shared-{i}" if i % 10 == 0 else None
                user = store.create_user([1, 2], None, None, None, first_id=FIRST_ID, idempotency_key=key)
                store.add_pulls({"a": 1, "b": 2})
                done = store.add_feedback(event(user), idempotency_key=key or f"{tag}-{i}", reward=(f"rec{i}", "a"))
                print(json.dumps({"user": user, "key": key, "stored": done.stored}), flush=True)
            return
        for i in itertools.count():
            if i % 10 == 0:
                key = f"user-{i}"
                print("user", store.create_user([1, 2, 3], 33, "F", None, first_id=FIRST_ID, idempotency_key=key),
                      key, flush=True)
            done = store.add_feedback(event(FIRST_ID, i + 1), idempotency_key=f"event-{i}", reward=(f"rec{i}", "a"))
            print("event", done.seq, f"event-{i}", flush=True)
