"""Polite fetching of one batch against a replay of three sites: robots.txt, per-host limits, 429, 304."""

from __future__ import annotations

import time

import pytest

from include.config import FetchConfig, PolitenessConfig
from include.crawl.polite_fetch import PoliteFetcher, Validators
from include.records import Page, Story, StoryOutcome
from tests.replay_server import ReplayServer, redirect_to, send

PAGE = "<html><body><article><h1>{0}</h1><p>" + "Words about {0} for the reader. " * 20 + "</p></article></body></html>"
K, R = 2, 5.0
SLOW_PAGE = 0.5  # seconds a busy-site page takes: longer than 1/R


@pytest.fixture
def sites(tmp_path, monkeypatch):
    monkeypatch.setenv("HN_INGEST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HN_INGEST_STAGING_URL", (tmp_path / "staging").as_uri())
    replay = ReplayServer(page_hosts=3)
    stories = []
    for n in range(12):  # a backfill's worth of one busy site
        stories.append(Story(n, f"Busy {n}", replay.add_page(f"/busy/{n}.html", PAGE.format(f"busy {n}").encode(), site=0),
                             None, 0))
        # Slower than 1/R: requests overlap unless the gate holds them to K (a page answered in
        # milliseconds would end before the next began, and a broken gate would go unseen).
        fast = replay.routes[f"/busy/{n}.html"]
        replay.routes[f"/busy/{n}.html"] = lambda request, fast=fast: (time.sleep(SLOW_PAGE), fast(request))
    replay.robots[1] = "User-agent: *\nDisallow: /private/\n"
    stories.append(Story(100, "Private", replay.add_page("/private/a.html", PAGE.format("private").encode(), site=1), None, 0))
    stories.append(Story(101, "Public", replay.add_page("/public/b.html", PAGE.format("public").encode(), site=1), None, 0))
    asked: list[float] = []

    def slow_down_once(request):
        asked.append(time.monotonic())
        if len(asked) == 1:
            return send(request, 429, b"slow down", "text/plain", headers={"Retry-After": "3"})
        send(request, 200, PAGE.format("limited").encode(), "text/html")

    replay.routes["/limited.html"] = slow_down_once
    stories.append(Story(200, "Limited", f"{replay.site_urls[2]}/limited.html", None, 0))
    stories.append(Story(201, "After the pause", replay.add_page("/after.html", PAGE.format("after").encode(), site=2), None, 0))
    with replay:
        yield replay, stories, asked


def fetcher() -> PoliteFetcher:
    return PoliteFetcher(FetchConfig(allow_loopback=True), PolitenessConfig(host_concurrency=K, host_rate=R), "fp")


def test_a_batch_keeps_to_robots_and_the_limits_and_waits_out_a_429(sites):
    replay, stories, asked = sites
    results = fetcher().fetch_all(stories, {})
    busy = replay.site_visits(0, "/busy/")
    print(f"busy site: {len(busy)} requests, peak concurrency {replay.peak_concurrency(0)}, "
          f"peak requests in 1 s {replay.peak_rate(0)}")
    assert len(busy) == 12 and all(isinstance(results[n], Page) for n in range(12))
    assert replay.peak_concurrency(0) <= K
    starts = sorted(v.start for v in busy)
    assert replay.min_gap(0) >= 1 / R - 0.02
    # robots.txt: the disallowed page is never asked for; asked once per site.
    assert not replay.site_visits(1, "/private/")
    skipped = results[100]
    assert isinstance(skipped, StoryOutcome) and skipped.status == "skipped"
    assert "robots.txt disallows /private/a.html" in skipped.reason and "story 100" in skipped.reason
    assert isinstance(results[101], Page)
    assert [len(replay.site_visits(site, "/robots.txt")) for site in range(3)] == [1, 1, 1]
    # The other sites are not queued behind the busy one.
    assert replay.site_visits(1, "/public/")[0].start < starts[-1]
    # 429 with Retry-After 3: that story goes to the time-based retry with the site's wait, and the
    # site gets nothing for 3 s: its other page is asked for only after the pause.
    limited = results[200]
    assert isinstance(limited, StoryOutcome) and limited.status == "failed" and limited.retry_after == 3.0
    assert "HTTP 429" in limited.reason and len(asked) == 1
    after = replay.site_visits(2, "/after.html")
    assert isinstance(results[201], Page) and after[0].start - asked[0] >= 3.0 - 0.05


