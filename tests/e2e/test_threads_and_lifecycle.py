"""`airflow dags test` with real comment threads in the replay, and stories that change after ingestion:
stories get comment chunks that stand on their own; a later run whose refresh step has come embeds only
the new comment and removes the deleted one; an edited story is ingested again in place; a killed story
loses its rows. Without a duplicate row.

Runs: (1) first ingest, stories posted two minutes ago (their first refresh step, 1 h, still ahead);
(2) in the replay a reply is added, a comment deleted, a story's title edited and a story killed (both
listed by /v0/updates.json); the refresh step set to 1 s so it has passed.
"""

from __future__ import annotations

import copy
import json
import time

import pytest

from include.config import ChunkConfig, EmbeddingConfig
from include.parse.chunking import TokenCounter, embedding_input
from include.records import CHUNK_ID_STRIDE
from tests.airflow_cli import AirflowEnv
from tests.invariants import assert_no_duplicates
from tests.replay_server import ReplayServer, load_corpus

pytestmark = pytest.mark.e2e

NEW_REPLY = "A fresh reply about quokkas: the replay added this comment after the first run."


def add_linked_discussion(replay: ReplayServer) -> tuple[int, int]:
    """An Ask HN post with a small thread, and a later story whose URL is that post's HN page."""
    base = max(replay.items) + 1
    ask, first, reply, second, link = range(base, base + 5)
    now = int(time.time()) - 120
    replay.add_item({"id": ask, "type": "story", "by": "asker", "time": now, "score": 40, "descendants": 3,
                     "title": "Ask HN: How do you keep a sourdough starter alive while travelling?",
                     "text": "I travel for weeks at a time and my starter dies every trip.<p>Freezing it did not "
                             "work for me. What do bakers here do?", "kids": [first, second]})
    replay.add_item({"id": first, "type": "comment", "by": "baker", "parent": ask, "time": now + 10, "kids": [reply],
                     "text": "Dry a thin layer on parchment paper, crumble it and keep it in a jar."})
    replay.add_item({"id": reply, "type": "comment", "by": "miller", "parent": first, "time": now + 20,
                     "text": "Seconded: dried flakes revived in two feedings after six months in my pantry."})
    replay.add_item({"id": second, "type": "comment", "by": "neighbour", "parent": ask, "time": now + 30,
                     "text": "Ask a neighbour to feed it once a week; a stiff starter in the fridge lasts a month."})
    replay.add_item({"id": link, "type": "story", "by": "poster", "time": now + 60, "score": 12, "descendants": 0,
                     "title": "Keeping sourdough alive on holiday (HN discussion)",
                     "url": f"https://news.ycombinator.com/item?id={ask}"})
    return ask, link


def summary(run) -> dict:
    return json.loads(run.lines("run summary: ")[-1].split("run summary: ", 1)[1])


def live_comments(replay: ReplayServer, story_id: int) -> set[int]:
    found, pending = set(), list(replay.items[story_id].get("kids") or [])
    while pending:
        item = replay.items.get(pending.pop()) or {}
        if item.get("text") and not item.get("dead") and not item.get("deleted"):
            found.add(item["id"])
        pending.extend(item.get("kids") or [])
    return found


