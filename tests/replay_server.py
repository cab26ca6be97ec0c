"""A local replay of Hacker News: the Firebase API, Algolia's search_by_date, and story pages.

Real HN items from the corpus are served over 127.0.0.1; each URL story is pointed at one real page
of the corpus (its title set to the page's title, as an HN submitter would), so the pipeline meets
real items and real pages without leaving the machine. Stories can be released over time, to measure
freshness, and tests can add routes that misbehave.

Pages can be spread over several "sites" (`page_hosts`: one port each on 127.0.0.1, so each is its own
origin), each with its own robots.txt (`robots`); every request is recorded with its site, start and
end (`visits`), so tests can measure what one site saw: peak concurrency, request rate. Pages carry an
ETag and Last-Modified and answer a matching conditional request with 304.

Run it by hand: `python -m tests.replay_server --stories 30` prints the connection settings to use.
"""

from __future__ import annotations

import argparse
import copy
import email.utils
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests import corpus

Handler = Callable[[BaseHTTPRequestHandler], None]
INTERVAL = 15  # the DAG's default schedule: a backfill runs one data interval this long
LAST_MODIFIED = email.utils.formatdate(1609282000, usegmt=True)


@dataclass
class Visit:
    site: int  # index of the site (port) asked
    path: str
    start: float  # monotonic
    end: float = 0.0
    status: int = 0
    headers: dict | None = None


