"""A local replay of Hacker News: the Firebase API, Algolia's search_by_date, and story pages.

Real HN items from the corpus are served over 127.0.0.1; each URL story is pointed at one real page
of the corpus (its title set to the page's title, as an HN submitter would), so the pipeline meets
real items and real pages without leaving the machine. Stories can be released over time, to measure
freshness, and tests can add routes that misbehave.

Run it by hand: `python -m tests.replay_server --stories 30` prints the connection settings to use.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests import corpus

Handler = Callable[[BaseHTTPRequestHandler], None]
INTERVAL = 15  # the DAG's default schedule: a backfill runs one data interval this long


class ReplayServer:
    """Serves `items` (id → item) and `routes` (path → handler) on 127.0.0.1 (or `host`)."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.items: dict[int, dict | None] = {}
        self.release_at: dict[int, float] = {}  # item id → monotonic time it appears; absent = now
        self.routes: dict[str, Handler] = {}
        self.requests: list[str] = []  # every path asked for, for assertions
        self.newstories_limit = 500  # the real endpoint lists the 500 newest; older ones are in Algolia only
        self._lock = threading.Lock()
        replay = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                with replay._lock:
                    replay.requests.append(self.path)
                try:
                    replay._dispatch(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def handle(self) -> None:
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the fetcher hangs up on pages it refuses: part of the tests, not an error

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, port), RequestHandler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ReplayServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v0"

    @property
    def algolia_url(self) -> str:
        return f"{self.base_url}/api/v1"

    def connection_env(self) -> dict[str, str]:
        """The environment that points the pipeline at this replay."""
        return {
            "AIRFLOW_CONN_HACKER_NEWS_DEFAULT": json.dumps(
                {"conn_type": "http", "host": self.api_url, "extra": {"algolia_url": self.algolia_url}}),
            "HN_INGEST_ALLOW_LOOPBACK": "true",
        }

    # -- content -----------------------------------------------------------------------------

    def add_item(self, item: dict | None, item_id: int | None = None, release_at: float | None = None) -> None:
        item_id = item_id if item_id is not None else item["id"]
        self.items[item_id] = item
        if release_at is not None:
            self.release_at[item_id] = release_at

    def add_page(self, path: str, body: bytes, content_type: str = "text/html", status: int = 200) -> str:
        def serve(request: BaseHTTPRequestHandler) -> None:
            send(request, status, body, content_type)

        self.routes[path] = serve
        return f"{self.base_url}{path}"

    def page_requests(self) -> int:
        return sum(1 for path in self.requests if path.startswith("/pages/"))

    def released(self, item_id: int) -> bool:
        return self.release_at.get(item_id, 0.0) <= time.monotonic()

    def live_stories(self) -> list[dict]:
        return [item for i, item in self.items.items()
                if item and self.released(i) and item.get("type") == "story"
                and not item.get("dead") and not item.get("deleted")]

    # -- HTTP --------------------------------------------------------------------------------

    def _dispatch(self, request: BaseHTTPRequestHandler) -> None:
        route = self.routes.get(urlsplit(request.path).path)
        if route:
            return route(request)
        self.serve_default(request)

    def serve_default(self, request: BaseHTTPRequestHandler) -> None:
        """The API as the items say: for a route that misbehaves some of the time."""
        parts = urlsplit(request.path)
        path = parts.path
        if path == "/v0/newstories.json":
            ids = sorted((i for i, item in self.items.items()
                          if item and item.get("type") == "story" and self.released(i)), reverse=True)
            return send_json(request, ids[: self.newstories_limit])
        if path == "/v0/maxitem.json":
            return send_json(request, max((i for i in self.items if self.released(i)), default=0))
        match = re.fullmatch(r"/v0/item/(\d+)\.json", path)
        if match:
            item_id = int(match.group(1))
            item = self.items.get(item_id) if self.released(item_id) else None
            return send_json(request, item)
        if path == "/api/v1/search_by_date":
            return send_json(request, self._search_by_date(parse_qs(parts.query)))
        send(request, 404, b"not found", "text/plain")

    def _search_by_date(self, query: dict[str, list[str]]) -> dict:
        low, high = float("-inf"), float("inf")
        for condition in ",".join(query.get("numericFilters", [""])).split(","):
            match = re.fullmatch(r"created_at_i(>=|>|<=|<)(\d+)", condition.strip())
            if match:
                op, value = match.group(1), int(match.group(2))
                if op == ">=":
                    low = max(low, value)
                elif op == ">":
                    low = max(low, value + 1)
                elif op == "<":
                    high = min(high, value)
                else:
                    high = min(high, value + 1)
        hits = sorted((s for s in self.live_stories() if low <= s["time"] < high), key=lambda s: -s["time"])
        per_page = int(query.get("hitsPerPage", ["20"])[0])
        page = int(query.get("page", ["0"])[0])
        window = hits[page * per_page : (page + 1) * per_page]
        return {
            "hits": [{"objectID": str(s["id"]), "title": s["title"], "url": s.get("url"),
                      "created_at_i": s["time"], "author": s.get("by")} for s in window],
            "nbHits": len(hits), "page": page, "hitsPerPage": per_page,
            "nbPages": (len(hits) + per_page - 1) // per_page,
        }


