"""Drive the real Airflow CLI and the project's CLIs as subprocesses, as a user would.

Milvus Lite lets one process hold a database, so the test process itself never opens it: it reads
the store through `python -m include.ops.status --json` and `python -m include.ops.search --json`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from include.config import PROJECT_ROOT

BIN = Path(sys.executable).parent


@dataclass
class DagRunResult:
    returncode: int
    log: str

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and "state=success" in self.log

    def lines(self, needle: str) -> list[str]:
        return [line for line in self.log.splitlines() if needle in line]

    def task_instance_seconds(self) -> dict[tuple[str, str], float]:
        """Seconds per task instance (task id, map index), from `Task started` to `[DAG TEST] end task`.

        `airflow dags test` runs tasks one after the other; the time between its `starting` line and the
        task's `Task started` is its own start-up (~4 s before the first task), not the task's.
        """
        stamp = re.compile(r"^(\S+Z) .*(\[DAG TEST\] (starting|end task) task_id=(\S+) map_index=(\S+)|Task started)")
        started: dict[tuple[str, str], datetime] = {}
        current: tuple[str, str] | None = None
        seconds: dict[tuple[str, str], float] = {}
        for line in self.log.splitlines():
            match = stamp.match(line)
            if not match:
                continue
            when = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
            if match.group(2) == "Task started":
                if current is not None:
                    started[current] = when
                continue
            key = (match.group(4), match.group(5))
            if match.group(3) == "starting":
                current = key
                started[key] = when
            elif key in started:
                seconds[key] = seconds.get(key, 0.0) + (when - started.pop(key)).total_seconds()
        return seconds

    def task_seconds(self) -> dict[str, float]:
        """Seconds per task id, its mapped instances summed."""
        totals: dict[str, float] = {}
        for (task_id, _), seconds in self.task_instance_seconds().items():
            totals[task_id] = totals.get(task_id, 0.0) + seconds
        return totals

    @property
    def run_id(self) -> str:
        """The run `airflow dags test` made (it names it in its task lines)."""
        match = re.search(r"""run_id['"]?\s*[=:]\s*['"]?((?:manual|scheduled|backfill)__[^'"\s,)>]+)""", self.log)
        if not match:
            raise AssertionError(f"no run id in the log:\n{self.log[-2000:]}")
        return match.group(1)


def simple_auth_settings(home: Path, user: str, role: str, password: str) -> dict[str, str]:
    """Airflow's simple auth manager with one user: the settings, its password in a file under `home`."""
    home.mkdir(parents=True, exist_ok=True)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({user: password}))
    return {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{user}:{role}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords)}


