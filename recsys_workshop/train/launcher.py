"""Run the training job as N local worker processes, the way a TFJob runs it on a cluster.

A TFJob with one ``Chief`` and ``N-1`` ``Worker`` replicas starts one pod per replica and gives each an
environment variable ``TF_CONFIG``: the address of every replica (``cluster``) and which one this pod is
(``task``). :class:`LocalJob` does the same on 127.0.0.1: one process per replica, each running
``python -m recsys_workshop.train --config job.json`` with its own ``TF_CONFIG``, and it restarts the
whole group when one process fails (the ``OnFailure`` restart policy of the manifest; with
``MultiWorkerMirroredStrategy`` the other workers cannot go on without the lost one), up to
``max_restarts`` times. Each restart resumes from the latest checkpoint.

    job = LocalJob(config, workers=2, workdir="artifacts/jobs/run-1")
    result = job.run()            # start, wait, restart on failure
    result.metrics["ndcg_at_10"]  # parsed from the chief's "name=value" lines, like Katib does

``entrypoint`` replaces ``-m recsys_workshop.train`` by another program taking the same ``--config``
(lab 07's self-check runs a script that calls the job's ``main`` with the learner's ``worker_share``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from recsys_workshop.procs import free_ports, stop_processes, tail
from recsys_workshop.train.job import JobConfig

METRIC_LINE = re.compile(r"^([A-Za-z_][\w@.-]*)=([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)\s*$")


class JobFailed(RuntimeError):
    """The job failed more often than ``max_restarts``; the message ends with the failing log's tail."""


def tf_configs(addresses: list[str]) -> list[dict]:
    """The ``TF_CONFIG`` of every replica of a job with a chief and ``len(addresses) - 1`` workers, in the
    form the Kubeflow Training Operator writes it (``cluster`` keyed by lower-case replica type, ``task``
    naming this replica, ``environment: cloud``)."""
    if not addresses:
        raise ValueError("a job needs at least one replica")
    cluster = {"chief": addresses[:1]}
    if len(addresses) > 1:
        cluster["worker"] = addresses[1:]
    tasks = [("chief", 0)] + [("worker", i) for i in range(len(addresses) - 1)]
    return [{"cluster": cluster, "task": {"type": t, "index": i}, "environment": "cloud"} for t, i in tasks]


def cluster_tf_config(job: str = "recsys-train", namespace: str = "recsys", workers: int = 1, port: int = 2222):
    """What the Training Operator gives the chief of TFJob ``job`` with ``workers`` Worker replicas: the
    replicas' stable DNS names (``<job>-<type>-<index>.<namespace>.svc``) instead of 127.0.0.1 ports."""
    addresses = [f"{job}-chief-0.{namespace}.svc:{port}"]
    addresses += [f"{job}-worker-{i}.{namespace}.svc:{port}" for i in range(workers)]
    return tf_configs(addresses)[0]


@dataclasses.dataclass
class JobResult:
    returncodes: dict[str, int]
    restarts: int
    metrics: dict[str, float]
    logs: dict[str, Path]
    seconds: float
    peak_mb: float  # the largest resident memory of one worker process, sampled while it ran


class LocalJob:
    """``workers`` processes (chief + ``workers - 1``) training one job on 127.0.0.1."""

    def __init__(
        self,
        config: JobConfig,
        workers: int = 2,
        *,
        workdir: str | os.PathLike[str],
        max_restarts: int = 2,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        entrypoint: Sequence[str] = ("-m", "recsys_workshop.train"),
    ):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workdir = Path(workdir)
        self.workers, self.max_restarts, self.python = workers, max_restarts, python
        self.entrypoint = list(entrypoint)
        if config.checkpoint_dir is None:  # a restart must have something to resume from
            config = dataclasses.replace(config, checkpoint_dir=str(self.workdir / "checkpoints"))
        self.config = config
        self.env = {**os.environ, **(env or {})}
        self.restarts = 0
        self.peak_mb = 0.0
        self.processes: dict[str, subprocess.Popen] = {}
        self._started = 0.0

    @property
    def names(self) -> list[str]:
        return ["chief-0"] + [f"worker-{i}" for i in range(self.workers - 1)]

    @property
    def logs(self) -> dict[str, Path]:
        return {name: self.workdir / "logs" / f"{name}.log" for name in self.names}

    @property
    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self.processes.items()}

    def start(self) -> LocalJob:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        config_path = self.workdir / "job.json"
        config_path.write_text(json.dumps(self.config.to_dict(), indent=2) + "\n", encoding="utf-8")
        if not self._started:
            self._started = time.perf_counter()
        addresses = [f"127.0.0.1:{port}" for port in free_ports(self.workers)]
        for name, tf_config in zip(self.names, tf_configs(addresses), strict=True):
            env = {**self.env, "TF_CONFIG": json.dumps(tf_config), "PYTHONUNBUFFERED": "1"}
            env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            with open(self.logs[name], "a", encoding="utf-8") as log:
                log.write(f"--- attempt {self.restarts + 1}, TF_CONFIG={env['TF_CONFIG']}\n")
                log.flush()
                self.processes[name] = subprocess.Popen(
                    [self.python, *self.entrypoint, "--config", str(config_path)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
        return self

    def stop(self, grace: float = 10.0) -> None:
        """Terminate every process still running (SIGTERM, then SIGKILL after ``grace`` seconds)."""
        stop_processes(self.processes.values(), timeout=grace)

    def wait(self, timeout: float | None = None) -> JobResult:
        """Wait for every process; restart the group from the latest checkpoint when one fails."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._sample_memory()
            codes = {name: process.poll() for name, process in self.processes.items()}
            failed = [name for name, code in codes.items() if code not in (None, 0)]
            if failed:
                self.stop()
                if self.restarts >= self.max_restarts:
                    name = failed[0]
                    raise JobFailed(
                        f"{name} exited with {codes[name]} after {self.restarts} restart(s); "
                        f"log {self.logs[name]}:\n{tail(self.logs[name], lines=20)}"
                    )
                self.restarts += 1
                self.start()
            elif all(code == 0 for code in codes.values()):
                return JobResult(
                    returncodes=codes,
                    restarts=self.restarts,
                    metrics=read_metrics(self.logs["chief-0"]),
                    logs=self.logs,
                    seconds=time.perf_counter() - self._started,
                    peak_mb=self.peak_mb,
                )
            if deadline is not None and time.monotonic() > deadline:
                self.stop()
                raise JobFailed(f"the job ran over {timeout:.0f} s and was stopped; logs in {self.workdir / 'logs'}")
            time.sleep(0.2)

    def _sample_memory(self) -> None:
        import psutil

        for process in self.processes.values():
            try:
                self.peak_mb = max(self.peak_mb, psutil.Process(process.pid).memory_info().rss / 2**20)
            except psutil.Error:  # already gone
                pass

    def run(self, timeout: float | None = None) -> JobResult:
        try:
            return self.start().wait(timeout)
        finally:
            self.stop()


def read_metrics(log: str | os.PathLike[str]) -> dict[str, float]:
    """The ``name=value`` lines of the last attempt in a log, as Katib's StdOut collector reads them."""
    text = Path(log).read_text(encoding="utf-8", errors="replace")
    last = text.rsplit("--- attempt ", 1)[-1]
    found = {}
    for line in last.splitlines():
        match = METRIC_LINE.match(line.strip())
        if match:
            found[match.group(1)] = float(match.group(2))
    return found
