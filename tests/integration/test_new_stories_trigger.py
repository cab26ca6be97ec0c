"""NewStoriesTrigger against the replay over real HTTP: fires on a new story, ends the task skipped when none comes."""

from __future__ import annotations

import asyncio
import sys
import time

from include.config import PROJECT_ROOT
from tests.replay_server import ReplayServer, load_corpus, send

sys.path.insert(0, str(PROJECT_ROOT / "plugins"))

from airflow.triggers.base import TaskSkippedEvent  # noqa: E402
from hn_providers.triggers.hacker_news import NewStoriesTrigger  # noqa: E402


def first_event(trigger: NewStoriesTrigger):
    async def run():
        async for event in trigger.run():
            return event

    return asyncio.run(run())


def test_a_story_published_while_watching_fires_at_once(require_corpus):
    replay = ReplayServer()
    load_corpus(replay, url_stories=3, text_posts=0, dead=0, deleted=0)
    newest = max(replay.items)
    replay.release_at[newest] = time.monotonic() + 2
    with replay:
        seen = [i for i in replay.items if i != newest]
        started = time.monotonic()
        event = first_event(NewStoriesTrigger(replay.api_url, seen, until=time.time() + 20, poll_seconds=0.5))
        waited = time.monotonic() - started
    assert event.payload == {"new_story_ids": [newest]}
    assert 1.5 < waited < 6


def test_nothing_new_until_the_deadline_skips_the_task_and_a_failing_api_is_not_fatal(require_corpus):
    replay = ReplayServer()
    load_corpus(replay, url_stories=2, text_posts=0, dead=0, deleted=0)
    calls = []

    def flaky(request):
        calls.append(time.monotonic())
        if len(calls) % 2:
            send(request, 503, b"unavailable", "text/plain")
        else:
            time.sleep(30)  # a poll that hangs: cut at the deadline, not at the request timeout

    replay.routes["/v0/newstories.json"] = flaky
    with replay:
        started = time.monotonic()
        event = first_event(NewStoriesTrigger(replay.api_url, [], until=time.time() + 3, poll_seconds=0.5))
        waited = time.monotonic() - started
    assert isinstance(event, TaskSkippedEvent)
    assert 2 < waited < 5 and len(calls) >= 2  # kept asking through the errors, then gave up at the deadline


def test_the_trigger_round_trips_through_its_serialized_form():
    trigger = NewStoriesTrigger("http://127.0.0.1:1/v0", [3, 2, 1], until=123.5, poll_seconds=2)
    classpath, kwargs = trigger.serialize()
    assert classpath == "hn_providers.triggers.hacker_news.NewStoriesTrigger"
    assert NewStoriesTrigger(**kwargs).serialize() == (classpath, kwargs)
