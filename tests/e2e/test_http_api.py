"""The HTTP API and the ingestion view, served by a real Airflow api-server over a real Milvus Lite store
that `airflow dags test` filled from the replay; the view is driven in Debian's chromium (Playwright).

One store and one api-server for the module. Login is Airflow's own (the simple auth manager, a
`reader` with the viewer role): a token from `POST /auth/token` for the API, the session cookie for
the page, as a user would have after logging in to the UI.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest
import requests

from include.config import PROJECT_ROOT
from tests import corpus
from tests.airflow_cli import AirflowEnv, AirflowStack, simple_auth_settings
from tests.browser import logged_in_page
from tests.replay_server import ReplayServer, load_corpus

pytestmark = pytest.mark.e2e

PASSWORD = "reader-password-for-tests"
SCREENSHOT = PROJECT_ROOT / "docs" / "images" / "ingestion-view.png"


@pytest.fixture(scope="module")
def replay(require_corpus):
    server = ReplayServer()
    names = [p.name for p in corpus.pages() if p.truth_text][::9][:8]
    server.mapped = load_corpus(server, url_stories=8, text_posts=1, dead=1, deleted=0, page_names=names)
    # One page has gone since it was posted: a failed story with its reason.
    server.gone = max(server.mapped)
    server.add_page(f"/pages/{server.mapped.pop(server.gone).name}.html", b"gone", status=404)
    with server:
        yield server


class StatsdReceiver:
    """A StatsD server on loopback: every metric line the run sends."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.lines: list[str] = []
        self.running = True
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        while self.running:
            try:
                self.lines.extend(self.socket.recv(65_535).decode().splitlines())
            except TimeoutError:
                continue

    def stop(self) -> None:
        self.running = False
        self.thread.join()
        self.socket.close()


@pytest.fixture(scope="module")
def metrics() -> StatsdReceiver:
    receiver = StatsdReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def env(replay, metrics, tmp_path_factory) -> AirflowEnv:
    home = tmp_path_factory.mktemp("airflow")
    env = AirflowEnv(home, tmp_path_factory.mktemp("data"), {
        **replay.connection_env(),
        **simple_auth_settings(home, "reader", "viewer", PASSWORD),
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(metrics.socket.getsockname()[1]),
    })
    env.migrate()
    result = env.dags_test()
    assert result.succeeded, result.log[-6000:]
    return env


@pytest.fixture(scope="module")
def api(env):
    with AirflowStack(env, components=("api-server",)) as stack:
        yield stack.wait_for_api(), stack.login("reader", PASSWORD)


def get(api, path: str, token: str | None = "valid", **params) -> requests.Response:
    base, valid = api
    headers = {"Authorization": f"Bearer {valid if token == 'valid' else token}"} if token else {}
    return requests.get(f"{base}/hn-ingest{path}", params=params, headers=headers, timeout=120)


def test_every_route_needs_an_airflow_login(api):
    for path in ("/api/status", "/api/search", "/api/stories/1", "/ui"):
        assert get(api, path, token=None, q="x").status_code == 401, path
        assert get(api, path, token="not-a-jwt", q="x").status_code in (401, 403), path


def test_status_counts_failures_freshness_and_the_run(api, env, replay):
    body = get(api, "/api/status").json()
    stored = env.status()
    assert body["stories"] == stored["stories"] and body["chunks"] == stored["chunks"]
    gone = next(p for p in body["problems"] if p["story_id"] == replay.gone)
    assert gone["status"] == "failed" and "404" in gone["reason"] and gone["retry"].startswith("attempt 1 of 5")
    newest = max(item["time"] for i, item in replay.items.items() if i in replay.mapped)
    assert body["freshness"]["newest_story_posted_at"] == newest
    assert 0 <= body["freshness"]["last_ingest_age_seconds"] < 3600 and body["full_text_search"] is True
    run = body["runs"][0]
    assert run["state"] == "success" and run["summary"]["stories"]["ingested"] == stored["stories"]["ingested"]
    # The listener noted the outcome on the run, where the grid shows it.
    chunks, threads = run["summary"]["chunks_written"], run["summary"]["threads_read"]
    assert threads == stored["stories"]["ingested"]  # each ingested story's thread was read with its page
    assert run["note"] == (f"{stored['stories']['ingested']} ingested · 1 skipped · 1 failed · {threads} threads · "
                           f"{chunks} chunks")


