"""Fetch a batch's pages concurrently while keeping to each host's robots.txt and limits.

One loop hands out requests: for each host with stories left it asks the shared `HostGate` for a
lease and, when one is granted, starts the fetch on the thread pool; a host that must wait is passed
over, so the batch never idles on one host while another's pages could be fetched. A host paused by a
429/503 for longer than `max_host_wait` hands its remaining stories to the time-based retry unrequested.
A redirect to another site is not followed inside the fetch: the story is queued on that site, under its
robots.txt and its limits, and fetched from there (at most `max_redirects` such moves).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from include.config import FetchConfig, PolitenessConfig
from include.crawl.fetch import FetchError, PageFetcher, RedirectedElsewhere, RetryLater
from include.crawl.host_gate import HostGate, Lease, Wait, host_gate
from include.crawl.robots import RobotsCache, RobotsRules, fetch_rules, origin
from include.records import Page, Story, StoryOutcome, problem_outcome

log = logging.getLogger(__name__)

DEFAULT_PAUSE = 60.0  # a 429 without Retry-After
IDLE_POLL = 0.25  # longest sleep while every host waits on its rate or another worker


@dataclass(frozen=True)
class Validators:
    etag: str = ""
    last_modified: str = ""


class PoliteFetcher:
    def __init__(self, fetch_config: FetchConfig, config: PolitenessConfig, fingerprint: str,
                 gate: HostGate | None = None) -> None:
        self.fetcher = PageFetcher(fetch_config)
        self.max_site_moves = fetch_config.max_redirects
        self.concurrency = fetch_config.concurrency
        self.config = config
        self.fingerprint = fingerprint
        # A lease outlives the longest fetch, so only a dead worker's lease is ever reclaimed by expiry.
        self.gate = gate or host_gate(config, lease_seconds=fetch_config.total_deadline + 30)
        self.robots = RobotsCache(config.robots_ttl)

    def fetch_all(self, stories: list[Story], validators: dict[int, Validators]) -> dict[int, Page | StoryOutcome]:
        """Each story's page, or the outcome that ends it here (skipped by robots.txt, failed, deferred)."""
        results: dict[int, Page | StoryOutcome] = {}
        queues: dict[str, deque[Story]] = {}
        self._moved: dict[int, tuple[Story, int]] = {}  # story id -> (the story as HN has it, moves so far)
        for story in stories:
            if story.is_text_post:
                results[story.id] = Page(story, story.text_html or "", None)
            else:
                queues.setdefault(origin(story.url), deque()).append(story)
        rules: dict[str, RobotsRules] = {}
        looked_up: set[str] = set()
        running: dict[Future, tuple[str, Story | None, Lease]] = {}
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            while queues or running:
                sleep = IDLE_POLL
                for host in list(queues):
                    if len(running) >= self.concurrency:
                        break
                    if any(h == host and s is None for h, s, _ in running.values()):
                        continue  # its robots.txt is on the way
                    if self.config.obey_robots and host not in rules:
                        if host not in looked_up and (cached := self.robots.get(host)) is not None:
                            rules[host] = cached
                        else:
                            looked_up.add(host)  # one staging read per site; a wait for its gate rereads nothing
                            sleep = min(sleep, self._start(pool, running, host, None, 0.0, results, queues))
                            continue
                    sleep = min(sleep, self._start_pages(pool, running, host, rules.get(host), validators,
                                                         results, queues))
                if running:
                    done, _ = wait(running, timeout=sleep, return_when=FIRST_COMPLETED)
                    for future in done:
                        self._finish(future, running.pop(future), rules, results, queues)
                elif queues:
                    time.sleep(sleep)
        return results

    def _start_pages(self, pool, running, host, robots: RobotsRules | None, validators, results, queues) -> float:
        queue = queues[host]
        if robots is not None and not robots.available:
            for story in queues.pop(host):
                results[story.id] = problem_outcome(self._as_stored(story), "failed", "robots",
                                                    f"{robots.problem}; page not requested")
            return IDLE_POLL
        delay = robots.crawl_delay() if robots is not None else 0.0
        sleep = IDLE_POLL
        while queue and len(running) < self.concurrency:
            story = queue[0]
            if robots is not None and not robots.allows(story.url):
                queue.popleft()
                moved = f" (on {host}, where {self._as_stored(story).url[:200]} redirects)" if story.id in self._moved else ""
                results[story.id] = problem_outcome(self._as_stored(story), "skipped", "robots",
                                                    f"robots.txt disallows {_path(story.url)}{moved}")
                continue
            # Validators belong to the story's own URL, not to a site it was redirected to.
            known = None if story.id in self._moved else validators.get(story.id)
            waited = self._start(pool, running, host, story, delay, results, queues, known)
            if waited:
                sleep = waited
                break
            queue.popleft()
        if not queue:
            queues.pop(host, None)
        return sleep

    def _start(self, pool, running, host, story, delay, results, queues, validators=None) -> float:
        """Start a robots.txt fetch (story None) or a page fetch if the gate allows; else the wait."""
        granted = self.gate.try_acquire(host, delay)
        if isinstance(granted, Wait):
            if granted.paused and granted.seconds > self.config.max_host_wait:
                self._defer_host(host, granted.seconds, results, queues)
                return 0.0
            return max(0.01, min(granted.seconds, IDLE_POLL))
        def sending(url: str) -> None:
            if story is not None and origin(url) != host:
                raise RedirectedElsewhere(url)  # before a byte is sent: that site's rules decide
            self.gate.mark_sent(granted, delay)

        if story is None:
            future = pool.submit(fetch_rules, host, self.fetcher, self.config.robots_max_bytes, sending)
        else:
            known = validators or Validators()
            future = pool.submit(self.fetcher.fetch_page, story.url, known.etag, known.last_modified, sending)
        running[future] = (host, story, granted)
        return 0.0

    def _finish(self, future: Future, started: tuple[str, Story | None, Lease], rules, results, queues) -> None:
        host, story, lease = started
        self.gate.release(lease)
        if story is None:
            robots = future.result()
            rules[host] = robots
            self.robots.put(robots)
            return
        original = self._as_stored(story)
        try:
            page = future.result()
        except RedirectedElsewhere as exc:
            moves = self._moved.get(story.id, (story, 0))[1] + 1
            if moves > self.max_site_moves:
                results[story.id] = problem_outcome(original, "failed", "fetch", f"more than {self.max_site_moves} "
                                                    f"redirects between sites (last to {exc.url[:200]})")
                return
            self._moved[story.id] = (original, moves)
            queues.setdefault(origin(exc.url), deque()).append(replace(story, url=exc.url))
            return
        except RetryLater as exc:
            pause = min(exc.seconds if exc.seconds is not None else DEFAULT_PAUSE, self.config.max_host_backoff)
            self.gate.pause(host, pause)
            log.info("%s asked to slow down (%s): no request to it for %.0f s", host, exc, pause)
            results[story.id] = problem_outcome(original, "failed", "fetch", str(exc), retry_after=exc.seconds)
            return
        except FetchError as exc:
            results[story.id] = problem_outcome(original, "failed", "fetch", str(exc))
            return
        if page.not_modified:
            results[story.id] = StoryOutcome(story.id, "ingested", story.title, original.url, unchanged=True,
                                              reason="page not modified since it was ingested (HTTP 304)",
                                              etag=page.etag, last_modified=page.last_modified,
                                              fingerprint=self.fingerprint)
            return
        results[story.id] = Page(original, page.html, page.final_url, page.etag, page.last_modified)

    def _as_stored(self, story: Story) -> Story:
        """The story as HN has it (a story moved to a redirect's site carries that site's URL meanwhile)."""
        return self._moved.get(story.id, (story, 0))[0]

    def _defer_host(self, host: str, seconds: float, results, queues) -> None:
        for story in queues.pop(host, ()):
            results[story.id] = problem_outcome(
                self._as_stored(story), "failed", "fetch", f"host asked to slow down; not requested for {seconds:.0f} s",
                retry_after=seconds, attempted=False)


def _path(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
