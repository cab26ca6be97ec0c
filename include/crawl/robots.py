"""robots.txt: fetched once per host, shared by every worker through the staging base, obeyed.

What an answer means follows RFC 9309: a 2xx body is parsed (Protego, Scrapy's parser); any 4xx
(no robots.txt) allows everything; a 5xx, a 429 or no answer at all means the site cannot tell us its
rules right now, so its pages wait for the time-based retry. Answers are cached under
`<staging base>/robots-cache/` for `HN_INGEST_ROBOTS_TTL` seconds (a failure for a minute only).
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from protego import Protego

from include.config import USER_AGENT
from include.crawl.fetch import FetchError, PageFetcher
from include.shared_storage import resolve, write_whole

PRODUCT_TOKEN = USER_AGENT.split("/")[0]  # the name robots.txt groups address: "hn-rag-ingest"
CACHE_PREFIX = "robots-cache"
UNAVAILABLE_TTL = 60.0


def origin(url: str) -> str:
    """The host a robots.txt and the per-host limits apply to: scheme, name and port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"


@dataclass(frozen=True)
class RobotsRules:
    origin: str
    status: int  # HTTP status of robots.txt; 0 when it could not be fetched
    text: str = ""
    problem: str = ""  # why the rules are unknown (5xx, 429, connection failed)
    fetched_at: float = 0.0

    @property
    def available(self) -> bool:
        return not self.problem

    def allows(self, url: str) -> bool:
        if self.status != 200:
            return True  # 4xx: no robots.txt, so no rules
        return self._parsed().can_fetch(url, PRODUCT_TOKEN)

    def crawl_delay(self) -> float:
        if self.status != 200:
            return 0.0
        parsed = self._parsed()
        delay = parsed.crawl_delay(PRODUCT_TOKEN) or 0.0
        rate = parsed.request_rate(PRODUCT_TOKEN)
        if rate and rate.requests:
            delay = max(delay, rate.seconds / rate.requests)
        return float(delay)

    def _parsed(self) -> Protego:
        return _parse(self.text)

    def expired(self, ttl: float, now: float) -> bool:
        return now - self.fetched_at > (ttl if self.available else UNAVAILABLE_TTL)


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> Protego:
    """Parsed once per distinct file: every page of a batch asks the same site's rules."""
    return Protego.parse(text)


def fetch_rules(host: str, fetcher: PageFetcher, max_bytes: int,
                before_request: Callable[[str], None] | None = None) -> RobotsRules:
    """Ask `host` for its robots.txt, with every limit of a page fetch (guard, deadline, size cap)."""
    now = time.time()
    try:
        answer = fetcher.fetch_text(f"{host}/robots.txt", max_bytes, before_request)
    except FetchError as exc:
        return RobotsRules(host, 0, problem=f"robots.txt unavailable ({exc})", fetched_at=now)
    if answer.status == 429 or answer.status >= 500:
        return RobotsRules(host, answer.status, problem=f"robots.txt unavailable (HTTP {answer.status})",
                           fetched_at=now)
    return RobotsRules(host, answer.status, answer.text if answer.status == 200 else "", fetched_at=now)


class RobotsCache:
    """robots.txt answers under the staging base, so every worker of every host shares them."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl

    def get(self, host: str) -> RobotsRules | None:
        path = resolve(f"{CACHE_PREFIX}/{_key(host)}.json")
        try:
            rules = RobotsRules(**json.loads(path.read_bytes()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        return None if rules.expired(self.ttl, time.time()) else rules

    def put(self, rules: RobotsRules) -> None:
        write_whole(resolve(f"{CACHE_PREFIX}/{_key(rules.origin)}.json"), json.dumps(asdict(rules)).encode("utf-8"))


def _key(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", host)
