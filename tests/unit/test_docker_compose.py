"""docker-compose.yaml checked against the code (no Docker engine runs on the build machines)."""

from __future__ import annotations

import json
import re

import yaml

from include.config import ALGOLIA_API_URL, HN_API_URL, PROJECT_ROOT


def compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yaml").read_text())


def test_services_and_images():
    services = compose()["services"]
    assert {"postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer", "etcd", "minio", "milvus-standalone"} <= set(services)
    assert services["milvus-standalone"]["image"].startswith("milvusdb/milvus:")
    assert "19530:19530" in services["milvus-standalone"]["ports"]
    assert "8080:8080" in services["airflow-apiserver"]["ports"]
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(r"FROM apache/airflow:3\.3\.2", dockerfile)
    assert "torch==2.13.0" in dockerfile and "requirements.txt" in dockerfile


def test_airflow_services_share_connections_that_match_the_code():
    services = compose()["services"]
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["PYTHONPATH"] == "/opt/airflow"
        milvus = json.loads(env["AIRFLOW_CONN_MILVUS_DEFAULT"])
        assert milvus["host"] == "http://milvus-standalone:19530"
        hn = json.loads(env["AIRFLOW_CONN_HACKER_NEWS_DEFAULT"])
        assert hn["host"] == HN_API_URL and hn["extra"]["algolia_url"] == ALGOLIA_API_URL
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/")
        mounts = {m.split(":")[1]: m.split(":")[0] for m in services[name]["volumes"] if m.startswith("./")}
        for folder in ("dags", "plugins", "include"):
            assert mounts[f"/opt/airflow/{folder}"] == f"./{folder}"
            assert (PROJECT_ROOT / folder).is_dir()
