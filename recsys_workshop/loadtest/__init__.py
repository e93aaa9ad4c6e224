"""Load tests with Locust: bounded headless runs on this machine, charts, an SLO verdict and the knee.

Locust runs as its own process, always (its gevent monkey-patching breaks a process that has already
imported kserve or urllib3): importing this package never imports Locust. It only targets loopback
addresses, with a bounded number of users and a bounded duration.

    from recsys_workshop import loadtest

    run = loadtest.run("http://127.0.0.1:8000", users=20, run_time=30, prefix="artifacts/loadtest/first")
    verdict = loadtest.verdict(run.prefix, loadtest.SLO(p95_ms=100, max_error_rate=0.001))
    loadtest.plot_run(run.prefix, slo=verdict.slo)          # -> first_charts.png

    steps = loadtest.run_steps("http://127.0.0.1:8000", step_users=10, max_users=100, step_seconds=20,
                               prefix="artifacts/loadtest/steps")
    knee = loadtest.find_knee(loadtest.read_steps(steps.prefix), slo)
    loadtest.plot_knee(steps.prefix, slo)                   # -> steps_knee.png

The modules, by responsibility:

- :mod:`.runner`: starting bounded headless Locust runs, local or distributed (master + workers), and
  writing a locustfile with your own tasks;
- :mod:`.report`: reading a run's CSV files, the SLO verdict, the run's charts;
- :mod:`.knee`: judging the steps of a step-load run and finding the knee;
- :mod:`.cli`: ``python -m recsys_workshop.loadtest run|steps|report`` (see there);
- :mod:`.locustfile` (the simulated users) and :mod:`.stepload` (the step-load shape): the files Locust
  loads by path, in its own process (``loadtest.LOCUSTFILE``, ``loadtest.STEPLOAD``); never import them
  in a notebook.
"""

from __future__ import annotations

from recsys_workshop.loadtest.cli import main
from recsys_workshop.loadtest.knee import Knee, find_knee, plot_knee, read_steps, step_verdicts
from recsys_workshop.loadtest.report import (
    SLO,
    Verdict,
    plot_run,
    read_history,
    read_response_times,
    read_stats,
    verdict,
)
from recsys_workshop.loadtest.runner import (
    HERE,
    LOCUSTFILE,
    LOOPBACK_HOSTS,
    MAX_SECONDS,
    MAX_USERS,
    STARTUP_GRACE_SECONDS,
    STEPLOAD,
    LoadTestError,
    Run,
    check_host,
    cpu_seconds,
    free_port,
    locustfile_with_tasks,
    run,
    run_steps,
)

__all__ = [
    "HERE",
    "LOCUSTFILE",
    "LOOPBACK_HOSTS",
    "MAX_SECONDS",
    "MAX_USERS",
    "SLO",
    "STARTUP_GRACE_SECONDS",
    "STEPLOAD",
    "Knee",
    "LoadTestError",
    "Run",
    "Verdict",
    "check_host",
    "cpu_seconds",
    "find_knee",
    "free_port",
    "locustfile_with_tasks",
    "main",
    "plot_knee",
    "plot_run",
    "read_history",
    "read_response_times",
    "read_stats",
    "read_steps",
    "run",
    "run_steps",
    "step_verdicts",
    "verdict",
]
