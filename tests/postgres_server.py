"""A throwaway PostgreSQL server for the store tests, started from Debian's server binaries.

``initdb`` + ``pg_ctl`` in a fresh temporary folder, listening on 127.0.0.1 and a free port only, with
password (SCRAM) authentication for TCP and a random password, so the tests see the same kind of URL a
cluster's Secret holds. ``fsync`` is off: the tests kill clients, never the server, and a throwaway
server need not survive a power cut. PostgreSQL refuses to run as root, so as root the binaries run as the
``postgres`` system user (which owns the temporary folder); as any other user they run directly.

``RECSYS_TEST_DATABASE_URL`` points the tests at a server of your own instead (it must be allowed to
``CREATE DATABASE``); that server is never stopped or restarted by the tests.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from recsys_workshop.procs import free_port

ENV_URL = "RECSYS_TEST_DATABASE_URL"
ENV_REQUIRED = "POSTGRES_TEST_REQUIRED"
SUPERUSER = "recsys"
DATABASE = "recsys_test"
SYSTEM_USER = "postgres"  # the Debian package's account; used only when we run as root


class PostgresUnavailable(RuntimeError):
    """No server can be started here (no binaries, or no ``postgres`` user to run them as root)."""


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb`` and ``pg_ctl``."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found = [d for d in found if (d / "pg_ctl").is_file()]
    return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0, default=None)


class PostgresServer:
    """A server this process started (``managed``) or one given by URL; ``url`` names its test database."""

    def __init__(self, url: str, *, bindir: Path | None = None, root: Path | None = None, port: int = 0):
        self.url = url
        self.bindir, self.root, self.port = bindir, root, port
        self.managed = root is not None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", SYSTEM_USER, "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            raise RuntimeError(f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip()}\n{log}")
        return done

    def start(self) -> None:
        """Start the server (again) on its port and wait until it accepts connections."""
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c full_page_writes=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path),
                  "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients, shut down cleanly; ``immediate``: abort)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")


def _initdb(bindir: Path, root: Path) -> PostgresServer:
    """A new cluster in ``root`` (owned by the ``postgres`` user when we are root), not started yet."""
    if os.geteuid() == 0:
        import pwd

        try:
            account = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise PostgresUnavailable(f"running as root and no {SYSTEM_USER!r} user to run PostgreSQL as") from None
    password = secrets.token_hex(16)
    (root / "pwfile").write_text(password + "\n")
    if os.geteuid() == 0:
        for path in (root, root / "pwfile"):
            os.chown(path, account.pw_uid, account.pw_gid)
    port = free_port()
    url = f"postgresql+psycopg://{SUPERUSER}:{password}@127.0.0.1:{port}/{DATABASE}"
    server = PostgresServer(url, bindir=bindir, root=root, port=port)
    server._run(str(bindir / "initdb"), "-D", str(server.data_dir), "-U", SUPERUSER, f"--pwfile={root / 'pwfile'}",
                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync",
                timeout=120)
    return server


def create_database(url: str, name: str) -> str:
    """``CREATE DATABASE name`` on the server of ``url``; returns the URL of the new database."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return parsed.set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Drop the database of ``url`` (disconnecting its clients); connects to ``postgres`` to do it."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')


def wait_until_accepting(url: str, timeout: float = 30) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(dsn, connect_timeout=5).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """``$RECSYS_TEST_DATABASE_URL``'s server, or a new throwaway one (stopped and removed afterwards)."""
    if os.environ.get(ENV_URL):
        server = PostgresServer(os.environ[ENV_URL])
        wait_until_accepting(server.url)
        yield server
        return
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): "
                                  "install Debian's `postgresql` package or set " + ENV_URL)
    root = Path(tempfile.mkdtemp(prefix="recsys-postgres-"))
    server = None
    try:
        server = _initdb(bindir, root)
        server.start()
        admin = server.url.rsplit("/", 1)[0] + "/postgres"
        wait_until_accepting(admin)
        create_database(admin, DATABASE)
        yield server
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
