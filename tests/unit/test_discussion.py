"""Telling a discussion page from an article, by the page's own markup and shape, never its site."""

from __future__ import annotations

from include.parse.discussion import content_is_posts, declares_discussion

REPLY = "reply {} is long enough to be a paragraph of its own, about forum software and its design choices"


def page(body: str) -> str:
    return f"<html><head><title>t</title></head><body>{body}</body></html>"


def posts(prefix: str, count: int) -> str:
    return "".join(f'<div id="{prefix}{1000 + i}"><span>user{i}</span><p>{REPLY.format(i)}</p></div>'
                    for i in range(count))


def main_of(count: int) -> str:
    return "<div>" + "".join(f"<p>{REPLY.format(i)}</p>" for i in range(count)) + "</div>"


def test_a_page_that_says_it_is_a_forum_topic_or_a_question_is_a_discussion():
    assert declares_discussion('<div itemscope itemtype="http://schema.org/DiscussionForumPosting">')
    assert declares_discussion('<script type="application/ld+json">{"@type": "QAPage"}</script>')
    # A comment section under an article says `Comment`: not a discussion by that alone.
    assert not declares_discussion('<div itemscope itemtype="https://schema.org/Comment">')


def test_main_text_spread_over_a_run_of_posts_is_a_discussion():
    assert content_is_posts(page(posts("p", 5)), main_of(5))
    assert content_is_posts(page(posts("answer-", 3)), main_of(3))


def test_an_article_above_its_comments_is_not():
    article = "<article>" + "".join(f"<p>The article's own paragraph number {i}, long enough to count as text.</p>"
                                    for i in range(6)) + "</article>"
    html = page(article + posts("comment-", 8))
    main = "<div>" + "".join(f"<p>The article's own paragraph number {i}, long enough to count as text.</p>"
                             for i in range(6)) + "</div>"
    assert not content_is_posts(html, main)


def test_one_post_holding_the_whole_text_is_an_article():
    # A blog's `<article id="post-123">`: one post, whatever surrounds it.
    html = page(f'<article id="post-1234">{main_of(6)}</article><div id="post-1235"></div><div id="post-1236"></div>')
    assert not content_is_posts(html, main_of(6))


def test_numbered_rows_of_a_listing_are_not_posts():
    rows = "".join(f'<tr id="{40_000_000 + i}"><td>{REPLY.format(i)}</td></tr>' for i in range(10))
    assert not content_is_posts(page(f"<table>{rows}</table>"), main_of(10))
    assert not content_is_posts(page(posts("p", 2)), main_of(2))  # two posts are not a run
    assert not content_is_posts(page(posts("p", 5)), None)