class ReplayServer:
    """Serves `items` (id → item) and `routes` (path → handler) on 127.0.0.1 (or `host`)."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", page_hosts: int = 1) -> None:
        self.items: dict[int, dict | None] = {}
        self.release_at: dict[int, float] = {}  # item id → monotonic time it appears; absent = now
        self.updates: list[int] = []  # what /v0/updates.json lists as recently changed
        self.routes: dict[str, Handler] = {}
        self.requests: list[str] = []  # every path asked for, for assertions
        self.visits: list[Visit] = []  # every request with its site and timing
        self.robots: dict[int, str] = {}  # site → robots.txt body; a site without one answers 404
        self.newstories_limit = 500  # the real endpoint lists the 500 newest; older ones are in Algolia only
        self.algolia_max_hits = 1000  # Algolia serves no hit past the first 1,000 of a query
        self.algolia_searches: list[tuple[float, float]] = []  # (from, to) of each search_by_date
        self._lock = threading.Lock()
        replay = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                visit = Visit(replay.site_of[self.server.server_address[1]], urlsplit(self.path).path,
                              time.monotonic(), headers=dict(self.headers))
                with replay._lock:
                    replay.requests.append(self.path)
                    replay.visits.append(visit)
                try:
                    if visit.path == "/robots.txt":
                        replay._serve_robots(self, visit.site)
                    else:
                        replay._dispatch(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    visit.end = time.monotonic()
                    visit.status = getattr(self, "status_sent", 0)

            def send_response(self, code, message=None) -> None:
                self.status_sent = code
                super().send_response(code, message)

            def handle(self) -> None:
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the fetcher hangs up on pages it refuses: part of the tests, not an error

            def log_message(self, *args) -> None:
                pass

        self.servers = [ThreadingHTTPServer((host, port if site == 0 else 0), RequestHandler)
                        for site in range(page_hosts)]
        for server in self.servers:
            server.daemon_threads = True
        self.httpd = self.servers[0]  # the API's site, and the pages' when there is one site
        self.site_of = {server.server_address[1]: site for site, server in enumerate(self.servers)}
        self.site_urls = [f"http://{host}:{server.server_address[1]}" for server in self.servers]
        self.base_url = self.site_urls[0]
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ReplayServer:
        for site, server in enumerate(self.servers):
            # The poll interval only bounds how long a shutdown waits; many idle sites poll slowly.
            poll = 0.05 if site == 0 or len(self.servers) < 10 else 0.5
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll}, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        stoppers = [threading.Thread(target=server.shutdown) for server in self.servers]
        for stopper in stoppers:
            stopper.start()
        for stopper, server in zip(stoppers, self.servers, strict=True):
            stopper.join()
            server.server_close()

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

    def add_page(self, path: str, body: bytes, content_type: str = "text/html", status: int = 200, site: int = 0) -> str:
        """Serve `body` at `path` (on site `site`), with validators: a matching conditional GET gets 304."""

        def serve(request: BaseHTTPRequestHandler) -> None:
            if status == 200:
                return send_page(request, body, content_type)
            send(request, status, body, content_type)

        self.routes[path] = serve
        return f"{self.site_urls[site]}{path}"

    def _serve_robots(self, request: BaseHTTPRequestHandler, site: int) -> None:
        route = self.routes.get(f"/robots.txt@{site}")
        if route:
            return route(request)
        if site not in self.robots:
            return send(request, 404, b"no robots.txt here", "text/plain")
        send(request, 200, self.robots[site].encode(), "text/plain")

    # -- what each site saw ------------------------------------------------------------------------

    def site_visits(self, site: int, prefix: str = "/") -> list[Visit]:
        with self._lock:
            return [v for v in self.visits if v.site == site and v.path.startswith(prefix)]

    def crawl_visits(self, site: int) -> list[Visit]:
        """What the crawler asked of a site: pages and robots.txt, not the HN API (served by site 0)."""
        return [v for v in self.site_visits(site) if not v.path.startswith(("/v0/", "/api/"))]

    def peak_concurrency(self, site: int) -> int:
        """The most crawler requests this site had in flight at once."""
        visits = self.crawl_visits(site)
        events = sorted([(v.start, 1) for v in visits] + [(v.end, -1) for v in visits])
        peak = current = 0
        for _, change in events:
            current += change
            peak = max(peak, current)
        return peak

    def peak_rate(self, site: int, window: float = 1.0) -> int:
        """The most crawler requests this site received within any `window` seconds (half-open window)."""
        starts = sorted(v.start for v in self.crawl_visits(site))
        return max((sum(1 for t in starts[i:] if t < start + window) for i, start in enumerate(starts)), default=0)

    def min_gap(self, site: int) -> float:
        """The shortest time between two crawler requests to this site (inf with fewer than two)."""
        starts = sorted(v.start for v in self.crawl_visits(site))
        return min((b - a for a, b in zip(starts, starts[1:], strict=False)), default=float("inf"))

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
        if path == "/v0/updates.json":
            return send_json(request, {"items": list(self.updates), "profiles": []})
        if path == "/v0/maxitem.json":
            return send_json(request, max((i for i in self.items if self.released(i)), default=0))
        match = re.fullmatch(r"/v0/item/(\d+)\.json", path)
        if match:
            item_id = int(match.group(1))
            item = self.items.get(item_id) if self.released(item_id) else None
            return send_json(request, item)
        match = re.fullmatch(r"/api/v1/items/(\d+)", path)
        if match:
            tree = self.algolia_tree(int(match.group(1)))
            return send_json(request, tree) if tree else send(request, 404, b'{"error":"not found"}', "application/json")
        if path == "/api/v1/search_by_date":
            return send_json(request, self._search_by_date(parse_qs(parts.query)))
        send(request, 404, b"not found", "text/plain")

    def algolia_tree(self, item_id: int) -> dict | None:
        """An item with its replies nested, as Algolia's items endpoint answers: a deleted reply keeps its
        place with no author and no text; a dead one is left out."""
        item = self.items.get(item_id) if self.released(item_id) else None
        if not item or item.get("dead"):
            return None
        deleted = bool(item.get("deleted"))
        children = [tree for kid in item.get("kids") or [] if (tree := self.algolia_tree(int(kid)))]
        return {"id": item_id, "type": item.get("type"), "created_at_i": item.get("time"),
                "author": None if deleted else item.get("by"), "text": None if deleted else item.get("text"),
                "title": item.get("title"), "url": item.get("url"), "points": item.get("score"),
                "parent_id": item.get("parent"), "children": children}

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
        self.algolia_searches.append((low, high))
        # Like Algolia: at most 1,000 hits a page, and no hit past the first `algolia_max_hits` of a query.
        per_page = min(int(query.get("hitsPerPage", ["20"])[0]), 1000)
        page = int(query.get("page", ["0"])[0])
        window = hits[: self.algolia_max_hits][page * per_page : (page + 1) * per_page]
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


def send_page(request: BaseHTTPRequestHandler, body: bytes, content_type: str = "text/html") -> None:
    """200 with an ETag and Last-Modified, or 304 when the request's If-None-Match matches."""
    validators = {"ETag": '"' + hashlib.sha256(body).hexdigest()[:20] + '"', "Last-Modified": LAST_MODIFIED}
    if request.headers.get("If-None-Match") == validators["ETag"]:
        return send(request, 304, b"", None, headers=validators)
    send(request, 200, body, content_type, headers=validators)


