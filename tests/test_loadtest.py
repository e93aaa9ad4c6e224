"""Load testing: the SLO verdict and the knee finder on data, then short real Locust runs (a few seconds
each, Locust always in its own process) against the real local stack (model server + API) on loopback.

The runs are module-scoped: one stack, one plain run, one step-load run, one run of a generated
locustfile, one distributed run (master + 2 workers); every test reads their CSV files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from model_fixtures import exported_versions

from recsys_workshop import loadtest

pytestmark = [pytest.mark.tf, pytest.mark.slow]

CLOSED_LOOP = {"RECSYS_LOCUST_WAIT": "0", "RECSYS_LOCUST_SEED": "7"}
GENEROUS = loadtest.SLO(p95_ms=5000, max_error_rate=0.001)
TASK_NAMES = {"/", "/recommendations/[user_id]", "/recommendations/[new user]", "/users", "/feedback"}


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recsys_workshop.loadtest", *args],
        capture_output=True, text=True, timeout=240, env={**os.environ, **(env or {})},
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# The verdict and the knee, on data
# --------------------------------------------------------------------------------------------------


def _stats(requests: int, failures: int, p95: float, rps: float = 50.0) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"Type": "GET", "Name": "/x", "Request Count": requests, "Failure Count": failures,
             "Requests/s": rps, "50%": p95 / 2, "95%": p95, "99%": p95 * 2},
            {"Type": None, "Name": "Aggregated", "Request Count": requests, "Failure Count": failures,
             "Requests/s": rps, "50%": p95 / 2, "95%": p95, "99%": p95 * 2},
        ]
    )  # fmt: skip


def test_verdict_judges_latency_and_errors_both_ways():
    slo = loadtest.SLO(p95_ms=100, max_error_rate=0.001)
    ok = loadtest.verdict(_stats(5000, 4, 99), slo)  # 0.08 % errors, p95 just under
    assert ok.passed and ok.reasons == () and ok.error_rate == pytest.approx(0.0008)
    slow = loadtest.verdict(_stats(5000, 0, 100), slo)  # "p95 < 100": 100 misses
    assert not slow.passed and len(slow.reasons) == 1 and "p95 100 ms >= 100 ms" in slow.reasons[0]
    failing = loadtest.verdict(_stats(1000, 1, 10), slo)  # exactly 0.1 % is not < 0.1 %
    assert not failing.passed and "error rate" in failing.reasons[0]
    both = loadtest.verdict(_stats(10, 5, 500), slo)
    assert len(both.reasons) == 2 and "SLO MISSED" in str(both)
    empty = loadtest.verdict(_stats(0, 0, float("nan")), slo)
    assert not empty.passed and "only 0 requests" in empty.reasons[0]


def test_slo_refuses_nonsense():
    for bad in ({"p95_ms": 0}, {"p95_ms": -1}, {"max_error_rate": 1.5}, {"min_requests": 0}):
        with pytest.raises(ValueError):
            loadtest.SLO(**bad)
    with pytest.raises(ValueError, match="Aggregated"):
        loadtest.verdict(_stats(10, 0, 5).iloc[:1], loadtest.SLO())


def _steps(rows):
    return pd.DataFrame(rows, columns=["users", "requests", "failures", "rps", "p95_ms"])


def test_knee_is_the_last_step_before_the_first_miss():
    slo = loadtest.SLO(p95_ms=50, max_error_rate=0.01)
    steps = _steps([  # deliberately unsorted: the finder orders by users
        (30, 3000, 0, 300.0, 45), (10, 1000, 0, 100.0, 12), (20, 2000, 0, 200.0, 20),
        (40, 3100, 0, 310.0, 80), (50, 3150, 0, 315.0, 30),  # a lucky step after a miss does not count
    ])  # fmt: skip
    knee = loadtest.find_knee(steps, slo)
    assert (knee.users, knee.rps, knee.p95_ms, knee.first_miss_users) == (30, 300.0, 45, 40)
    assert "p95 80 ms >= 50 ms" in knee.reason and "knee at 30 users" in str(knee)
    # errors count as much as latency
    errors = _steps([(10, 1000, 0, 100.0, 10), (20, 2000, 40, 200.0, 10), (30, 3000, 0, 300.0, 10)])
    knee = loadtest.find_knee(errors, slo)
    assert knee.users == 10 and knee.first_miss_users == 20 and "error rate 2.000%" in knee.reason
    # every step meets it: the knee is the heaviest step, and no miss is reported
    assert loadtest.find_knee(_steps([(5, 50, 0, 10.0, 1), (10, 90, 0, 18.0, 2)]), slo).first_miss_users is None
    # the first step already misses: no knee
    none = loadtest.find_knee(_steps([(10, 100, 0, 10.0, 60), (20, 100, 0, 10.0, 10)]), slo)
    assert none.users is None and none.first_miss_users == 10 and "no knee" in str(none)
    with pytest.raises(ValueError, match="lack columns"):
        loadtest.find_knee(pd.DataFrame({"users": [1]}), slo)


def test_knee_plot_marks_the_knee(tmp_path):
    slo = loadtest.SLO(p95_ms=50)
    steps = _steps([(10, 1000, 0, 100.0, 12), (20, 2000, 0, 190.0, 30), (30, 2100, 0, 200.0, 90)])
    path = loadtest.plot_knee(steps, slo, tmp_path / "knee.png")
    assert path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="out="):
        loadtest.plot_knee(steps, slo)


def test_only_loopback_and_bounded_runs(tmp_path):
    assert loadtest.check_host("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert loadtest.check_host("http://localhost:1") == "http://localhost:1"
    for host in ("http://10.0.0.1:8000", "http://example.com", "ftp://127.0.0.1", "127.0.0.1:8000"):
        with pytest.raises(ValueError):
            loadtest.check_host(host)
    with pytest.raises(ValueError, match="users"):
        loadtest.run("http://127.0.0.1:9", prefix=tmp_path / "x", users=loadtest.MAX_USERS + 1)
    with pytest.raises(ValueError, match="run_time"):
        loadtest.run("http://127.0.0.1:9", prefix=tmp_path / "x", run_time=loadtest.MAX_SECONDS + 1)
    bad = _cli("run", "--host", "http://192.168.1.1", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "not a loopback address" in bad.stderr and "Traceback" not in bad.stderr


def test_importing_loadtest_does_not_import_locust():
    code = "import sys, recsys_workshop.loadtest; assert 'locust' not in sys.modules and 'gevent' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_population_follows_the_long_tail_of_activity(ml100k_ratings):
    """User ids are drawn in proportion to activity: the 10 % most active users get far more than 10 %
    of the requests (about their share of ratings). Locust is imported in a subprocess, never here."""
    code = textwrap.dedent(
        """
        import json, numpy as np
        from recsys_workshop.loadtest.locustfile import Population
        population = Population.from_dataset("ml-100k")
        rng = np.random.default_rng(0)
        print(json.dumps([population.source, [population.user(rng) for _ in range(20000)]]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    source, drawn = json.loads(out.stdout.strip().splitlines()[-1])
    assert source == "ml-100k"
    activity = ml100k_ratings["user_id"].value_counts()
    heavy = set(activity.index[: len(activity) // 10])
    expected = activity.iloc[: len(activity) // 10].sum() / activity.sum()  # about 0.32
    share = sum(u in heavy for u in drawn) / len(drawn)
    assert share == pytest.approx(expected, abs=0.02) and share > 0.25
    assert set(drawn) <= set(activity.index)


# --------------------------------------------------------------------------------------------------
# Real runs against the local stack
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from recsys_workshop.api import local_stack

    model_dir = exported_versions(tmp_path_factory.mktemp("models"), n_versions=1)
    database = tmp_path_factory.mktemp("state") / "api.db"
    # a load generator is one client: the per-client write limits would turn its feedback into 429s
    env = {"RECSYS_DATABASE_URL": f"sqlite:///{database}", "RECSYS_FEEDBACK_RATE": "off", "RECSYS_USERS_RATE": "off"}
    with local_stack(model_dir, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("loadtest")


@pytest.fixture(scope="module")
def first_run(stack, out):
    """`python -m recsys_workshop.loadtest run`: 4 closed-loop users for 4 s, a generous SLO."""
    prefix = out / "first"
    done = _cli(
        "run", "--host", stack.api_url, "--users", "4", "--run-time", "4s", "--out", str(prefix),
        "--p95-ms", str(GENEROUS.p95_ms), "--max-error-rate", str(GENEROUS.max_error_rate), env=CLOSED_LOOP,
    )  # fmt: skip
    return prefix, done


def test_short_run_meets_a_generous_slo(first_run):
    prefix, done = first_run
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("SLO met")
    summary = json.loads((prefix.parent / f"{prefix.name}_verdict.json").read_text())
    assert summary["verdict"]["passed"] is True and summary["verdict"]["requests"] > 50
    stats = loadtest.read_stats(prefix)
    assert set(stats["Name"]) == TASK_NAMES | {"Aggregated"}, "every task of the user ran"
    assert stats["Failure Count"].sum() == 0
    per_name = stats[stats["Name"] != "Aggregated"]
    total = stats[stats["Name"] == "Aggregated"].iloc[0]
    assert per_name["Request Count"].sum() == total["Request Count"]
    # the recommend task (weight 10) dominates home and new users (weight 1 each)
    counts = per_name.set_index("Name")["Request Count"]
    assert counts["/recommendations/[user_id]"] > 3 * counts["/"]
    # each new user is recommended for right after sign-up; the run may stop between the two requests
    # of a user that is mid-task, so at most one sign-up per simulated user (4) lacks its recommendation
    assert 0 <= counts["/users"] - counts["/recommendations/[new user]"] <= 4


def test_same_run_misses_an_impossible_slo(first_run):
    prefix, _ = first_run
    done = _cli("report", str(prefix), "--p95-ms", "0.5")  # half a millisecond through two HTTP hops
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("SLO MISSED") and ">= 0.5 ms" in done.stdout
    outcome = loadtest.verdict(prefix, loadtest.SLO(p95_ms=0.5))
    assert not outcome.passed and outcome.p95_ms >= 1


def test_run_files_feed_the_charts_and_the_deck(first_run):
    prefix, _ = first_run
    history = loadtest.read_history(prefix)
    # the columns of Locust's history that plot_run reads
    assert {"Timestamp", "Name", "Requests/s", "Failures/s", "User Count", "50%", "95%", "99%"} <= set(history.columns)
    total = history[history["Name"] == "Aggregated"]
    assert total["User Count"].max() == 4 and total["Total Request Count"].is_monotonic_increasing
    dist = loadtest.read_response_times(prefix)
    stats = loadtest.read_stats(prefix)
    assert dist["Count"].sum() == stats.loc[stats["Name"] == "Aggregated", "Request Count"].iloc[0]
    charts = prefix.parent / f"{prefix.name}_charts.png"
    assert charts.stat().st_size > 30_000


def test_new_task_is_run_and_failures_are_counted(stack, out):
    def top_three(user):
        user.client.get(f"/recommendations/{user.pick_user()}?k=3", name="/lab/top3")

    def too_many(user):  # k above 100: the API must refuse it (a 4xx counts as a failure)
        user.client.get(f"/recommendations/{user.pick_user()}?k=500", name="/lab/too-many")

    path = loadtest.locustfile_with_tasks(out / "lab_locustfile.py", {top_three: 5, too_many: 1})
    run = loadtest.run(stack.api_url, prefix=out / "lab", users=3, run_time=3, locustfile=path, env=CLOSED_LOOP)
    stats = loadtest.read_stats(run).set_index("Name")
    assert stats.loc["/lab/top3", "Request Count"] > 0 and stats.loc["/lab/top3", "Failure Count"] == 0
    assert stats.loc["/lab/too-many", "Failure Count"] == stats.loc["/lab/too-many", "Request Count"] > 0
    assert "/recommendations/[user_id]" in stats.index, "the workshop's own tasks still run"
    outcome = loadtest.verdict(run, GENEROUS)
    assert not outcome.passed and outcome.failures == stats.loc["/lab/too-many", "Failure Count"]
    assert "error rate" in outcome.reasons[0]


def test_generated_user_can_drop_the_workshop_tasks(tmp_path):
    def only_this(user):
        user.client.get("/healthz", name="/healthz")

    mixed = loadtest.locustfile_with_tasks(tmp_path / "mixed.py", {only_this: 2})
    alone = loadtest.locustfile_with_tasks(tmp_path / "alone.py", {only_this: 2}, keep_defaults=False)
    code = textwrap.dedent(
        """
        import collections, importlib.util, json, sys
        out = {}
        for path in sys.argv[1:]:
            spec = importlib.util.spec_from_file_location("generated", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            out[path] = collections.Counter(task.__name__ for task in module.LabUser.tasks)
        print(json.dumps(out))
        """
    )
    done = subprocess.run([sys.executable, "-c", code, str(mixed), str(alone)], capture_output=True, text=True,
                          check=True, timeout=120)  # fmt: skip
    tasks = json.loads(done.stdout.strip().splitlines()[-1])
    assert tasks[str(mixed)] == {"open_home": 1, "recommend": 10, "new_user": 1, "only_this": 2}
    assert tasks[str(alone)] == {"only_this": 2}
    with pytest.raises(ValueError, match="named function"):
        loadtest.locustfile_with_tasks(tmp_path / "bad.py", {(lambda user: None): 1})


def test_a_broken_setting_is_reported_not_hidden(stack, out):
    with pytest.raises(loadtest.LoadTestError, match="RECSYS_LOCUST_WEIGHTS"):
        loadtest.run(stack.api_url, prefix=out / "broken", users=1, run_time=2,
                     env={"RECSYS_LOCUST_WEIGHTS": "recommend=lots"})  # fmt: skip


def test_step_load_records_each_step_and_finds_the_knee(stack, out):
    run = loadtest.run_steps(stack.api_url, prefix=out / "steps", step_users=2, max_users=4, step_seconds=3,
                             settle_seconds=0.5, env=CLOSED_LOOP)  # fmt: skip
    steps = loadtest.read_steps(run)
    assert list(steps["users"]) == [2, 4]
    assert (steps["requests"] > 0).all() and (steps["failures"] == 0).all()
    assert (steps["p95_ms"] >= steps["p50_ms"]).all() and (steps["seconds"] > 1.0).all()
    history = loadtest.read_history(run)
    assert set(history.loc[history["Name"] == "Aggregated", "User Count"]) >= {2, 4}
    assert loadtest.find_knee(steps, GENEROUS).users == 4
    assert loadtest.find_knee(steps, loadtest.SLO(p95_ms=0.5)).users is None
    assert loadtest.plot_knee(run.prefix, GENEROUS).stat().st_size > 10_000


def test_distributed_master_and_workers(stack, out):
    run = loadtest.run(stack.api_url, prefix=out / "dist", users=4, run_time=3, workers=2, env=CLOSED_LOOP)
    assert "--master" in run.command
    log = run.log.read_text()
    assert "2 workers connected" in log
    # the master runs no users itself: every request it counted was sent by a worker
    outcome = loadtest.verdict(run, GENEROUS)
    assert outcome.requests > 20 and outcome.passed, str(outcome)
