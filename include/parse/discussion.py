"""Whether a fetched page is a discussion (a forum topic, a Q&A thread), whose replies are content.

Two signs, neither naming a site: the page says so (schema.org types), or its main content is a run of
posts (elements whose ids share a prefix and differ by a number, such as `p2255211` or `answer-123`,
with the main text spread over several of them). An article with a comment section has the run too,
but its main text sits outside it. The third kind, a thread whose page is a short header above the
comments (HN, lobste.rs), is told by the extraction itself (`include.parse.partition`).
"""

from __future__ import annotations

import re
from collections import defaultdict

# schema.org's forum-post and Q&A types, as microdata or JSON-LD (Discourse and Q&A sites emit them).
# A mere `Comment` is an article's comment section.
_DECLARED = re.compile(r"schema\.org/(?:DiscussionForumPosting|QAPage)\b"
                       r"|\"@type\"\s*:\s*\"(?:DiscussionForumPosting|QAPage)\"")
# A post's id: a prefix of letters, then a number of 3+ digits. Pure numbers are left out: listing
# pages (HN's front page, its jobs) number their rows too.
_POST_ID = re.compile(r"([A-Za-z][A-Za-z_-]*)\d{3,}")
MIN_POSTS = 3
POSTS_SHARE = 0.5  # of the main text's characters, in lines found inside the run of posts
_LINE_CHARS = 60  # shorter lines (user boxes, dates) say little about where the text is
_BLOCKS = ("p", "li", "pre", "blockquote", "td", "h1", "h2", "h3", "div")


def declares_discussion(html: str) -> bool:
    return _DECLARED.search(html) is not None


def content_is_posts(html: str, main_html: str | None) -> bool:
    """Whether most of `main_html` (the extracted main content of `html`) lies in a run of posts,
    spread over at least two of them."""
    from lxml.html import fromstring

    if not main_html:
        return False
    lines = {_words(e.text_content()) for e in fromstring(main_html).iter(*_BLOCKS) if not _has_blocks(e)}
    lines = [line for line in lines if len(line) >= _LINE_CHARS]
    total = sum(len(line) for line in lines)
    if not total:
        return False
    for posts in _runs_of_posts(_parse(html)):
        texts = [_words(post.text_content()) for post in posts]
        holders = [next((i for i, text in enumerate(texts) if line[:80] in text), None) for line in lines]
        inside = sum(len(line) for line, holder in zip(lines, holders, strict=True) if holder is not None)
        if inside >= POSTS_SHARE * total and len({h for h in holders if h is not None}) >= 2:
            return True
    return False


def _runs_of_posts(document) -> list[list]:
    runs = defaultdict(list)
    for element in document.iter():
        if isinstance(element.tag, str) and (match := _POST_ID.fullmatch(element.get("id") or "")):
            runs[match.group(1)].append(element)
    return [posts for posts in runs.values() if len(posts) >= MIN_POSTS]


def _parse(html: str):
    from lxml.html import fromstring

    try:
        return fromstring(html)
    except ValueError:  # a str with an XML encoding declaration: lxml wants bytes then
        return fromstring(html.encode("utf-8", errors="replace"))


def _has_blocks(element) -> bool:
    return any(child.tag in _BLOCKS for child in element)


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))
