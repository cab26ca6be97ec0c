"""Operator that writes one staged, embedded batch into Milvus."""

from __future__ import annotations

import time
from collections import Counter
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from hn_providers.hooks.milvus import MilvusHook


class MilvusIngestOperator(BaseOperator):
    """Upsert a batch's chunks and story states; create the collections and the IVF_FLAT index once.

    Writing is idempotent (deterministic keys, stale chunks deleted, state written last), so a retry
    or a cleared-and-rerun task ends with the same rows as a clean run.

    :param batch: a reference from the embed stage: ``{"label", "extracted", "vectors"}``, keys of the
        batch's files under the staging base (``HN_INGEST_STAGING_URL``), readable from any worker.
    :param milvus_conn_id: the Milvus connection.
    """

    template_fields = ("batch",)

    def __init__(self, *, batch: dict, milvus_conn_id: str = MilvusHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch = batch
        self.milvus_conn_id = milvus_conn_id

    @cached_property
    def hook(self) -> MilvusHook:
        return MilvusHook(milvus_conn_id=self.milvus_conn_id)

    def execute(self, context) -> dict:
        from include.pipeline.staging import read_extracted, read_vectors

        extracted = read_extracted(self.batch["extracted"])
        vectors = read_vectors(self.batch["vectors"])
        started = time.monotonic()
        with self.hook as hook:
            store = hook.get_store()
            store.schema.ensure_collections()
            removed = {int(i): why for i, why in self.batch.get("removed", {}).items()}
            written = store.writer.write_batch(extracted.chunks, vectors, extracted.outcomes, extracted.threads,
                                               removed)
        committed_at = time.time()  # chunks and states are written (and, on a server, Strong reads see them)
        seconds = {**self.batch.get("seconds", {}), "write": time.monotonic() - started}
        # "unchanged": ingested before and answered 304, so no chunk of it was written.
        statuses = Counter("unchanged" if o.unchanged else o.status for o in extracted.outcomes)
        for outcome in extracted.outcomes:
            if outcome.status != "ingested":
                self.log.warning("%s: %s", outcome.status, outcome.reason)
        self.log.info("%s: %d chunk rows written; %s; committed at %.3f: stories %s", self.batch["label"], written,
                      dict(statuses), committed_at, [o.story_id for o in extracted.outcomes if o.status == "ingested"])
        comment_chunks = sum(t.embedded for t in extracted.threads)
        if extracted.threads:
            self.log.info("%s: %d threads read, %d comment chunks written, %d removed", self.batch["label"],
                          len(extracted.threads), comment_chunks, sum(len(t.stale_ids) for t in extracted.threads))
        return {"label": self.batch["label"], "chunks": written, "comment_chunks": comment_chunks,
                "threads": len(extracted.threads), "committed_at": committed_at, "statuses": dict(statuses), "seconds": seconds,
                "problems": [f"{o.status}: {o.reason}" for o in extracted.outcomes if o.status != "ingested"]}
