"""Private Postgres and Redis servers on loopback, for the CeleryExecutor end-to-end test.

Each server listens on a free 127.0.0.1 port, keeps its data under a directory the caller gives
(a pytest tmp dir), and is stopped on exit. The server process gets a parent-death signal
(`setpriv --pdeathsig`), so even a test process killed with SIGKILL leaves no server behind.

Postgres refuses to run as root: initdb and the postmaster run as the `postgres` user (created by
the Debian package). When that user cannot reach the given directory (pytest's
/tmp/pytest-of-root is 0700), the cluster goes to a private directory under /tmp instead, removed
on exit.

    ensure_debian_packages("postgresql", "redis-server")
    with Postgres(tmp_path / "pg") as pg, Redis(tmp_path / "redis") as redis:
        pg.sqlalchemy_url   # postgresql+psycopg2://airflow:airflow@127.0.0.1:PORT/airflow
        redis.url           # redis://127.0.0.1:PORT/0
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# Installed by `make test` (the `debian-packages` target) before the suite enters its loopback-only
# network namespace: the tests themselves never download anything.
DEBIAN_PACKAGES = {"postgresql": "initdb", "redis-server": "redis-server", "docker-compose": "docker-compose"}


def _postgres_bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    return Path(found[-1]).parent if found else None


def _missing(packages) -> list[str]:
    missing = []
    for package in packages:
        present = _postgres_bin_dir() is not None if package == "postgresql" else shutil.which(DEBIAN_PACKAGES[package])
        if not present:
            missing.append(package)
    return missing


def ensure_debian_packages(*packages: str) -> None:
    """Fail with the command to run when a Debian package the test needs is missing (`make test` installs them)."""
    missing = _missing(packages or DEBIAN_PACKAGES)
    if missing:
        raise RuntimeError(f"missing Debian packages {missing}: `make test` installs them, or run "
                           f"`apt-get install -y {' '.join(missing)}`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{_tail(log)}")
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout} s:\n{_tail(log)}")


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _stop(process: subprocess.Popen | None, sig: int, timeout: float = 20) -> None:
    if process is None or process.poll() is not None:
        return
    for s in (sig, signal.SIGKILL):
        try:
            os.killpg(process.pid, s)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


class _Service:
    """A server started on entry (stopped again if starting fails) and stopped on exit."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Postgres(_Service):
    """A throwaway Postgres cluster: database `airflow` owned by user `airflow` (password `airflow`)."""

    user = "airflow"
    password = "airflow"
    database = "airflow"

    def __init__(self, base_dir: Path, port: int | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self._private_dir: Path | None = None
        bin_dir = _postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError("Postgres is not installed: call ensure_debian_packages() first")
        self.bin_dir = bin_dir

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    @property
    def celery_result_backend(self) -> str:
        return f"db+postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def _as_postgres(self) -> list[str]:
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]

    def _reachable_by_postgres(self, directory: Path) -> bool:
        check = subprocess.run([*self._as_postgres(), "test", "-w", str(directory), "-a", "-x", str(directory)],
                               capture_output=True)
        return check.returncode == 0

    def start(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        pg = pwd.getpwnam("postgres")
        if os.geteuid() == 0:
            os.chown(self.base_dir, pg.pw_uid, pg.pw_gid)
        if self._reachable_by_postgres(self.base_dir):
            root = self.base_dir
        else:
            self._private_dir = Path(tempfile.mkdtemp(prefix="hn-test-pg-"))
            os.chown(self._private_dir, pg.pw_uid, pg.pw_gid)
            root = self._private_dir
            (self.base_dir / "WHERE").write_text(f"cluster in {root} (removed on exit)\n")
        self.data_dir = root / "data"
        self.log = root / "postgres.log"
        pwfile = root / "pwfile"
        pwfile.write_text(self.password + "\n")
        os.chown(pwfile, pg.pw_uid, pg.pw_gid)
        init = subprocess.run(
            [*self._as_postgres(), str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
             "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            capture_output=True, text=True, cwd=root, timeout=120)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        pwfile.unlink()
        log = open(self.log, "ab")
        settings = {
            "listen_addresses": "127.0.0.1", "port": str(self.port), "unix_socket_directories": "",
            "max_connections": "300", "shared_buffers": "64MB",
            # a throwaway cluster: durability buys nothing here
            "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
        }
        args = [*self._as_postgres(), "--pdeathsig", "SIGINT", str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
        log.close()
        _wait(self._ready, 60, "postgres", self.process, self.log)
        self._psql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'")
        self._psql(f"CREATE DATABASE {self.database} OWNER {self.user}")

    def _psql(self, sql: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(self.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
             "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
            env={**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "5"},
            capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {result.stderr}")
        return result

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        return self._psql("SELECT 1", check=False).returncode == 0

    def stop(self) -> None:
        _stop(self.process, signal.SIGINT)  # SIGINT: fast shutdown
        self.process = None
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None


class Redis(_Service):
    """A throwaway Redis server: no persistence, loopback only."""

    def __init__(self, base_dir: Path, port: int | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.base_dir / "redis.log"
        log = open(self.log, "ab")
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            ["setpriv", "--pdeathsig", "SIGTERM", server, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.base_dir), "--daemonize", "no",
             "--protected-mode", "yes", "--databases", "4", "--loglevel", "notice"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.base_dir, start_new_session=True)
        log.close()
        _wait(self._ready, 30, "redis-server", self.process, self.log)

    def ping(self) -> bool:
        return self._ready()

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        _stop(self.process, signal.SIGTERM)
        self.process = None
