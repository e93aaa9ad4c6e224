"""The local stack supervises its children: a model server or API that exits is reaped, logged and
restarted on the same port with exponential back-off; ``stop_model_server()`` is not undone; ``/readyz``
reports the model server's state; ``python -m recsys_workshop.api`` stops every child on SIGTERM/SIGINT.

Real processes throughout: the model server on a small exported matrix factorisation
(tests/model_fixtures.py) and the API under uvicorn, as in tests/test_api.py.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from model_fixtures import exported_versions

from recsys_workshop import procs
from recsys_workshop import supervisor as supervisor_module
from recsys_workshop.api.stack import local_stack
from recsys_workshop.supervisor import SupervisedProcess, Supervisor, backoff_delay

pytestmark = [pytest.mark.tf, pytest.mark.slow]

LOGGER = "recsys_workshop.api.stack"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return exported_versions(tmp_path_factory.mktemp("models"), n_versions=1)


@pytest.fixture(scope="module")
def stack(model_dir):
    with local_stack(model_dir, env={"RECSYS_MODEL_TIMEOUT": "2"}) as running:
        yield running


def _reaped(pid: int) -> bool:
    """``pid`` is gone: neither running nor a zombie (a zombie keeps ``/proc/<pid>`` with state Z)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    state = re.search(r"^State:\s+(\S)", status, re.M)[1]
    ppid = int(re.search(r"^PPid:\s+(\d+)", status, re.M)[1])
    return state != "Z" and ppid != os.getpid()  # else: a zombie, or still our running child


def _exited_not_reaped(process: subprocess.Popen) -> None:
    """Wait until ``process`` exits, leaving it a zombie for the supervisor to reap."""
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    assert not _reaped(process.pid)


def _wait(condition, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(interval)
    return result


def _model_answers(stack) -> bool:
    return stack.get(f"/recommendations/196?k=5&_={time.monotonic()}")["source"] == "model"


# --------------------------------------------------------------------------------------------
# The back-off schedule and the supervisor's bookkeeping (no model server)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(-1, 0.0), (0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 30.0), (7, 30.0), (5000, 30.0)],
)
def test_backoff_doubles_from_one_second_and_is_capped_at_thirty(failures, expected):
    assert backoff_delay(failures) == expected