@dataclass
class AirflowEnv:
    home: Path
    data_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "HN_INGEST_DATA_DIR": str(self.data_dir),
            "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(PROJECT_ROOT)])),
            "DO_NOT_TRACK": "1",
        })
        env.update(self.extra_env)
        return env

    def run(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
        for _ in range(3):
            result = subprocess.run(list(args), env=self.env(), cwd=PROJECT_ROOT, capture_output=True, text=True,
                                    timeout=timeout)
            # A CLI call racing a running scheduler for the SQLite metadata DB: the harness's contention, not
            # the pipeline's (production runs Postgres), so try again.
            if result.returncode == 0 or "database is locked" not in result.stderr:
                break
            time.sleep(2)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
        return result

    def retried_tasks(self, result: DagRunResult, dag_id: str = "hn_ingest") -> list[str]:
        """The task id of each try of `result`'s run that failed and was retried, in the order the task
        instances started: what the metadata DB recorded (each task instance's try number), not what a
        log line says."""
        rows = self.query("SELECT task_id, try_number FROM task_instance WHERE dag_id = :dag AND run_id = :run "
                          "AND try_number > 1 ORDER BY start_date", dag=dag_id, run=result.run_id)
        return [task_id for task_id, tries in rows for _ in range(int(tries) - 1)]

    def metadata_db(self) -> str:
        """The metadata DB's SQLAlchemy URL: Postgres when the test set one, else the home's SQLite file."""
        return self.extra_env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or f"sqlite:///{self.home / 'airflow.db'}"

    def query(self, sql: str, **params) -> list[tuple]:
        """Rows of a read-only query on the metadata DB (what the scheduler recorded, not what a log says)."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.metadata_db())
        try:
            with engine.connect() as db:
                return [tuple(row) for row in db.execute(text(sql), params)]
        finally:
            engine.dispose()

    def airflow(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "airflow"), *args, **kwargs)

    def migrate(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.run(str(BIN / "airflow"), "db", "migrate")
        self.run(str(BIN / "airflow"), "pools", "set", "milvus_writer", "1", "hn_ingest writes to Milvus")

    def dags_test(self, conf: dict | None = None, timeout: float = 1200, dag_id: str = "hn_ingest") -> DagRunResult:
        args = [str(BIN / "airflow"), "dags", "test", dag_id]
        if conf:
            args += ["-c", json.dumps(conf)]
        result = self.run(*args, timeout=timeout, check=False)
        return DagRunResult(result.returncode, result.stdout + result.stderr)

    def status(self, chunks: bool = False) -> dict:
        """`python -m include.ops.status --json` (with every chunk's text when `chunks`)."""
        args = ["--json", "--all", "--chunks"] if chunks else ["--json", "--all"]
        return json.loads(self.run(str(BIN / "python"), "-m", "include.ops.status", *args).stdout)

    def search(self, query: str, k: int = 5, *options: str) -> list[dict]:
        """The stories `python -m include.ops.search --json` finds, best first (options: `--mode text`, ...)."""
        out = self.run(str(BIN / "python"), "-m", "include.ops.search", query, "-k", str(k), *options, "--json").stdout
        return json.loads(out.strip().splitlines()[-1])["stories"]


class Stack:
    """What every running Airflow stack of the tests offers: its runs, waiting, and its logs."""

    env: AirflowEnv

    def runs(self, dag_id: str = "hn_ingest") -> list[dict]:
        """The DAG's runs, each with a `run_type` taken from its run id (`scheduled__...`)."""
        out = self.env.run(str(BIN / "airflow"), "dags", "list-runs", dag_id, "-o", "json", check=False).stdout
        listing = next((line for line in out.splitlines() if line.startswith("[") and line.rstrip().endswith("]")), "[]")
        runs = json.loads(listing)
        for run in runs:
            run["run_type"] = run["run_id"].split("__")[0]
        return runs

    def wait_for(self, predicate, timeout: float, what: str, poll: float = 3):
        """Poll `predicate` until it returns something truthy; fail with the stack's logs on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(poll)
        raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")

    def logs(self) -> str:
        raise NotImplementedError


class AirflowStack(Stack):
    """The real scheduler path: api-server, scheduler (LocalExecutor), dag-processor and triggerer processes."""

    def __init__(self, env: AirflowEnv, components: tuple[str, ...] | None = None) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.env = env
        env.extra_env.update({
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": "hn-ingest-test-secret-0123456789abcdef",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",  # as `make scheduler` sets it
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
        })
        self.processes: dict[str, subprocess.Popen] = {}
        self.components = components or tuple(self.COMMANDS)

    COMMANDS = {"api-server": ["api-server"], "scheduler": ["scheduler"], "dag-processor": ["dag-processor"],
                "triggerer": ["triggerer"]}

    def start(self, name: str) -> None:
        logs = self.env.home / "stack-logs"
        logs.mkdir(parents=True, exist_ok=True)
        args = self.COMMANDS[name] + (["--port", str(self.port)] if name == "api-server" else [])
        log = open(logs / f"{name}.log", "a")
        # Own process group each: the scheduler's children (serve-logs, workers, tasks) stop with it.
        self.processes[name] = subprocess.Popen([str(BIN / "airflow"), *args], env=self.env.env(), cwd=PROJECT_ROOT,
                                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for_api(self, timeout: float = 180) -> str:
        """Wait until the api-server answers its health check; its base URL."""
        import requests

        def healthy() -> bool:
            try:
                return requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).status_code == 200
            except requests.RequestException:  # refused, or accepted but not answering yet
                return False

        self.wait_for(healthy, timeout, "the api-server")
        return self.base_url

    def login(self, user: str, password: str) -> str:
        """A bearer token from `POST /auth/token`: for the API, and as the UI's session cookie."""
        import requests

        answer = requests.post(f"{self.base_url}/auth/token", json={"username": user, "password": password}, timeout=30)
        assert answer.status_code in (200, 201), answer.text
        return answer.json()["access_token"]

    def kill(self, name: str) -> None:
        """SIGKILL a component and everything it started: a crash, not a shutdown."""
        process = self.processes.pop(name)
        _signal_group(process, signal.SIGKILL)
        process.wait()

    def __enter__(self) -> AirflowStack:
        for name in self.components:
            self.start(name)
        return self

    def __exit__(self, *exc) -> None:
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process, signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join((self.env.home / "stack-logs" / f"{n}.log").read_text()[-3000:] for n in self.components)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
