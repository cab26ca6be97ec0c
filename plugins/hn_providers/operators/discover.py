"""Operator that picks a run's stories and cuts them into micro-batches, deferring while there are none."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from hn_providers.hooks.hacker_news import HackerNewsHook
from hn_providers.hooks.milvus import MilvusHook
from hn_providers.hosts import tasks_share_this_host
from hn_providers.triggers.hacker_news import NewStoriesTrigger

# A scheduled run watches for new stories at most this long (and never past the next run's start).
MAX_WATCH_SECONDS = 30
# Stored stories that /v0/updates.json lists as changed, compared with their items per run (0: off).
RECHECKS_PER_RUN = int(os.environ.get("HN_INGEST_RECHECKS_PER_RUN", "100"))


def max_map_length() -> int:
    """Airflow's cap on one task's mapped instances ([core] max_map_length): a run never plans more batches."""
    from airflow.sdk.configuration import conf

    return conf.getint("core", "max_map_length", fallback=1024)


class DiscoverStoriesOperator(BaseOperator):
    """Return the run's micro-batches (``include.pipeline.planning``); skip the run when there is nothing to do.

    A scheduled run that finds nothing new defers to `NewStoriesTrigger` until its next run is due:
    the triggerer watches the API, no worker slot is held, and a story published meanwhile resumes
    the task at once (freshness). A run with nothing to ingest ends *skipped*, and with it every
    downstream task: in the grid an idle run is all skipped, a working run is green.

    Params read from the run: ``reindex``, ``cancel_reindex``, ``max_stories``, ``batch_size``, ``conditional``.

    :param windowed: every run takes the stories created in its data interval (``hn_backfill``), whatever
        its type, and an idle run ends at once; otherwise (``hn_ingest``) only a backfill run does.
    :param reindex_only: every run takes only the next slice of a running reindex (``hn_reindex``), and
        ends at once when there is none.
    :param milvus_conn_id: the Milvus connection.
    :param hacker_news_conn_id: the Hacker News connection.
    """

    ui_color = "#f0e4ff"

    def __init__(self, *, windowed: bool = False, reindex_only: bool = False, milvus_conn_id: str = MilvusHook.default_conn_name,
                 hacker_news_conn_id: str = HackerNewsHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.windowed = windowed
        self.reindex_only = reindex_only
        self.milvus_conn_id = milvus_conn_id
        self.hacker_news_conn_id = hacker_news_conn_id

    def execute(self, context) -> list[dict]:
        batches = self._plan(context)
        if batches:
            return self._with_warm_model(batches)
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        if context["dag_run"].run_type == "scheduled" and start is not None and not (self.windowed or self.reindex_only):
            until = min((end + (end - start)).timestamp() - 1, time.time() + MAX_WATCH_SECONDS)
            if until - time.time() > 2:
                hn = HackerNewsHook(self.hacker_news_conn_id).get_conn()
                self.log.info("nothing new: watching the API on the triggerer for %.0f s "
                              "(an `airflow triggerer` must run, or this wait times out)", until - time.time())
                self.defer(trigger=NewStoriesTrigger(hn.base_url, hn.new_story_ids(), until),
                           method_name="execute_complete", timeout=timedelta(seconds=until - time.time() + 60))
        raise AirflowSkipException("idle run: no reindex is running" if self.reindex_only else
                                   "idle run: no stories to ingest")

    def execute_complete(self, context, event: dict) -> list[dict]:
        self.log.info("new stories listed while watching: %s", event["new_story_ids"][:10])
        batches = self._plan(context)
        if batches:
            return self._with_warm_model(batches)
        # Listed, but nothing to do (for example a dead story, recorded by an earlier run).
        raise AirflowSkipException("idle run: the new stories need no work")

    def _with_warm_model(self, batches: list[dict]) -> list[dict]:
        """Have the model loading while the pages are fetched, when embed_batch will run on this host."""
        if tasks_share_this_host():
            from include.embed.service import warm_up_in_background

            try:
                if warm_up_in_background():
                    self.log.info("embedding service starting in the background (the model loads during extract)")
            except OSError as exc:  # only an optimisation: embed_batch starts it (or embeds in-process)
                self.log.info("embedding service not started ahead: %s", exc)
        return batches

    def _plan(self, context) -> list[dict]:
        from include.pipeline.planning import RunRequest, Window, plan_run, run_mode
        from include.store.client import lite_size_warning

        cpu_started = time.process_time()
        params, dag_run = context["params"], context["dag_run"]
        mode = "backfill" if self.windowed else "continue_reindex" if self.reindex_only else \
            run_mode(dag_run.run_type, params.get("reindex", False))
        # A manual run triggered without a logical date (Airflow 3's default) has no data interval.
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        if mode == "backfill" and start is None:
            raise ValueError(f"{dag_run.dag_id} ingests the window of a run's data interval, and this run has none: "
                             "create a backfill (`airflow backfill create` or the UI's backfill dialog) or "
                             "trigger it with a logical date")
        window = Window(int(start.timestamp()), int(end.timestamp())) if mode == "backfill" else None
        request = RunRequest(mode, dag_run.run_id, window, params.get("max_stories"), params.get("batch_size", 10),
                             params.get("reindex", False), params.get("conditional", True), RECHECKS_PER_RUN,
                             cancel_reindex=params.get("cancel_reindex", False), max_batches=max_map_length())
        hn = HackerNewsHook(self.hacker_news_conn_id).get_conn()
        with MilvusHook(milvus_conn_id=self.milvus_conn_id) as milvus:
            store = milvus.get_store()
            store.schema.ensure_collections()
            plan = plan_run(request, hn, store)
            if warning := lite_size_warning(milvus.client_kwargs["uri"], store.reader.count()):
                self.log.warning("%s", warning)
        over = f" over {start} to {end}" if window else ""
        self.log.info("%s run%s: %d stories (%d edited or back), %d thread refreshes, %d to remove, in %d batches; "
                      "%.2f s CPU", mode, over, len(plan.story_ids), len(plan.reingest), len(plan.refresh),
                      len(plan.removed), len(plan.batches), time.process_time() - cpu_started)
        if plan.reindex is not None:
            left = plan.reindex.seconds_left
            self.log.info("reindex: %d of %d stories done, this run takes %d more%s", plan.reindex.done,
                          plan.reindex.total, len(plan.reindex_slice),
                          f", about {left / 60:.0f} min left" if left is not None else "")
        return plan.batches