def test_the_run_sent_its_metrics_and_updated_the_chunks_asset(api, env, metrics):
    stored = env.status()["stories"]
    lines = set(metrics.lines)
    for status, count in stored.items():
        assert f"airflow.hn_ingest.stories.{status}:{count}|c" in lines, sorted(metrics.lines)[:50]
    assert any(line.startswith("airflow.hn_ingest.chunks_written:") for line in lines)
    assert any(line.startswith("airflow.hn_ingest.stage.embed:") and line.endswith("|ms") for line in lines)
    base, token = api
    assets = requests.get(f"{base}/api/v2/assets", params={"name_pattern": "hn_chunks"},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30).json()["assets"]
    asset = next(a for a in assets if a["name"] == "hn_chunks")
    assert asset["uri"] == "milvus://hn-rag-ingest/hn_chunks"
    events = requests.get(f"{base}/api/v2/assets/events", params={"asset_id": asset["id"]},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    assert events["total_entries"] >= 1 and events["asset_events"][0]["source_task_id"] == "write_batch"


@pytest.mark.parametrize("mode", ["hybrid", "dense", "text"])
def test_search_finds_a_page_by_a_sentence_of_it(api, replay, mode):
    story_id, page = next((i, p) for i, p in replay.mapped.items() if corpus.middle_sentence(p.truth_text or ""))
    body = get(api, "/api/search", q=corpus.middle_sentence(page.truth_text), k=5, mode=mode).json()
    # Its own sentence puts the page first (a random ranker would pass a "within the top 5" check ~70 % of the time).
    assert body["mode"] == mode and body["stories"][0]["story_id"] == story_id, body
    assert len({s["story_id"] for s in body["stories"]}) == len(body["stories"])
    hit = next(s for s in body["stories"] if s["story_id"] == story_id)
    assert hit["hn_url"].endswith(f"id={story_id}") and hit["chunks"][0]["text"]


def test_search_filters(api, replay):
    story_id, page = next((i, p) for i, p in replay.mapped.items() if corpus.middle_sentence(p.truth_text or ""))
    query = corpus.middle_sentence(page.truth_text)
    posted = replay.items[story_id]["time"]
    found = lambda **f: [s["story_id"] for s in get(api, "/api/search", q=query, k=10, **f).json()["stories"]]  # noqa: E731
    assert story_id in found(since=posted, until=posted + 1)
    assert story_id not in found(since=posted + 1)
    assert story_id in found(until="2100-01-01") and found(since="2100-01-01T00:00:00Z") == []
    assert story_id in found(domain="127.0.0.1") and found(domain="example.org") == []
    points = replay.items[story_id].get("score", 0)
    assert story_id in found(min_points=points) and story_id not in found(min_points=points + 1)


@pytest.mark.parametrize("params, status, message", [
    ({"q": "x", "k": 0}, 400, "k must be between 1 and 50"),
    ({"q": "x", "k": 500}, 400, "k must be between 1 and 50"),
    ({"q": "x", "k": "many"}, 422, ""),
    ({"q": "   "}, 400, "the query is empty"),
    ({"q": "x" * 10_000}, 400, "at most 2000"),
    ({}, 422, ""),
    ({"q": "x", "mode": "magic"}, 400, "mode must be one of"),
    ({"q": "x", "domain": 'a" or id > 0 or "'}, 400, "domain must be a host name"),
    ({"q": "x", "since": "last tuesday"}, 400, "since must be Unix seconds or an ISO date"),
    ({"q": "x", "since": str(2**64)}, 400, "since must be between 0 and"),
    ({"q": "x", "min_points": str(10**30)}, 400, "min_points must be between 0 and"),
])
def test_bad_searches_get_a_clear_4xx(api, params, status, message):
    response = get(api, "/api/search", **params)
    assert response.status_code == status, response.text
    assert message in json.dumps(response.json())


def test_a_story_with_all_its_chunks_in_order(api, env, replay):
    story_id = next(iter(replay.mapped))
    body = get(api, f"/api/stories/{story_id}").json()
    row = next(r for r in env.status()["story_rows"] if r["story_id"] == story_id)
    assert body["status"] == "ingested" and len(body["chunks"]) == row["chunk_count"] > 0
    assert [c["chunk_index"] for c in body["chunks"]] == list(range(row["chunk_count"]))
    failed = get(api, f"/api/stories/{replay.gone}").json()
    assert failed["status"] == "failed" and "404" in failed["reason"] and failed["chunks"] == []
    assert get(api, "/api/stories/1").status_code == 404
    assert get(api, "/api/stories/abc").status_code == 422


def test_the_ingestion_view_in_a_real_browser(api, replay, env):
    base, token = api
    story_id, page = next((i, p) for i, p in replay.mapped.items() if corpus.middle_sentence(p.truth_text or ""))
    counts = env.status()["stories"]
    # The viewer's session cookie: the page calls the API as the logged-in user.
    with logged_in_page(base, token) as view:
        started = time.perf_counter()
        view.goto(f"{base}/hn-ingest/ui")
        view.wait_for_selector("#count-ingested b")
        view.wait_for_selector("#problems tbody tr")
        print(f"ingestion view loaded in {time.perf_counter() - started:.2f} s")
        assert view.inner_text("#count-ingested b") == str(counts["ingested"])
        assert view.inner_text("#count-failed b") == str(counts.get("failed", 0))
        assert "404" in view.inner_text("#problems")
        assert "success" in view.inner_text("#runs")
        view.fill("#q", corpus.middle_sentence(page.truth_text))
        view.click("button[type=submit]")
        view.wait_for_selector(f".hit[data-story-id='{story_id}']", timeout=60_000)
        links = view.eval_on_selector_all(f".hit[data-story-id='{story_id}'] a", "els => els.map(e => e.href)")
        assert f"https://news.ycombinator.com/item?id={story_id}" in links
        if os.environ.get("HN_TEST_SCREENSHOTS") == "1":  # the README's picture, only when asked
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            view.screenshot(path=str(SCREENSHOT), full_page=True)
        # Inside the Airflow UI: the plugin's view is listed for the navigation.
        plugins = requests.get(f"{base}/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        views = [v for p in plugins.json()["plugins"] for v in p["external_views"]]
        assert any(v["href"] == "/hn-ingest/ui" and v["url_route"] == "hn-ingest" for v in views), views