def test_backoff_with_other_base_and_cap():
    assert [backoff_delay(n, base=0.25, cap=3) for n in range(1, 7)] == [0.25, 0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(3, base=10, cap=15) == 15


class _Handle:
    def __init__(self, process):
        self.process = process


def test_a_child_crashing_at_start_up_is_retried_with_the_capped_back_off(tmp_path, caplog):
    """Drives :meth:`Supervisor.check` with a virtual clock over a real child that exits with code 3 at once."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    command = [sys.executable, "-c", "import sys; sys.exit(3)"]
    log = tmp_path / "crash.log"
    first = subprocess.Popen(command)
    child = SupervisedProcess("crasher", _Handle(first), command, dict(os.environ),
                              f"http://127.0.0.1:{procs.free_port()}/ready", log, started_at=0.0)  # fmt: skip
    supervisor = Supervisor([child], stable_after=60)
    now, delays, pids = 0.0, [], [first.pid]
    for _ in range(7):
        _exited_not_reaped(child.process)
        supervisor.check(now)
        assert _reaped(pids[-1]), "check() reaps it"
        assert child.restart_at is not None, "an exited child gets a restart time"
        delays.append(child.restart_at - now)
        supervisor.check(child.restart_at - 0.01)  # not yet
        assert child.process.pid == pids[-1]
        now = child.restart_at
        supervisor.check(now)  # the restart: a new process, same command
        assert child.process.pid not in pids and child.restart_at is None
        pids.append(child.process.pid)
    _exited_not_reaped(child.process)
    child.process.wait()
    # the first exit comes 0 s after a start the supervisor took as ready, the others during start-up
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 7 and all("exited with code 3 " in w and str(log) in w for w in warnings)
    assert "during start-up (7 exits in a row; it keeps crashing: retrying every 30 s)" in warnings[-1]
    assert "keeps crashing" not in warnings[3] and "during start-up (4 exits in a row)" in warnings[3]
    assert log.read_text().count("restarted by the local stack's supervisor") == 7

    # once a start succeeds and the child stays ready STABLE_AFTER seconds, the back-off starts again at 1 s
    child.failures, child.ready_at = 6, now
    supervisor.check(now + 59)
    assert child.restart_at - (now + 59) == 30, "up 59 s of 60: still counts as crashing"
    child.restart_at, child.ready_at, child.failures = None, now, 6
    supervisor.check(now + 61)
    assert child.restart_at - (now + 61) == 1 and child.failures == 1


def test_a_paused_child_is_not_restarted(tmp_path):
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    child = SupervisedProcess("sleeper", _Handle(subprocess.Popen(command)), command, dict(os.environ),
                              f"http://127.0.0.1:{procs.free_port()}/ready", tmp_path / "s.log")  # fmt: skip
    supervisor = Supervisor([child])
    pid = child.process.pid
    supervisor.pause("sleeper")
    assert child.process.returncode is not None and _reaped(pid)
    for later in (10.0, 100.0, 1000.0):
        supervisor.check(time.monotonic() + later)
    assert child.process.pid == pid and child.restart_at is None, "a paused child stays stopped"
    supervisor.close()


# --------------------------------------------------------------------------------------------
# The real stack
# --------------------------------------------------------------------------------------------


def test_a_killed_model_server_is_reaped_logged_and_restarted_on_its_port(stack, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = stack.model_server
    port, pid, url = server.http_port, server.process.pid, str(server)
    _wait(lambda: _model_answers(stack), 30, "the model answers before the kill")
    assert stack.get("/readyz") == {"ready": True, "model_server": "ready", "model_url": stack.model_url}

    os.kill(pid, signal.SIGKILL)
    _wait(lambda: _reaped(pid), 3, f"model server {pid} reaped (no zombie)")
    # down (the back-off is 1 s, a start takes longer): degraded but ready, strict says 503
    down = requests.get(f"{stack.api_url}/readyz", timeout=10)
    assert down.status_code == 200
    assert down.json()["ready"] is True and down.json()["model_server"] == "unreachable"
    strict = requests.get(f"{stack.api_url}/readyz", params={"strict": "1"}, timeout=10)
    assert strict.status_code == 503
    assert strict.json()["ready"] is False and strict.json()["model_server"] in {"unreachable", "not_ready"}
    assert stack.get("/recommendations/196?k=5")["source"] == "fallback"

    _wait(lambda: server.process.pid != pid, 5, "the model server restarted")
    assert stack.model_server is server and server.http_port == port and str(server) == url
    _wait(lambda: requests.get(f"{stack.api_url}/readyz?strict=1", timeout=10).status_code == 200, 60,
          "the restarted model server ready")  # fmt: skip
    assert stack.get("/readyz")["model_server"] == "ready"
    answer = requests.post(server.predict_url, json={"instances": [{"user_id": 196, "k": 3}]}, timeout=10)
    assert answer.status_code == 200 and len(answer.json()["predictions"][0]["item_ids"]) == 3
    _wait(lambda: _model_answers(stack), 10, "the API uses the model again")

    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    expected = f"model server (pid {pid}) exited with code -9 (SIGKILL) after "
    assert any(line.startswith(expected) and str(server.log_path) in line and "in 1 s" in line for line in lines), lines
    assert "restarted by the local stack's supervisor" in server.log()


def test_a_killed_api_is_restarted_on_its_port(stack):
    pid, url = stack.api.process.pid, stack.api.url
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: _reaped(pid), 3, f"API {pid} reaped (no zombie)")
    _wait(lambda: procs.http_status(f"{url}/readyz") == 200, 60, "the restarted API ready on the same port")
    assert stack.api.process.pid != pid and stack.api_url == url
    _wait(lambda: _model_answers(stack), 10, "the restarted API uses the model")


def test_stop_model_server_is_not_undone_and_start_model_server_brings_it_back(stack):
    server = stack.model_server
    port, pid = server.http_port, server.process.pid
    stack.stop_model_server()
    assert _reaped(pid)
    # past the first restart's back-off and a few looks of the supervisor, which must leave it alone
    time.sleep(backoff_delay(1) + 5 * supervisor_module.POLL_INTERVAL)
    assert server.process.pid == pid and server.process.poll() is not None
    assert stack.get("/readyz")["model_server"] == "unreachable"
    assert stack.get("/recommendations/196?k=5")["source"] == "fallback"

    stack.start_model_server()
    assert server.process.pid != pid and server.process.poll() is None and server.http_port == port
    assert requests.get(f"{stack.api_url}/readyz?strict=true", timeout=10).status_code == 200
    _wait(lambda: _model_answers(stack), 10, "the API uses the model again")
    stack.start_model_server()  # running already: nothing to do
    assert stack.supervisor.running, "still supervised"


# --------------------------------------------------------------------------------------------
# python -m recsys_workshop.api and signals
# --------------------------------------------------------------------------------------------


class _Wrapper:
    """``python -m recsys_workshop.api --model-dir ...`` as a subprocess, its output in files."""

    def __init__(self, model_dir: Path, folder: Path):
        self.out, self.err = folder / "stdout.txt", folder / "stderr.txt"
        with open(self.out, "wb") as stdout, open(self.err, "wb") as stderr:
            command = [sys.executable, "-m", "recsys_workshop.api", "--model-dir", str(model_dir)]
            self.process = subprocess.Popen(command, stdout=stdout, stderr=stderr)

    def children(self) -> dict[str, tuple[str, int]]:
        """Waits for the start-up; ``{"model server": (url, pid), "API": (url, pid)}`` as printed."""

        def started_output():
            code = self.process.poll()
            assert code is None, f"the wrapper exited with code {code}:\n{procs.tail(self.err)}"
            text = self.out.read_text()
            return text if "supervised:" in text else None

        text = _wait(started_output, 150, "the stack started", interval=0.2)
        started = re.findall(r"^(model server|API): +(http://\S+) \(pid (\d+),", text, re.M)
        return {name: (url, int(pid)) for name, url, pid in started}


@pytest.fixture(scope="module")
def wrappers(model_dir, tmp_path_factory):
    """Two wrappers, started together (one start-up's wait for both tests), stopped for good at the end."""
    started = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            started[sig] = _Wrapper(model_dir, tmp_path_factory.mktemp(sig.name))
        yield started
    finally:
        procs.stop_processes([wrapper.process for wrapper in started.values()])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_wrapper_stops_every_child_on_a_signal_and_exits_0(wrappers, sig):
    wrapper = wrappers[sig]
    children = wrapper.children()
    (model_url, model_pid), (api_url, api_pid) = children["model server"], children["API"]
    assert procs.http_status(f"{api_url}/healthz") == 200 and procs.http_status(f"{model_url}/") is not None
    wrapper.process.send_signal(sig)
    assert wrapper.process.wait(timeout=supervisor_module.STOP_TIMEOUT + 10) == 0, procs.tail(wrapper.err)
    assert f"{sig.name}: the API and the model server are stopped" in wrapper.out.read_text()
    for pid in (api_pid, model_pid):
        assert not Path(f"/proc/{pid}").exists(), f"child {pid} survived the wrapper"
    assert procs.http_status(f"{api_url}/healthz") is None and procs.http_status(f"{model_url}/") is None
