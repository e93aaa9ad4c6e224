"""The process helpers shared by the local launchers: free ports, readiness waits, stopping for good."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from loopback_http import serve

from recsys_workshop import procs

pytestmark = pytest.mark.unit


def _python(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], **kwargs)


def _wait_for_line(path: Path, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path}"
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    """True when ``pid`` is neither running nor a zombie (reaped)."""
    return not Path(f"/proc/{pid}").exists()


def test_free_ports_are_free_and_distinct():
    ports = procs.free_ports(5)
    assert len(set(ports)) == 5
    for port in ports + [procs.free_port()]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))  # raises if something holds it
            sock.listen()


def test_log_file_and_tail(tmp_path):
    created = procs.log_file(None, "procs-test-")
    try:
        assert created.is_file() and created.name.startswith("procs-test-") and created.read_text() == ""
    finally:
        created.unlink()
    assert procs.log_file(tmp_path / "x.log", "ignored") == tmp_path / "x.log"
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert procs.tail(log, lines=3) == "line 97\nline 98\nline 99"
    assert procs.tail(log, lines=3, max_chars=7) == "line 99"
    assert procs.tail(tmp_path / "missing.log") == "(no log)"


def test_wait_ready_returns_once_the_url_answers_200():
    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/ready" else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    with serve(Ready, "") as server:
        procs.wait_ready(server.url + "ready", timeout=10)
        assert procs.http_status(server.url + "ready") == 200
        assert procs.http_get(server.url + "other") == (503, b"")
        with pytest.raises(TimeoutError):
            procs.wait_ready(server.url + "other", timeout=0.5)


def test_wait_ready_times_out_with_the_log_tail(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("starting\nstill loading the model\n")
    url = f"http://127.0.0.1:{procs.free_port()}/ready"
    started = time.monotonic()
    with pytest.raises(TimeoutError) as error:
        procs.wait_ready(url, timeout=0.6, log_path=log, name="the test server")
    assert time.monotonic() - started < 5
    assert "the test server" in str(error.value) and "not ready after 0.6 s" in str(error.value)
    assert "still loading the model" in str(error.value), "the message ends with the log's tail"


def test_wait_ready_notices_a_process_that_exited(tmp_path):
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = _python("import sys; print('cannot bind the port'); sys.exit(3)", stdout=out, stderr=out)
    url = f"http://127.0.0.1:{procs.free_port()}/ready"
    started = time.monotonic()
    with pytest.raises(procs.ProcessExited) as error:
        procs.wait_ready(url, timeout=60, process=process, log_path=log, name="the test server")
    assert time.monotonic() - started < 30, "it fails as soon as the process is gone, not at the timeout"
    assert "the test server exited with code 3" in str(error.value)
    assert "cannot bind the port" in str(error.value)


def test_stop_process_stops_a_polite_process_with_sigterm():
    process = _python("import time; time.sleep(60)")
    assert procs.stop_process(process, timeout=10) == -signal.SIGTERM
    assert _gone(process.pid)
    assert procs.stop_process(process) == -signal.SIGTERM, "stopping a stopped process is harmless"


def test_stop_process_escalates_to_sigkill_and_reaps(tmp_path):
    marker = tmp_path / "child.log"
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(marker)!r}, 'w').write(f'ready {{child.pid}}')\n"
        "time.sleep(60)\n"
    )
    process = _python(code, start_new_session=True)
    _wait_for_line(marker, "ready")
    grandchild = int(marker.read_text().split()[1])
    started = time.monotonic()
    assert procs.stop_process(process, timeout=0.5) == -signal.SIGKILL, "SIGTERM ignored: SIGKILL"
    assert time.monotonic() - started < 10
    assert _gone(process.pid), "reaped: no zombie left"
    deadline = time.monotonic() + 10
    while True:  # the grandchild (reparented to init) is killed with the process group
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        state = Path(f"/proc/{grandchild}/stat").read_text().split()[2] if Path(f"/proc/{grandchild}").exists() else "X"
        if state == "Z":
            break  # killed, waiting for init to reap it
        assert time.monotonic() < deadline, "the process group was not killed"
        time.sleep(0.05)


def test_stop_processes_shares_one_deadline(tmp_path):
    markers = [tmp_path / f"{i}.ready" for i in range(3)]
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "open(sys.argv[1], 'w').write('ready')\n"
        "time.sleep(60)\n"
    )
    stubborn = [subprocess.Popen([sys.executable, "-c", code, str(marker)]) for marker in markers]
    for marker in markers:
        _wait_for_line(marker, "ready")  # SIGINT is ignored from now on
    started = time.monotonic()
    procs.stop_processes(stubborn, timeout=1.0, sig=signal.SIGINT)
    assert time.monotonic() - started < 5, "one deadline for all, not one each"
    assert [p.returncode for p in stubborn] == [-signal.SIGKILL] * 3
    assert all(_gone(p.pid) for p in stubborn)
