"""Vectors for chunks: the all-MiniLM-L6-v2 model loaded offline (`model`) and a warm embedding service
that keeps it loaded across task processes on one host (`service`). Imports `config` only."""
