"""`airflow dags test` runs against a replay of three sites: the crawler keeps to robots.txt and each
site's limits, waits out a 429 in wall time, retries a failing page on its later attempt, and a
reindex of unchanged pages is answered 304 and embeds nothing.

Runs: (1) first ingest; (2) at once: the failing page is due (3 s backoff), the 429 page is not (it
asked for 40 s); (3) the failing page recovers; (4) once the 429 page is due, it is ingested; (5) a
reindex: every page answers 304.
"""

from __future__ import annotations

import time

import pytest

from tests.airflow_cli import AirflowEnv
from tests.invariants import assert_no_duplicates, assert_stories_whole
from tests.replay_server import ReplayServer, load_corpus, send, send_page

pytestmark = pytest.mark.e2e

K, R = 2, 2.0
RETRY_AFTER = 40
ARTICLE = "<html><body><article><h1>{0}</h1><p>" + "Sentences about {0} to embed. " * 30 + "</p></article></body></html>"


@pytest.fixture(scope="module")
def crawl(require_corpus, airflow_home, tmp_path_factory):
    replay = ReplayServer(page_hosts=3)
    mapped = load_corpus(replay, url_stories=12, text_posts=0, dead=0, deleted=0)  # 4 pages per site
    on_site_1 = [i for i in mapped if replay.items[i]["url"].startswith(replay.site_urls[1])]
    banned = on_site_1[0]
    banned_path = replay.items[banned]["url"].removeprefix(replay.site_urls[1])
    replay.robots[1] = f"User-agent: *\nDisallow: {banned_path}\n"
    served = {"/flaky.html": 0, "/limited.html": 0}
    asked_limited: list[float] = []

    def flaky(request):
        served["/flaky.html"] += 1
        if served["/flaky.html"] <= 2:
            return send(request, 500, b"down", "text/html")
        send_page(request, ARTICLE.format("a page back after two errors").encode())

    def limited(request):
        asked_limited.append(time.monotonic())
        if len(asked_limited) == 1:
            return send(request, 429, b"slow down", "text/plain", headers={"Retry-After": str(RETRY_AFTER)})
        send_page(request, ARTICLE.format("a site that asked us to wait").encode())

    replay.routes["/flaky.html"] = flaky
    replay.routes["/limited.html"] = limited
    base = max(replay.items) + 1
    for offset, (path, site) in enumerate((("/flaky.html", 0), ("/limited.html", 2))):
        replay.add_item({"id": base + offset, "type": "story", "by": "t", "time": 1609282000 + offset,
                         "title": f"Story at {path}", "url": f"{replay.site_urls[site]}{path}"})
    flaky_id, limited_id = base, base + 1
    env = AirflowEnv(airflow_home, tmp_path_factory.mktemp("crawl-data"), {
        **replay.connection_env(), "HN_INGEST_HOST_CONCURRENCY": str(K), "HN_INGEST_HOST_RATE": str(R),
        "HN_INGEST_RETRY_BACKOFF": "3,3,3"})
    runs, states = [], []
    with replay:
        for number in range(4):
            if number == 3:  # wait for the 429 page's time, as a scheduled run would
                time.sleep(max(0.0, asked_limited[0] + RETRY_AFTER + 2 - time.monotonic()))
            elif number:
                time.sleep(3.5)
            runs.append(env.dags_test({"batch_size": 4}))
            states.append({r["story_id"]: r for r in env.status()["story_rows"]})
        runs.append(env.dags_test({"reindex": True, "batch_size": 4}))
        final = env.status(chunks=True)
    return {"replay": replay, "runs": runs, "states": states, "final": final, "banned": banned,
            "banned_path": banned_path, "flaky": flaky_id, "limited": limited_id, "asked_limited": asked_limited,
            "served": served}


def test_every_run_succeeds(crawl):
    for run in crawl["runs"]:
        assert run.succeeded, run.log[-4000:]


def test_robots_txt_disallowed_page_is_never_requested_and_recorded(crawl):
    replay = crawl["replay"]
    assert not [v for v in replay.visits if v.site == 1 and v.path == crawl["banned_path"]]
    row = crawl["states"][0][crawl["banned"]]
    assert row["status"] == "skipped" and f"robots.txt disallows {crawl['banned_path']}" in row["reason"]
    assert crawl["final"]["story_rows"] and crawl["banned"] not in {r["story_id"] for r in crawl["final"]["story_rows"]
                                                                   if r["status"] == "ingested"}


def test_no_site_saw_more_than_k_at_once_or_more_than_r_per_second(crawl):
    replay = crawl["replay"]
    for site in range(3):
        print(f"site {site}: {len(replay.crawl_visits(site))} requests, peak concurrency {replay.peak_concurrency(site)}, "
              f"peak in 1 s {replay.peak_rate(site)}, min gap {replay.min_gap(site):.3f} s")
        assert replay.peak_concurrency(site) <= K
        assert replay.min_gap(site) >= 1 / R - 0.05


def test_a_429_is_retried_after_the_time_the_site_asked_for(crawl):
    first, second = crawl["states"][0][crawl["limited"]], crawl["states"][1][crawl["limited"]]
    assert first["status"] == "failed" and "HTTP 429" in first["reason"] and first["attempts"] == 1
    assert first["next_attempt_at"] >= first["updated_at"] + RETRY_AFTER
    assert second == first  # run 2 came before its time: not asked again, attempts unchanged
    asked = crawl["asked_limited"]  # runs 1 and 4 (2 and 3 came too early), then the reindex's 304
    assert len(asked) == 3 and asked[1] - asked[0] >= RETRY_AFTER
    assert crawl["states"][3][crawl["limited"]]["status"] == "ingested"


def test_a_page_that_fails_twice_is_ingested_on_its_later_attempt(crawl):
    flaky = [s[crawl["flaky"]] for s in crawl["states"]]
    assert [s["status"] for s in flaky[:3]] == ["failed", "failed", "ingested"]
    assert [s["attempts"] for s in flaky[:2]] == [1, 2] and flaky[2]["chunk_count"] > 0
    assert crawl["served"]["/flaky.html"] == 4  # three attempts, no hammering; then the reindex asks once


def test_a_reindex_of_unchanged_pages_gets_304_and_embeds_nothing(crawl):
    reindex, replay = crawl["runs"][-1], crawl["replay"]
    assert reindex.lines("reindex run:")
    embedded = reindex.lines("embedded ")
    assert embedded and all(" embedded 0 chunks" in line for line in embedded), embedded
    assert [v for v in replay.visits if v.status == 304]
    before, after = crawl["states"][3], {r["story_id"]: r for r in crawl["final"]["story_rows"]}
    ingested = [i for i, r in before.items() if r["status"] == "ingested"]
    assert all(after[i]["status"] == "ingested" and after[i]["chunk_count"] == before[i]["chunk_count"] for i in ingested)
    assert_no_duplicates(crawl["final"])
    assert_stories_whole(crawl["final"])
