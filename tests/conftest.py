"""Shared fixtures: the network guard, the corpus-fed replay, and a throwaway Airflow home."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests import corpus
from tests.airflow_cli import AirflowEnv
from tests.ci import unavailable, under_ci
from tests.milvus_server import MilvusLiteServer, MilvusServer, drop_all_collections

TRIPWIRE = Path(__file__).parent / "tripwire"

# Embedding services started by the tests' task processes exit soon after the last request.
os.environ.setdefault("HN_INGEST_EMBEDDING_SERVICE_IDLE", "30")


@pytest.fixture(scope="session", autouse=True)
def network_guard(tmp_path_factory):
    """Refuse and record any connection off the machine, in this process and in every subprocess."""
    log = tmp_path_factory.mktemp("tripwire") / "blocked.log"
    os.environ["HN_TRIPWIRE_LOG"] = str(log)
    if str(TRIPWIRE) not in os.environ.get("PYTHONPATH", ""):
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TRIPWIRE), os.environ.get("PYTHONPATH")]))
    import importlib.util

    spec = importlib.util.spec_from_file_location("hn_tripwire", TRIPWIRE / "sitecustomize.py")
    module = importlib.util.module_from_spec(spec)
    if not getattr(socket.socket.connect, "__name__", "") == "guarded":
        spec.loader.exec_module(module)
    yield log
    if log.exists() and log.read_text().strip():
        pytest.fail(f"traffic off the machine was attempted during the tests:\n{log.read_text()[:4000]}")


@pytest.fixture(scope="session")
def require_corpus():
    if not corpus.corpus_available():
        unavailable(f"corpus not found at {corpus.corpus_dir()}")


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    """One migrated Airflow metadata DB for the session (runs get unique ids)."""
    home = tmp_path_factory.mktemp("airflow-home")
    AirflowEnv(home, home / "unused-data").migrate()
    return home


@pytest.fixture
def airflow(airflow_home, tmp_path) -> AirflowEnv:
    """An Airflow environment with its own Milvus Lite database."""
    return AirflowEnv(airflow_home, tmp_path / "data")


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """A real Milvus 2.3.5 standalone server (its own venv, installed by `make test`), for the session."""
    with MilvusServer(tmp_path_factory.mktemp("milvus-server")) as server:
        yield server


@pytest.fixture
def fresh_milvus_server(milvus_server):
    """The session's Milvus server without the project's collections."""
    drop_all_collections(milvus_server.uri)
    return milvus_server


@pytest.fixture(scope="session")
def milvus_lite_server(tmp_path_factory):
    """`milvus-lite server`: Milvus Lite served over gRPC, as the README suggests for concurrent access."""
    with MilvusLiteServer(tmp_path_factory.mktemp("milvus-lite-server")) as server:
        yield server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skip from anywhere (a library, a marker) is a failure: nothing skips quietly."""
    outcome = yield
    report = outcome.get_result()
    if under_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {report.longrepr}"
