"""Bench 8: latency of the HTTP API and load time of the ingestion view, on the corpus store.

    python -m bench.api     # needs the database of `python -m bench.bulk_ingest`

A real api-server (the plugin under `/hn-ingest`, Airflow's login, Milvus Lite opened per request)
over the bulk bench's store. Per mode: the first search after the server starts (cold: the model loads
in the api-server) apart, then 200 searches (sentences and snippets of the corpus truths) one after the
other: p50/p95 of the whole HTTP round trip. The view: time until the counts and the runs table show, in
Debian's chromium (first load, then the min of 3).
"""

from __future__ import annotations

import json
import shutil
import time
from statistics import quantiles

import requests

from bench.common import RESULTS, corpus_ok, print_table
from bench.retrieval import truth_queries
from tests.airflow_cli import AirflowEnv, AirflowStack
from tests.replay_server import ReplayServer, load_corpus

QUERIES = 200
PASSWORD = "bench-reader"


def main() -> None:
    corpus_ok()
    data = RESULTS / "bulk" / "data"
    if not (data / "milvus.db").is_dir():
        raise SystemExit("run `python -m bench.bulk_ingest` first: this bench reads its Milvus database")
    sets = truth_queries(load_corpus(ReplayServer(), url_stories=200, text_posts=0, dead=0, deleted=0))
    queries = [*sets["sentences"], *sets["snippets"]]
    queries = (queries * (QUERIES // len(queries) + 1))[:QUERIES]
    home = RESULTS / "api" / "airflow"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "passwords.json").write_text(json.dumps({"reader": PASSWORD}))
    env = AirflowEnv(home, data, {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "reader:viewer",
                                  "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json")})
    env.migrate()
    rows = []
    with AirflowStack(env, components=("api-server",)) as stack:
        base = stack.wait_for_api()
        token = requests.post(f"{base}/auth/token", json={"username": "reader", "password": PASSWORD},
                              timeout=30).json()["access_token"]
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"

        def timed(path: str, **params) -> float:
            started = time.perf_counter()
            response = session.get(f"{base}/hn-ingest{path}", params=params, timeout=300)
            response.raise_for_status()
            return time.perf_counter() - started

        for mode in ("hybrid", "dense", "text"):
            cold = timed("/api/search", q="first query after the start", k=5, mode=mode)
            seconds = [timed("/api/search", q=q, k=5, mode=mode) for q in queries]
            cuts = quantiles(seconds, n=20)
            rows.append((f"GET /search mode={mode}, k=5 ({len(seconds)} queries)",
                         f"p50 {cuts[9] * 1000:.0f} ms, p95 {cuts[18] * 1000:.0f} ms; first request {cold:.2f} s"))
        status = [timed("/api/status") for _ in range(20)]
        rows.append(("GET /status (20 requests)", f"p50 {sorted(status)[10] * 1000:.0f} ms"))
        rows.append(("ingestion view: counts and runs shown", view_load_times(base, token)))
    print_table("HTTP API and ingestion view (real api-server, Milvus Lite, warm unless said)", rows, "api.txt")


def view_load_times(base: str, token: str) -> str:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "_token", "value": token, "url": base}])
            page = context.new_page()
            loads = []
            for _ in range(4):
                started = time.perf_counter()
                page.goto(f"{base}/hn-ingest/ui")
                page.wait_for_selector("#count-ingested b")
                loads.append(time.perf_counter() - started)
        finally:
            browser.close()
    return f"first {loads[0]:.2f} s, then min {min(loads[1:]):.2f} s of 3"


if __name__ == "__main__":
    main()
