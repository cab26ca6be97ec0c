"""The CeleryExecutor path: api-server, scheduler, dag-processor and Celery workers, as separate "hosts".

Metadata DB and Celery result backend on a private Postgres, broker on a private Redis (tests/services.py).
Each worker runs in its own mount, UTS and PID namespace (`unshare --mount --uts --pid`):

- its hostname is its name (`worker-1`), and `[core] hostname_callable = socket.gethostname`, so each task
  instance's `hostname` in the metadata DB says which worker ran it (no DNS lookup either);
- `HN_INGEST_DATA_DIR` is its own directory (`worker_dirs[name]`), and every *other* worker's directory is
  covered by an empty read-only tmpfs: a worker sees its own data and the shared paths (AIRFLOW_HOME,
  a shared staging directory, the project), never another worker's data. The test process, in the host
  namespace, sees every directory. The namespaces die with their last process: nothing to unmount;
- kill("worker-1") SIGKILLs the namespace's init, so the kernel kills every process of that "host", the
  running task processes and anything they left in the background (an embedding service) included.

    with Postgres(tmp / "pg") as pg, Redis(tmp / "redis") as redis:
        env = AirflowEnv(tmp / "home", tmp / "data")
        stack = CeleryStack(env, pg, redis, {"worker-1": tmp / "w1", "worker-2": tmp / "w2"})
        env.migrate()                      # after CeleryStack(): it points the env at Postgres
        with stack:                        # starts api-server, scheduler, dag-processor, worker-1, worker-2
            stack.kill("worker-1")         # SIGKILL every process of that worker's namespace: a host dying
            stack.task_instances(dag_id, run_id)   # state, try_number, hostname per task instance

A worker killed mid-task is noticed through the task's missing heartbeats: after
`[scheduler] task_instance_heartbeat_timeout` (HEARTBEAT_TIMEOUT here, default 300 s) the scheduler fails
that try ("Detected a task instance without a heartbeat"), the task goes up_for_retry (a try is spent,
try_number 2) and runs again on a live worker after its retry_delay; with no retries left the task fails.
Measured with HEARTBEAT_TIMEOUT 20 and retry_delay 5 s: up_for_retry 21-23 s after the kill, running on
the other worker 30-33 s after it. Celery itself never redelivers the killed task's message in a test's
lifetime (Redis visibility_timeout is 24 h; do not lower it below the longest task, or a running task is
redelivered and started twice).

The run's parallelism (AirflowEnv: 4) should not exceed the workers' slots (2 workers x concurrency 2):
a task left in `queued` longer than TASK_QUEUED_TIMEOUT is re-queued, and its workload token expires then.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import time
from pathlib import Path

from include.config import PROJECT_ROOT
from tests.airflow_cli import BIN, AirflowEnv, Stack, _signal_group
from tests.services import Postgres, Redis, free_port

# Seconds without a task heartbeat before the scheduler fails the try. Task supervisors heartbeat every 5 s
# ([workers] min_heartbeat_interval), so 20 leaves three missed beats; raise it on a loaded machine.
HEARTBEAT_TIMEOUT = 20
JWT_SECRET = "hn-ingest-celery-test-secret-" + "0123456789abcdef" * 3  # >= 64 bytes: no InsecureKeyLengthWarning


class CeleryStack(Stack):
    """api-server, scheduler, dag-processor, triggerer and one Celery worker per entry of `worker_dirs`."""

    SERVICES = {"api-server": ["api-server"], "scheduler": ["scheduler"], "dag-processor": ["dag-processor"],
                "triggerer": ["triggerer"]}

    def __init__(self, env: AirflowEnv, postgres: Postgres, redis: Redis, worker_dirs: dict[str, Path],
                 concurrency: int = 2, queues: str = "default", heartbeat_timeout: int = HEARTBEAT_TIMEOUT) -> None:
        self.env = env
        self.postgres = postgres
        self.redis = redis
        self.worker_dirs = {name: Path(path) for name, path in worker_dirs.items()}
        self.concurrency = concurrency
        self.queues = queues
        self.port = free_port()
        self.log_ports = {name: free_port() for name in self.worker_dirs}
        env.extra_env.update({
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.sqlalchemy_url,
            "AIRFLOW__CELERY__BROKER_URL": redis.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": postgres.celery_result_backend,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "socket.gethostname",
            # a dead worker's task: failed (up_for_retry) after this many seconds without heartbeat
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(heartbeat_timeout),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            # a task message a dead worker had taken but not started: re-queued after this long in `queued`
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",  # as `make scheduler` and compose set it
            # one message per free slot: a worker does not hoard tasks the other could run
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
        })
        for path in self.worker_dirs.values():
            path.mkdir(parents=True, exist_ok=True)  # also the mount points that hide it from the others
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def components(self) -> list[str]:
        return [*self.SERVICES, *self.worker_dirs]

    def _log(self, name: str):
        logs = self.env.home / "stack-logs"
        logs.mkdir(parents=True, exist_ok=True)
        return open(logs / f"{name}.log", "a")

    def start(self, name: str) -> None:
        if name in self.processes and self.processes[name].poll() is None:
            raise RuntimeError(f"{name} is already running")
        log = self._log(name)
        if name in self.SERVICES:
            args = [str(BIN / "airflow"), *self.SERVICES[name]]
            if name == "api-server":
                args += ["--host", "127.0.0.1", "--port", str(self.port)]
            # SIGTERM if the test process dies, so a killed pytest leaves no scheduler behind
            args = ["setpriv", "--pdeathsig", "SIGTERM", *args]
            env = self.env.env()
        else:
            args, env = self._worker_command(name)
        # Own process group each: kill() takes the component and every process it started.
        self.processes[name] = subprocess.Popen(args, env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)
        log.close()

    def _worker_command(self, name: str) -> tuple[list[str], dict[str, str]]:
        env = self.env.env()
        env.update({
            "HN_INGEST_DATA_DIR": str(self.worker_dirs[name]),
            # the host's own runtime directory (embedding service socket, key, lock)
            "HN_INGEST_RUNTIME_DIR": str(self.worker_dirs[name] / "run"),
            "HN_TEST_WORKER": name,
            # each worker's log server on its own port (they share the loopback interface)
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.log_ports[name]),
        })
        hide = [path for other, path in self.worker_dirs.items() if other != name]
        script = ["set -e", f"hostname {shlex.quote(name)}"]
        script += [f"mount -t tmpfs -o ro,size=4k,mode=0555 hidden-{shlex.quote(name)} {shlex.quote(str(p))}" for p in hide]
        worker = " ".join(shlex.quote(a) for a in [
            str(BIN / "airflow"), "celery", "worker", "--celery-hostname", f"{name}@%h",
            "--concurrency", str(self.concurrency), "--queues", self.queues,
            "--pid", str(self.env.home / f"{name}.pid"),
        ])
        # bash stays PID 1 of the worker's PID namespace (it reaps orphans, and as namespace init it ignores
        # the SIGTERM that stop() sends the group, waiting for the worker's warm shutdown instead). Killing it
        # makes the kernel SIGKILL every process in the namespace, the task processes included: the Task SDK
        # puts each task in a process group of its own, so killpg on the worker alone would leave them running.
        script += [f"{worker} &", "wait $!"]
        args = ["setpriv", "--pdeathsig", "SIGKILL",  # the test process dies -> unshare dies -> the namespace dies
                "unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child=SIGKILL", "--mount-proc",
                "--propagation", "private", "bash", "-c", "\n".join(script)]
        return args, env

    def kill(self, name: str) -> None:
        """SIGKILL a component and everything it started: a crash (for a worker: its host dying)."""
        process = self.processes.pop(name)
        _signal_group(process, signal.SIGKILL)
        process.wait()

    def stop(self, name: str, timeout: float = 60) -> None:
        """SIGTERM a component (a worker finishes its running tasks first: Celery's warm shutdown)."""
        process = self.processes.pop(name)
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> CeleryStack:
        try:
            for name in self.components:
                self.start(name)
            self.wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        processes = list(self.processes.values())
        self.processes.clear()
        for process in processes:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process, signal.SIGKILL)  # stragglers: task processes, pool children
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def wait_ready(self, timeout: float = 120) -> None:
        """The api-server answers and every worker has joined the broker."""
        import urllib.request

        def api_up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=2):
                    return True
            except OSError:
                return False

        self.wait_for(api_up, timeout, "the api-server", poll=1)
        self.wait_for(lambda: set(self.worker_dirs) <= set(self.live_workers()), timeout, "the workers", poll=2)

    def live_workers(self) -> list[str]:
        """Worker names that answer a Celery ping (`worker-1`, ...)."""
        for name, process in self.processes.items():
            if process.poll() is not None and name in self.worker_dirs:
                raise AssertionError(f"{name} exited with {process.returncode}\n{self.logs([name])}")
        out = self.env.run(str(BIN / "python"), "-c", _PING, check=False, timeout=60).stdout
        lines = [line for line in out.splitlines() if line.startswith("[")]
        return sorted(w.split("@")[0] for w in json.loads(lines[-1])) if lines else []

    def task_instances(self, dag_id: str, run_id: str = "") -> list[dict]:
        """Task instances of a run (every run without `run_id`) from the metadata DB: run_id, task_id,
        map_index, state, try_number, hostname."""
        out = self.env.run(str(BIN / "python"), "-c", _TASK_INSTANCES, dag_id, run_id, timeout=60).stdout
        return json.loads(out.strip().splitlines()[-1])

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        out = self.env.run(str(BIN / "airflow"), "dags", "state", dag_id, run_id, check=False, timeout=60).stdout
        lines = out.strip().splitlines()
        return lines[-1].strip() if lines else None

    def logs(self, names: list[str] | None = None, chars: int = 3000) -> str:
        parts = []
        for name in names or self.components:
            path = self.env.home / "stack-logs" / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)


# Run by the project's Python with the stack's environment, so the test process needs no Airflow config.
_PING = """
import json
from airflow.providers.celery.executors.celery_executor import app
replies = app.control.ping(timeout=2.0) or []
print(json.dumps([name for reply in replies for name in reply]))
"""

_TASK_INSTANCES = """
import json, sys
from airflow.models.taskinstance import TaskInstance as TI
from airflow.utils.session import create_session
with create_session() as session:
    query = session.query(TI.run_id, TI.task_id, TI.map_index, TI.state, TI.try_number, TI.hostname).filter(
        TI.dag_id == sys.argv[1])
    if sys.argv[2]:
        query = query.filter(TI.run_id == sys.argv[2])
    rows = query.order_by(TI.run_id, TI.task_id, TI.map_index).all()
print(json.dumps([dict(run_id=r, task_id=t, map_index=m, state=s and str(s.value if hasattr(s, "value") else s),
                       try_number=n, hostname=h) for r, t, m, s, n, h in rows]))
"""