def send(request: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str | None,
         headers: dict[str, str] | None = None) -> None:
    request.send_response(status)
    if content_type:
        request.send_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        request.send_header(name, value)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


def send_json(request: BaseHTTPRequestHandler, value) -> None:
    send(request, 200, json.dumps(value).encode("utf-8"), "application/json; charset=utf-8")


# -- corpus-fed replays -------------------------------------------------------------------------


def load_corpus(replay: ReplayServer, url_stories: int = 30, text_posts: int = 3, dead: int = 3,
                deleted: int = 2, page_names: list[str] | None = None) -> dict[int, corpus.CorpusPage]:
    """Feed the replay from the corpus: returns story id → the page its URL now points at."""
    items = corpus.hn_items()
    pages = [p for p in corpus.pages() if page_names is None or p.name in page_names]
    stories = [i for i in items if i.get("type") == "story"]
    with_url = [s for s in stories if s.get("url") and not s.get("dead") and not s.get("deleted")]
    text = [s for s in stories if s.get("text") and not s.get("url") and not s.get("dead") and not s.get("deleted")]
    mapped: dict[int, corpus.CorpusPage] = {}
    for story, page in zip(with_url[:url_stories], pages, strict=False):
        item = copy.deepcopy(story)
        item["title"] = page.title
        item["url"] = replay.add_page(f"/pages/{page.name}.html", page.body, _content_type(page))
        replay.add_item(item)
        mapped[item["id"]] = page
    for story in text[:text_posts]:
        replay.add_item(copy.deepcopy(story))
    for story in [s for s in stories if s.get("dead")][:dead]:
        replay.add_item(copy.deepcopy(story))
    for story in [s for s in stories if s.get("deleted")][:deleted]:
        replay.add_item(copy.deepcopy(story))
    return mapped


def pick_window(stories: list[dict]) -> tuple[int, int]:
    """A backfill window of whole intervals around the two stories closest in time."""
    times = sorted(s["time"] for s in stories)
    i = min(range(len(times) - 1), key=lambda k: times[k + 1] - times[k])
    start = times[i] // INTERVAL * INTERVAL
    end = math.ceil((times[i + 1] + 1) / INTERVAL) * INTERVAL
    return start, end


def _content_type(page: corpus.CorpusPage) -> str:
    return f"text/html; charset={page.charset}" if page.charset else "text/html"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--stories", type=int, default=30, help="URL stories, each mapped to a corpus page")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="after --: a command to run against the replay; the replay stops when it ends")
    args = parser.parse_args()
    replay = ReplayServer(args.port)
    mapped = load_corpus(replay, url_stories=args.stories)
    print(f"replaying {len(replay.items)} Hacker News items ({len(mapped)} stories with pages) on {replay.base_url}")
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    with replay:
        if command:
            sys.exit(subprocess.call(command, env={**os.environ, **replay.connection_env()}))
        for key, value in replay.connection_env().items():
            print(f"export {key}='{value}'", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
