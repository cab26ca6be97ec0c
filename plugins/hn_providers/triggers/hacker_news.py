"""Trigger that watches `/v0/newstories.json` on the triggerer, so an idle run holds no worker slot."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSkippedEvent, TriggerEvent


class NewStoriesTrigger(BaseTrigger):
    """Poll the new-stories list until it shows an id not in `seen_ids`, or until `until` (Unix time).

    Fires once: ``{"new_story_ids": [...]}`` resumes the task, which plans the new stories. When
    `until` passes with nothing new, the task ends *skipped* right here (`TaskSkippedEvent`), without
    going back to a worker: an idle run costs one short task start. A failed poll is not an error:
    the list is asked again at the next poll.

    :param base_url: the Firebase base URL (ending in ``/v0``).
    :param seen_ids: the ids listed when the task deferred.
    :param until: Unix time at which to stop watching (the next run is due).
    :param poll_seconds: seconds between polls.
    """

    def __init__(self, base_url: str, seen_ids: list[int], until: float, poll_seconds: float = 1.0) -> None:
        super().__init__()
        self.base_url = base_url
        self.seen_ids = list(seen_ids)
        self.until = until
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"base_url": self.base_url, "seen_ids": self.seen_ids, "until": self.until,
                 "poll_seconds": self.poll_seconds})

    async def run(self):
        import httpx

        from include.config import USER_AGENT

        seen = set(self.seen_ids)
        # trust_env off: a proxy from the environment must not reroute the API (as in include.hn.client).
        async with httpx.AsyncClient(timeout=10.0, trust_env=False, headers={"User-Agent": USER_AGENT}) as client:
            while time.time() + self.poll_seconds < self.until:
                await asyncio.sleep(self.poll_seconds)
                try:
                    # never past the deadline, however slow the API
                    timeout = max(0.5, min(10.0, self.until - time.time()))
                    response = await client.get(f"{self.base_url}/newstories.json", timeout=timeout)
                    listed = [int(i) for i in (response.json() or [])] if response.status_code == 200 else []
                except (httpx.HTTPError, ValueError, TypeError) as exc:
                    self.log.info("new stories not readable (%s); asking again", exc)
                    continue
                new = sorted(set(listed) - seen, reverse=True)
                if new:
                    yield TriggerEvent({"new_story_ids": new})
                    return
        self.log.info("no new story until the next run: this run ends skipped")
        yield TaskSkippedEvent()