def redirect_to(location: str):
    """A route that answers 302 to `location`."""

    def answer(request: BaseHTTPRequestHandler) -> None:
        request.send_response(302)
        request.send_header("Location", location)
        request.send_header("Content-Length", "0")
        request.end_headers()

    return answer


def send_json(request: BaseHTTPRequestHandler, value) -> None:
    send(request, 200, json.dumps(value).encode("utf-8"), "application/json; charset=utf-8")


# -- corpus-fed replays -------------------------------------------------------------------------


def load_corpus(replay: ReplayServer, url_stories: int = 30, text_posts: int = 3, dead: int = 3,
                deleted: int = 2, page_names: list[str] | None = None,
                sites: list[int] | None = None, comments: bool = False) -> dict[int, corpus.CorpusPage]:
    """Feed the replay from the corpus: returns story id → the page its URL now points at.

    Page i goes to site `sites[i]` (for example `corpus.site_groups`), by default to the replay's sites
    in turn (i mod sites). `comments`: serve the real comment threads of the stories served."""
    items = corpus.hn_items()
    pages = [p for p in corpus.pages() if page_names is None or p.name in page_names]
    stories = [i for i in items if i.get("type") == "story"]
    with_url = [s for s in stories if s.get("url") and not s.get("dead") and not s.get("deleted")]
    text = [s for s in stories if s.get("text") and not s.get("url") and not s.get("dead") and not s.get("deleted")]
    mapped: dict[int, corpus.CorpusPage] = {}
    for number, (story, page) in enumerate(zip(with_url[:url_stories], pages, strict=False)):
        item = copy.deepcopy(story)
        item["title"] = page.title
        site = sites[number] if sites is not None else number % len(replay.servers)
        item["url"] = replay.add_page(f"/pages/{page.name}.html", page.body, _content_type(page), site=site)
        replay.add_item(item)
        mapped[item["id"]] = page
    for story in text[:text_posts]:
        replay.add_item(copy.deepcopy(story))
    if comments:
        by_id = {int(i["id"]): i for i in items if i.get("id") is not None}
        for story_id in [*mapped, *(s["id"] for s in text[:text_posts])]:
            _add_thread(replay, by_id, story_id)
    for story in [s for s in stories if s.get("dead")][:dead]:
        replay.add_item(copy.deepcopy(story))
    for story in [s for s in stories if s.get("deleted")][:deleted]:
        replay.add_item(copy.deepcopy(story))
    return mapped


def _add_thread(replay: ReplayServer, by_id: dict[int, dict], story_id: int) -> None:
    pending = list(by_id.get(story_id, {}).get("kids") or [])
    while pending:
        comment = by_id.get(int(pending.pop()))
        if comment:
            replay.add_item(copy.deepcopy(comment))
            pending.extend(comment.get("kids") or [])


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