def test_robots_answers_are_shared_through_the_staging_base(sites):
    replay, stories, _ = sites
    fetcher().fetch_all(stories[12:14], {})
    fetcher().fetch_all(stories[12:14], {})  # a second task (another worker) reads the cached answer
    assert len(replay.site_visits(1, "/robots.txt")) == 1


def test_an_unchanged_page_answers_304_and_is_not_read_again(sites):
    replay, stories, _ = sites
    first = fetcher().fetch_all(stories[:2], {})
    known = {n: Validators(first[n].etag, first[n].last_modified) for n in range(2)}
    assert all(v.etag and v.last_modified for v in known.values())
    again = fetcher().fetch_all(stories[:2], known)
    for n in range(2):
        assert isinstance(again[n], StoryOutcome) and again[n].unchanged and again[n].status == "ingested"
    assert [v.status for v in replay.site_visits(0, "/busy/")] == [200, 200, 304, 304]
    assert replay.site_visits(0, "/busy/")[-1].headers.get("If-None-Match") == known[1].etag


def test_robots_can_be_turned_off_for_a_site_that_allows_us(sites):
    replay, stories, _ = sites
    polite = PoliteFetcher(FetchConfig(allow_loopback=True), PolitenessConfig(obey_robots=False), "fp")
    results = polite.fetch_all(stories[12:13], {})
    assert isinstance(results[100], Page) and not replay.site_visits(1, "/robots.txt")


def test_robots_txt_is_fetched_under_the_page_rules(sites, tmp_path):
    """Its redirects are checked by the address guard, and a huge one is read up to the cap only."""
    replay, _, _ = sites

    def to_metadata(request):
        request.send_response(302)
        request.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        request.send_header("Content-Length", "0")
        request.end_headers()

    replay.routes["/robots.txt@0"] = to_metadata
    # A 2 MB robots.txt: its first rules count, the rest is never read.
    replay.robots[1] = "User-agent: *\nDisallow: /private/\n" + "# padding\n" * 200_000
    first = Story(300, "Behind a bad robots.txt", replay.add_page("/a.html", PAGE.format("a").encode(), site=0), None, 0)
    second = Story(301, "Private", f"{replay.site_urls[1]}/private/a.html", None, 0)
    results = fetcher().fetch_all([first, second], {})
    held = results[300]
    assert isinstance(held, StoryOutcome) and held.status == "failed" and held.stage == "robots"
    assert "robots.txt unavailable" in held.reason and "refused" in held.reason
    assert not replay.site_visits(0, "/a.html")  # its page waits for its retry, unrequested
    assert isinstance(results[301], StoryOutcome) and results[301].status == "skipped"


def test_a_redirect_to_another_site_keeps_to_that_sites_robots_and_limits(tmp_path, monkeypatch):
    """Stories on site 0 whose pages redirect to site 1: site 1's robots.txt and limits decide, and the
    stored story keeps the URL HN gave it."""
    monkeypatch.setenv("HN_INGEST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HN_INGEST_STAGING_URL", (tmp_path / "staging").as_uri())
    replay = ReplayServer(page_hosts=2)
    replay.robots[1] = "User-agent: *\nDisallow: /private/\n"

    stories = []
    for n in range(6):
        target = replay.add_page(f"/public/{n}.html", PAGE.format(f"moved {n}").encode(), site=1)
        replay.routes[f"/moved/{n}.html"] = redirect_to(target)
        stories.append(Story(n, f"Moved {n}", f"{replay.site_urls[0]}/moved/{n}.html", None, 0))
    secret = replay.add_page("/private/x.html", PAGE.format("private").encode(), site=1)
    replay.routes["/moved/private.html"] = redirect_to(secret)
    stories.append(Story(99, "Into a disallowed path", f"{replay.site_urls[0]}/moved/private.html", None, 0))
    with replay:
        results = fetcher().fetch_all(stories, {})
    assert not replay.site_visits(1, "/private/")  # the redirect's site said no: never asked
    assert isinstance(results[99], StoryOutcome) and results[99].status == "skipped"
    assert results[99].url == stories[-1].url and "robots.txt disallows /private/x.html" in results[99].reason
    for n in range(6):
        page = results[n]
        assert isinstance(page, Page) and page.story.url == stories[n].url
        assert page.final_url.startswith(replay.site_urls[1]) and "moved" in page.html
    assert len(replay.site_visits(1, "/robots.txt")) == 1
    assert replay.peak_concurrency(1) <= K and replay.min_gap(1) >= 1 / R - 0.02
