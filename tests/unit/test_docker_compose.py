"""docker-compose.yaml checked against the code, and by Compose itself (`docker-compose config`).

No Docker engine runs on the build machines, so the stack is not started here: Compose resolves and
validates the files (interpolation from `.env.example`, the dev override), and these tests check that
what the stack sets is what the code reads.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from include.config import ALGOLIA_API_URL, HN_API_URL, PROJECT_ROOT

AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker", "airflow-init")
SECRETS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "AIRFLOW_JWT_SECRET",
           "AIRFLOW_API_SECRET_KEY", "AIRFLOW_FERNET_KEY")


def compose_config(tmp_path, *files: str, env_file: str = ".env.example") -> dict:
    """The stack as Compose resolves it, with the example `.env`."""
    from tests.services import ensure_debian_packages

    ensure_debian_packages("docker-compose")
    args = ["docker-compose", "--env-file", str(PROJECT_ROOT / env_file)]
    for name in files:
        args += ["-f", str(PROJECT_ROOT / name)]
    result = subprocess.run([*args, "config"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> dict:
    return compose_config(tmp_path_factory.mktemp("compose"), "docker-compose.yaml")["services"]


def test_the_stack_is_celery_on_redis_and_postgres_with_a_worker_that_scales(stack):
    assert {"postgres", "redis", "airflow-init", "airflow-worker", "etcd", "minio", "minio-init",
            "milvus-standalone"} | set(AIRFLOW_SERVICES) <= set(stack)
    worker = stack["airflow-worker"]
    # `--scale airflow-worker=N` needs no fixed container name and no host port.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"][:2] == ["celery", "worker"]
    for name in AIRFLOW_SERVICES:
        env = stack[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://") and "@redis:6379" in env["AIRFLOW__CELERY__BROKER_URL"]
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/")
    assert stack["milvus-standalone"]["image"].startswith("milvusdb/milvus:v2.5")
    assert "pools set milvus_writer" in " ".join(stack["airflow-init"]["command"])


def test_staging_goes_to_minio_through_an_airflow_connection(stack):
    for name in AIRFLOW_SERVICES:
        env = stack[name]["environment"]
        url = env["HN_INGEST_STAGING_URL"]
        match = re.fullmatch(r"s3://(\w+)@([\w.-]+)/(\S+)", url)
        assert match, url
        conn = json.loads(env[f"AIRFLOW_CONN_{match.group(1).upper()}"])
        assert conn["conn_type"] == "aws" and conn["extra"]["endpoint_url"] == "http://minio:9000"
        assert conn["login"] and conn["password"]
        assert match.group(2) in " ".join(stack["minio-init"]["command"])  # the bucket is made


def test_connections_match_the_code_and_nothing_falls_back_to_a_local_file(stack):
    for name in AIRFLOW_SERVICES:
        env = stack[name]["environment"]
        milvus = json.loads(env["AIRFLOW_CONN_MILVUS_DEFAULT"])
        assert (milvus["conn_type"], milvus["host"]) == ("milvus", "http://milvus-standalone:19530")
        hn = json.loads(env["AIRFLOW_CONN_HACKER_NEWS_DEFAULT"])
        assert hn["host"] == HN_API_URL and hn["extra"]["algolia_url"] == ALGOLIA_API_URL
        assert env["PYTHONPATH"] == "/opt/airflow"
        # Per-site limits across hosts: the broker's Redis, its own database.
        assert re.fullmatch(r"redis://:[^@]+@redis:6379/[1-9]", env["HN_INGEST_REDIS_URL"]), env["HN_INGEST_REDIS_URL"]


def test_the_code_is_in_the_image_and_bind_mounts_only_in_the_dev_override(stack, tmp_path):
    for name in AIRFLOW_SERVICES:
        assert not stack[name].get("volumes"), f"{name} mounts {stack[name].get('volumes')}"
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(r"FROM apache/airflow:3\.3\.2", dockerfile)
    assert "torch==2.13.0" in dockerfile and "requirements.txt" in dockerfile
    for folder in ("dags", "plugins", "include", "providers/milvus"):
        assert re.search(rf"^COPY {folder} /opt/airflow/{folder}$", dockerfile, re.M)
        assert (PROJECT_ROOT / folder).is_dir()
    # The Milvus provider (the `milvus` connection type): editable in the venv, installed on its own in the image.
    assert re.search(r"^-e \./providers/milvus$", (PROJECT_ROOT / "requirements.txt").read_text(), re.M)
    assert re.search(r"^RUN pip install .*/opt/airflow/providers/milvus$", dockerfile, re.M)
    dev = compose_config(tmp_path, "docker-compose.yaml", "docker-compose.dev.yaml")["services"]
    # Compose v1 prints "source:target:mode", v2 a mapping.
    mounts = dict((v["target"], v["source"]) if isinstance(v, dict) else tuple(v.split(":")[1::-1])
                  for v in dev["airflow-worker"]["volumes"])
    assert mounts == {f"/opt/airflow/{f}": str(PROJECT_ROOT / f) for f in ("dags", "plugins", "include")}


def test_the_image_installs_what_the_settings_need():
    wanted = (PROJECT_ROOT / "requirements.txt").read_text() + (PROJECT_ROOT / "requirements-stack.txt").read_text()
    for package in ("apache-airflow-providers-celery", "apache-airflow-providers-amazon[s3fs]",
                    "apache-airflow-providers-postgres"):
        assert re.search(rf"^{re.escape(package)}==", wanted, re.M), package


def test_secrets_come_from_the_env_file_not_literals(stack, tmp_path):
    text = (PROJECT_ROOT / "docker-compose.yaml").read_text()
    example = (PROJECT_ROOT / ".env.example").read_text()
    for name in SECRETS:
        assert f"${{{name}:?" in text, f"{name} must be required from .env"
        assert re.search(rf"^{name}=", example, re.M), f".env.example must document {name}"
    for literal in ("minioadmin", "change-me", "airflow:airflow@"):
        assert literal not in text
    # Without a .env, Compose refuses to start rather than run on default passwords.
    (tmp_path / "empty.env").write_text("")
    result = subprocess.run(["docker-compose", "--env-file", str(tmp_path / "empty.env"), "-f",
                             str(PROJECT_ROOT / "docker-compose.yaml"), "config", "-q"],
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode != 0 and "in .env" in result.stderr
    assert ".env" in (PROJECT_ROOT / ".gitignore").read_text().split()


def example_secrets() -> dict[str, str]:
    lines = (PROJECT_ROOT / ".env.example").read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {name: values[name] for name in SECRETS if name != "MINIO_ROOT_USER"}


def test_no_secret_is_on_a_command_line(stack):
    """`ps` and `docker inspect` show commands and healthchecks: secrets go through the environment."""
    secrets = example_secrets()
    assert len(set(secrets.values())) == len(secrets), "each secret of .env.example must be distinct"
    for name, service in stack.items():
        shown = json.dumps([service.get("command"), service.get("entrypoint"), (service.get("healthcheck") or {}).get("test")])
        leaked = [key for key, value in secrets.items() if value in shown]
        assert not leaked, f"{name} puts {leaked} on a command line: {shown[:300]}"
    api = stack["airflow-apiserver"]["environment"]
    assert api["AIRFLOW__API__SECRET_KEY"] != api["AIRFLOW__API_AUTH__JWT_SECRET"]


def test_nothing_unauthenticated_is_published_beyond_the_host(stack):
    """The api-server (Airflow login) is published; Milvus (no authentication) only on loopback; the rest
    (Postgres, Redis, etcd, MinIO, Milvus's health port) not at all."""
    for name, service in stack.items():
        for port in service.get("ports") or []:
            # Compose v1 prints "host_ip:published:target", v2 a mapping.
            if isinstance(port, dict):
                host_ip, target = port.get("host_ip", ""), int(port["target"])
            else:
                parts = str(port).split(":")
                host_ip, target = (parts[0] if len(parts) == 3 else ""), int(parts[-1].split("/")[0])
            if name == "airflow-apiserver":
                continue
            assert (name, target) == ("milvus-standalone", 19530) and host_ip == "127.0.0.1", (name, port)
