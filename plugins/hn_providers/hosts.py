"""Where this deployment's tasks run: on this machine only, or on several hosts."""

from __future__ import annotations

# Executors whose tasks all run on the scheduler's machine (and `airflow dags test`, which runs them
# in its own process): a default Lite file is one store, and a service started here serves every task.
LOCAL_EXECUTORS = {"LocalExecutor", "SequentialExecutor", "DebugExecutor"}


def configured_executor() -> str:
    from airflow.sdk.configuration import conf

    # The first of a comma-separated list is the default executor; keep only the class name.
    return conf.get("core", "executor", fallback="LocalExecutor").split(",")[0].strip().split(".")[-1].split(":")[-1]


def tasks_share_this_host() -> bool:
    return configured_executor() in LOCAL_EXECUTORS