@pytest.fixture(scope="module")
def threads(require_corpus, airflow_home, tmp_path_factory):
    replay = ReplayServer()
    mapped = load_corpus(replay, url_stories=16, text_posts=0, dead=0, deleted=0, comments=True)
    for story_id in mapped:  # posted just now: the thread is young and will grow
        replay.items[story_id]["time"] = int(time.time()) - 120
    with_comments = [i for i in mapped if len(live_comments(replay, i)) >= 2]
    ask, link = add_linked_discussion(replay)
    env = AirflowEnv(airflow_home, tmp_path_factory.mktemp("threads-data"), {
        **replay.connection_env(), "HN_INGEST_THREAD_REFRESH": "3600"})
    with replay:
        first = env.dags_test({"batch_size": 4})
        assert first.succeeded, first.log[-5000:]
        before = env.status(chunks=True)
        live_at_first = {i: live_comments(replay, i) for i in with_comments}
        items_at_first = copy.deepcopy(replay.items)
        story = with_comments[0]
        parent = sorted(live_comments(replay, story))[0]
        reply = max(replay.items) + 1
        replay.add_item({"id": reply, "type": "comment", "by": "latecomer", "parent": parent,
                         "time": int(time.time()), "text": NEW_REPLY})
        replay.items[parent] = {**copy.deepcopy(replay.items[parent]),
                                "kids": [*(replay.items[parent].get("kids") or []), reply]}
        leaf = next(i for i in sorted(live_comments(replay, story), reverse=True)
                    if i not in (parent, reply) and not replay.items[i].get("kids"))
        replay.items[leaf] = {"id": leaf, "type": "comment", "deleted": True, "time": replay.items[leaf]["time"],
                              "parent": replay.items[leaf]["parent"]}
        ingested = [r["story_id"] for r in before["story_rows"] if r["status"] == "ingested"]
        edited = next(i for i in ingested if i in mapped and not live_comments(replay, i))
        killed = with_comments[1]
        replay.items[edited] = {**replay.items[edited], "title": "Edited: " + replay.items[edited]["title"]}
        replay.items[killed] = {**replay.items[killed], "dead": True}
        replay.updates = [edited, killed]
        env.extra_env["HN_INGEST_THREAD_REFRESH"] = "1"
        second = env.dags_test({"batch_size": 4})
        after = env.status(chunks=True)
    return {"env": env, "replay": replay, "mapped": mapped, "live_at_first": live_at_first, "items_at_first": items_at_first, "with_comments": with_comments, "first": first, "second": second,
            "before": before, "after": after, "story": story, "parent": parent, "reply": reply, "leaf": leaf,
            "edited": edited, "killed": killed, "ask": ask, "link": link}


def comment_rows(status: dict, story_id: int | None = None) -> list[dict]:
    return [r for r in status["chunk_rows"] if r["kind"] == "comment" and story_id in (None, r["story_id"])]


def test_both_runs_succeed(threads):
    for run in (threads["first"], threads["second"]):
        assert run.succeeded, run.log[-5000:]


def test_stories_with_comments_get_comment_chunks_that_stand_on_their_own(threads):
    items, status = threads["items_at_first"], threads["before"]
    counter = TokenCounter(EmbeddingConfig().model_name)
    for story_id in threads["with_comments"]:
        rows = comment_rows(status, story_id)
        assert {r["comment_id"] for r in rows} == threads["live_at_first"][story_id]
        for row in rows:
            item = items[row["comment_id"]]
            assert row["author"] == item["by"] and row["posted_at"] == item["time"]
            assert row["thread_path"].split("/")[-1] == str(item["id"])
            assert row["text"].startswith(f"Comment by {item['by']}")
            if item["parent"] != story_id:  # a reply says whom it answers
                assert f"replying to {items[item['parent']]['by']}: \"" in row["text"]
            assert counter.count(embedding_input(row["title"], row["text"])) <= ChunkConfig().max_tokens
    states = {r["story_id"]: r for r in status["story_rows"]}
    assert all(states[i]["comment_chunks"] == len(comment_rows(status, i)) for i in threads["with_comments"])
    first = summary(threads["first"])
    assert first["comment_chunks_written"] == len(comment_rows(status)) > 0
    assert_no_duplicates(status)


def test_a_refresh_embeds_only_the_new_comment_and_drops_the_deleted_one(threads):
    second, before, after = summary(threads["second"]), threads["before"], threads["after"]
    ingested = [r["story_id"] for r in before["story_rows"] if r["status"] == "ingested"]
    # Every thread was due (its 1 s step had passed) but the killed story's; the edited story's thread was
    # read with its page.
    assert second["threads_read"] == len(ingested) - 1
    assert second["comment_chunks_written"] == 1  # the edited story has no comments
    rows = comment_rows(after, threads["story"])
    assert threads["leaf"] not in {r["comment_id"] for r in rows}
    new = [r for r in rows if r["comment_id"] == threads["reply"]]
    assert len(new) == 1 and new[0]["author"] == "latecomer" and NEW_REPLY in new[0]["text"]
    assert new[0]["thread_path"].endswith(f"{threads['parent']}/{threads['reply']}")
    kept_before = [r for r in comment_rows(before) if r["story_id"] != threads["killed"]]
    assert len(comment_rows(after)) == len(kept_before) + 1 - sum(1 for r in kept_before
                                                                   if r["comment_id"] == threads["leaf"])
    # Unchanged comments kept their rows as they were (not rewritten).
    kept = {(r["id"], r["text"], r["ingested_at"]) for r in kept_before if r["comment_id"] != threads["leaf"]}
    assert kept <= {(r["id"], r["text"], r["ingested_at"]) for r in comment_rows(after)}
    assert_no_duplicates(after)
    states = {r["story_id"]: r for r in after["story_rows"]}
    assert states[threads["story"]]["thread_steps"] == 1 and states[threads["story"]]["comment_chunks"] == len(rows)


