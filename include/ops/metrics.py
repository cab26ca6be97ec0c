"""A run's figures as Airflow metrics (StatsD or OpenTelemetry, as `[metrics]` configures them).

Names (prefix `[metrics] statsd_prefix`, default `airflow`):
- `hn_ingest.stories.<status>` (counter): stories a run ended as ingested, unchanged, skipped, failed;
- `hn_ingest.chunks_written` (counter): chunk rows upserted (pages and comments);
- `hn_ingest.threads_read`, `hn_ingest.comment_chunks_written` (counters): comment threads read, and the
  new or changed comment chunks written;
- `hn_ingest.stage.<stage>` (timer): seconds spent per stage (fetch, partition, chunk, threads, embed, write).
"""

from __future__ import annotations

from datetime import timedelta


def emit_run_metrics(summary: dict) -> None:
    from airflow.sdk.observability.stats import Stats

    for status, count in summary["stories"].items():
        Stats.incr(f"hn_ingest.stories.{status}", count)
    Stats.incr("hn_ingest.chunks_written", summary["chunks_written"])
    Stats.incr("hn_ingest.threads_read", summary.get("threads_read", 0))
    Stats.incr("hn_ingest.comment_chunks_written", summary.get("comment_chunks_written", 0))
    for stage, seconds in summary["stage_seconds"].items():
        Stats.timing(f"hn_ingest.stage.{stage}", timedelta(seconds=seconds))
