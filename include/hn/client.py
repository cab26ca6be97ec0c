"""The story source: the Hacker News Firebase API for new stories and items, Algolia for time windows.

Algolia allows about 10,000 requests an hour per address; `algolia_turn`, when given, waits for a turn
under a budget shared by every worker (`include.crawl.host_gate.request_budget`) before each call.

Errors of the API itself (down, 5xx, malformed JSON after retries) raise `HackerNewsUnavailable` so
the Airflow task fails and retries; a story that is missing, dead or malformed is a `StoryOutcome`.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from include.config import ALGOLIA_API_URL, HN_API_URL, USER_AGENT
from include.records import Story, StoryOutcome

log = logging.getLogger(__name__)


class HackerNewsUnavailable(RuntimeError):
    """The API could not be read after retries: the run must fail and be retried by Airflow."""


class UnexpectedAnswer(RuntimeError):
    """An answer other than 200 (5xx, 429, an outage page): retried."""


_RETRYABLE = (requests.RequestException, json.JSONDecodeError, UnexpectedAnswer)


@dataclass(frozen=True)
class HackerNewsClient:
    base_url: str = HN_API_URL
    algolia_url: str = ALGOLIA_API_URL
    timeout: float = 10.0
    attempts: int = 3
    # Waits up to the given seconds for a turn to call Algolia; False when none came (None: no budget).
    algolia_turn: Callable[[float], bool] | None = None
    # Algolia answers at most this many hits per query (paginationLimitedTo): a longer window is split.
    algolia_max_hits: int = 1000

    def __post_init__(self) -> None:
        session = requests.Session()
        session.trust_env = False  # a proxy from the environment must not reroute the API
        session.mount("http://", HTTPAdapter(pool_maxsize=16))
        session.mount("https://", HTTPAdapter(pool_maxsize=16))
        session.headers["User-Agent"] = USER_AGENT
        object.__setattr__(self, "_session", session)

    def _get_json(self, url: str, params: dict | None = None):
        """GET and decode JSON, retrying errors, non-200 answers and truncated bodies with backoff."""
        retrying = Retrying(stop=stop_after_attempt(self.attempts), wait=wait_exponential(multiplier=0.5),
                            retry=retry_if_exception_type(_RETRYABLE))
        try:
            return retrying(self._get_json_once, url, params)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise HackerNewsUnavailable(f"Hacker News API unavailable at {url}: {type(cause).__name__}: {cause}") \
                from cause

    def _get_json_once(self, url: str, params: dict | None):
        response = self._session.get(url, params=params, timeout=self.timeout)
        if response.status_code != 200:
            raise UnexpectedAnswer(f"HTTP {response.status_code}")
        return response.json()  # a truncated body raises a JSON error: worth another try like a 5xx

    def new_story_ids(self) -> list[int]:
        """The newest stories (up to 500), newest first."""
        return [int(i) for i in self._get_json(f"{self.base_url}/newstories.json") or []]

    def updated_item_ids(self) -> list[int]:
        """Items changed recently (edited, killed, deleted, new comments), as `/v0/updates.json` lists them."""
        return [int(i) for i in (self._get_json(f"{self.base_url}/updates.json") or {}).get("items") or []]

    def get_item(self, item_id: int) -> dict | None:
        return self._get_json(f"{self.base_url}/item/{item_id}.json")

    def thread(self, story_id: int) -> dict:
        """A story with its whole comment tree in one request (Algolia's items endpoint): nested
        `children`, each with `id`, `author`, `text` (HTML), `created_at_i`, `parent_id`.

        Raises `HackerNewsUnavailable` at once when Algolia's budget has no turn within a second: the
        caller walks the Firebase items instead, which has no such budget."""
        self._wait_for_algolia(1.0)
        return self._get_json(f"{self.algolia_url}/items/{story_id}")

    def story_ids_created_between(self, start: int, end: int) -> list[int]:
        """Ids of stories created in [start, end) (Unix seconds), oldest first, from Algolia.

        One request per window of at most `algolia_max_hits` stories (an hour of HN is ~55): a window
        with more is split in halves until each part fits, since Algolia serves no hit past that count."""
        self._wait_for_algolia(600.0)
        body = self._get_json(f"{self.algolia_url}/search_by_date", params={
            "tags": "story",
            "numericFilters": f"created_at_i>={start},created_at_i<{end}",
            "hitsPerPage": self.algolia_max_hits,
        })
        hits = body.get("hits", [])
        if int(body.get("nbHits", len(hits))) > len(hits) and end - start > 1:
            middle = (start + end) // 2
            return sorted(set(self.story_ids_created_between(start, middle))
                          | set(self.story_ids_created_between(middle, end)))
        return sorted({int(hit["objectID"]) for hit in hits})

    def _wait_for_algolia(self, max_wait: float) -> None:
        if self.algolia_turn is not None and not self.algolia_turn(max_wait):
            raise HackerNewsUnavailable(f"no turn in Algolia's request budget within {max_wait:.0f} s "
                                        f"(HN_INGEST_ALGOLIA_RATE requests/s across every worker)")


def story_from_item(item_id: int, item: dict | None) -> Story | StoryOutcome:
    """Turn an API item into a `Story`, or say why it is skipped (permanently, never retried). A null
    item is not a deletion: HN answers null for an id it has not propagated yet (or for a moment), so the
    story fails and is retried later (the retry policy's waits)."""

    def skipped(reason: str, **fields) -> StoryOutcome:
        return StoryOutcome(item_id, "skipped", reason=f"story {item_id}: {reason}", stage="item", **fields)

    if item is None:
        return StoryOutcome(item_id, "failed", reason=f"story {item_id}: item not available yet (null); tried again later",
                            stage="item")
    if item.get("deleted"):
        return skipped("deleted")
    title = html.unescape(str(item.get("title") or "")).strip()
    if item.get("dead"):
        return skipped("dead", title=title)
    if item.get("type") != "story":
        return skipped(f"not a story (type {item.get('type')!r})", title=title)
    if not title:
        return skipped("malformed item: no title")
    if not isinstance(item.get("time"), int):
        return skipped("malformed item: no creation time", title=title)
    url = (item.get("url") or "").strip() or None
    text_html = (item.get("text") or "").strip() or None
    if url and not url.lower().startswith(("http://", "https://")):
        if not text_html:
            return skipped(f"unsupported URL scheme in {url[:200]!r}", title=title, url=url[:2000])
        url = None
    if not url and not text_html:
        return skipped("title only: no URL and no text", title=title)
    return Story(id=item_id, title=title, url=url, text_html=text_html, time=item["time"], by=item.get("by"),
                 score=_count(item.get("score")), descendants=_count(item.get("descendants")))


def _count(value) -> int:
    """A count field as an int; the API omits it on some items (old ones have no `descendants`)."""
    return value if isinstance(value, int) and value >= 0 else 0
