"""Infrastructure faults in real `airflow dags test hn_ingest` runs: the HN API down, the Milvus Lite
directory locked by another process during the write, the data directory read-only.

Each fault fails a task; Airflow's retry (10 s, then 20 s) must recover it, and the run must end with
exactly the rows of a clean run over the same replay: same ids, same chunks, same text.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.airflow_cli import BIN, AirflowEnv, DagRunResult
from tests.ci import unavailable
from tests.invariants import assert_every_story_accounted_for, assert_no_duplicates, assert_stories_whole, chunk_rows
from tests.replay_server import ReplayServer, load_corpus, send

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def replay(require_corpus):
    replay = ReplayServer()
    load_corpus(replay, url_stories=3, text_posts=1, dead=0, deleted=0)
    with replay:
        yield replay


@pytest.fixture(scope="module")
def clean(replay, airflow_home, tmp_path_factory) -> dict:
    env = AirflowEnv(airflow_home, tmp_path_factory.mktemp("clean-data"), replay.connection_env())
    run = env.dags_test()
    assert run.succeeded, run.log[-3000:]
    return env.status(chunks=True)


def assert_same_rows_as_clean(env: AirflowEnv, clean: dict, replay: ReplayServer) -> None:
    final = env.status(chunks=True)
    assert_no_duplicates(final)
    assert_stories_whole(final)
    assert_every_story_accounted_for(final, {s["id"] for s in replay.live_stories()})
    assert chunk_rows(final) == chunk_rows(clean)


def test_hn_api_errors_are_retried_and_a_down_api_fails_the_task_until_it_returns(replay, clean, airflow_home,
                                                                                  tmp_path):
    served = {"newstories": 0, "item": 0}
    default = replay.routes.pop("/v0/newstories.json", None)
    assert default is None
    story_id = next(iter(replay.items))

    def newstories(request):
        served["newstories"] += 1
        # 5 errors: the 3 attempts of the first try, then 2 of the second, which then succeeds.
        if served["newstories"] <= 5:
            return send(request, 500, b"upstream error", "text/plain")
        replay.serve_default(request)

    def item_truncated_once(request):
        served["item"] += 1
        if served["item"] == 1:
            return send(request, 200, json.dumps(replay.items[story_id])[:40].encode(), "application/json")
        replay.serve_default(request)

    replay.routes["/v0/newstories.json"] = newstories
    replay.routes[f"/v0/item/{story_id}.json"] = item_truncated_once
    env = AirflowEnv(airflow_home, tmp_path / "data", replay.connection_env())
    try:
        run = env.dags_test()
    finally:
        del replay.routes["/v0/newstories.json"], replay.routes[f"/v0/item/{story_id}.json"]
    assert run.succeeded, run.log[-3000:]
    assert "Hacker News API unavailable at" in run.log and "HTTP 500" in run.log
    assert env.retried_tasks(run) == ["discover_stories"]
    assert served["newstories"] == 6 and served["item"] >= 2
    assert_same_rows_as_clean(env, clean, replay)


# Opens the database as Milvus Lite does (an flock on its LOCK file) once the batch is extracted, so
# that the write task finds it taken; holds it for argv[2] seconds.
HOLDER = """
import sys, time
from pathlib import Path
from pymilvus import MilvusClient
data, hold = Path(sys.argv[1]), float(sys.argv[2])
while not list(data.glob("staging/*/batch-*[0-9].json")):  # the extract output, not discover's .threads.json
    time.sleep(0.05)
client = MilvusClient(str(data / "milvus.db"))
print("holding", flush=True)
time.sleep(hold)
client.close()
"""


def test_a_database_locked_during_the_write_fails_the_task_and_the_retry_recovers(replay, clean, airflow_home,
                                                                                  tmp_path):
    data = tmp_path / "data"
    milvus = {"conn_type": "milvus", "host": str(data / "milvus.db"), "extra": {"lock_timeout": 3}}
    env = AirflowEnv(airflow_home, data, {**replay.connection_env(), "AIRFLOW_CONN_MILVUS_DEFAULT": json.dumps(milvus)})
    holder = subprocess.Popen([str(BIN / "python"), "-c", HOLDER, str(data), "12"], env=env.env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        run = env.dags_test()
    finally:
        holder.kill()
        holder_said = holder.communicate()[0]
    assert "holding" in holder_said
    assert run.succeeded, run.log[-3000:]
    assert "locked by another process" in run.log
    assert env.retried_tasks(run) == ["write_batch"]
    assert_same_rows_as_clean(env, clean, replay)


def test_a_read_only_data_directory_fails_clearly_and_the_retry_recovers(replay, clean, airflow_home, tmp_path):
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        unavailable("needs a mount namespace (root) to make the directory read-only for real")
    data = tmp_path / "data"
    env = AirflowEnv(airflow_home, data, replay.connection_env())
    first = env.dags_test({"max_stories": 1})
    assert first.succeeded, first.log[-3000:]
    # The rest of the stories arrive while the directory is read-only (a disk remounted ro, a full
    # volume): a real read-only bind mount, seen only by this run's processes.
    script = (f"mount --bind {data} {data} && mount -o remount,ro,bind {data} {data} "
              f"&& exec {BIN / 'airflow'} dags test hn_ingest")
    process = subprocess.Popen(["unshare", "-m", "sh", "-c", script], env=env.env(), cwd=Path.cwd(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(process.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while not any("not writable" in line for line in log) and time.monotonic() < deadline:
        time.sleep(0.2)
    # The operator fixes the disk: the mount goes away, and the next retry must pick the run up.
    subprocess.run(["nsenter", "-t", str(process.pid), "-m", "umount", str(data)], check=True)
    process.wait(timeout=300)
    reader.join(timeout=10)
    run = DagRunResult(process.returncode, "".join(log))
    reasons = [line for line in log if "MilvusUnavailable:" in line]
    assert reasons and f"cannot open Milvus Lite database {data / 'milvus.db'}: its directory is not writable " \
        "(Read-only file system" in reasons[0], reasons
    assert run.succeeded, run.log[-3000:]
    assert env.retried_tasks(run) and set(env.retried_tasks(run)) == {"discover_stories"}
    assert_same_rows_as_clean(env, clean, replay)