def test_a_search_can_ask_for_comments_only_or_pages_only(threads):
    env = threads["env"]
    found = env.search("quokkas", 3, "--kind", "comment", "--mode", "text")
    assert found[0]["story_id"] == threads["story"]
    assert found[0]["chunks"][0]["comment_id"] == threads["reply"] and found[0]["chunks"][0]["author"] == "latecomer"
    pages = env.search("quokkas", 5, "--kind", "page", "--chunks", "3")
    assert pages and all(c["kind"] == "page" for s in pages for c in s["chunks"])


def test_an_edited_story_is_ingested_again_in_place(threads):
    before, after, edited = threads["before"], threads["after"], threads["edited"]
    old = [r for r in before["chunk_rows"] if r["story_id"] == edited]
    new = [r for r in after["chunk_rows"] if r["story_id"] == edited]
    state = {r["story_id"]: r for r in after["story_rows"]}[edited]
    assert state["status"] == "ingested" and state["title"].startswith("Edited: ")
    assert new and all(r["title"].startswith("Edited: ") for r in new) and len(new) == state["chunk_count"]
    # The same keys as before (story id and chunk index), no stale tail, no second copy.
    assert {r["id"] for r in new} == {edited * CHUNK_ID_STRIDE + i for i in range(len(new))}
    assert {r["id"] for r in old} & {r["id"] for r in new} and all(r["text"] for r in new)
    assert {r["story_id"]: r for r in before["story_rows"]}[edited]["item_hash"] != state["item_hash"]


def test_a_killed_story_loses_its_page_and_comment_rows_and_says_why(threads):
    killed, before, after = threads["killed"], threads["before"], threads["after"]
    assert [r for r in before["chunk_rows"] if r["story_id"] == killed and r["kind"] == "comment"]
    assert not [r for r in after["chunk_rows"] if r["story_id"] == killed]
    state = {r["story_id"]: r for r in after["story_rows"]}[killed]
    assert state["status"] == "removed" and "dead" in state["reason"] and "removed" in state["reason"]
    assert state["updated_at"] >= {r["story_id"]: r for r in before["story_rows"]}[killed]["updated_at"]
    assert threads["second"].lines("lifecycle: ")


def test_a_story_linking_to_an_hn_item_carries_its_text_and_its_thread(threads):
    """Not HN's discussion page scraped (its comments would be cut as a comment section): the linked item
    through the API, its text as the story's text and its comments as the story's comment chunks, kept
    apart from the same comments stored under the item's own story, and refreshed with the story."""
    ask, link, replay = threads["ask"], threads["link"], threads["replay"]
    for status in (threads["before"], threads["after"]):
        states = {r["story_id"]: r for r in status["story_rows"]}
        assert states[link]["status"] == "ingested" and states[ask]["status"] == "ingested"
        pages = [r for r in status["chunk_rows"] if r["story_id"] == link and r["kind"] == "page"]
        assert pages and "my starter dies every trip" in " ".join(r["text"] for r in pages)
        assert states[link]["url"] == f"https://news.ycombinator.com/item?id={ask}"  # search hits link there
        # Refreshed with the story in the second run: still its linked comments, none dropped as stale.
        linked = comment_rows(status, link)
        assert {r["comment_id"] for r in linked} == live_comments(replay, ask) == {r["comment_id"]
                                                                                  for r in comment_rows(status, ask)}
        assert {r["author"] for r in linked} == {"baker", "miller", "neighbour"}
        reply = next(r for r in linked if r["author"] == "miller")
        assert 'replying to baker: "Dry a thin layer' in reply["text"] and reply["thread_path"].count("/") == 1
        assert not {r["id"] for r in linked} & {r["id"] for r in comment_rows(status, ask)}
        assert states[link]["comment_chunks"] == len(linked)
    assert_no_duplicates(threads["after"])
