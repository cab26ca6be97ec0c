"""Turn a page's HTML into Unstructured elements: main content first, then `partition_html`.

Two choices here make partitioning work offline and fast:
- trafilatura finds the page's main content (article text, headings, lists, tables), so navigation,
  footers, cookie banners and share widgets never become chunks. If it finds nothing, the whole
  page is partitioned.
- Unstructured's text classifier (`is_possible_narrative_text`) runs a spaCy model that it tries to
  download at run time: it fails offline and costs ~90 % of partition time. We only use the
  NarrativeText/Text distinction nowhere downstream (every text element is kept and `chunk_by_title`
  keys on Title elements, which come from heading tags), so the parser gets a plain-Python classifier.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import types

# Before unstructured is imported: no telemetry request, no notice in the task log.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")


def _defer_spacy_import() -> None:
    """Import Unstructured's spaCy tokenizers only if something calls them.

    `unstructured.partition.text_type` imports them at module level, which imports spaCy and, through
    thinc, torch: 2.1 s at the start of every extract task. With our classifier (below) the HTML parser
    never calls them; a stand-in module imports the real one on first use, so nothing changes if an
    Unstructured version starts to.
    """
    name = "unstructured.nlp.tokenize"
    if name in sys.modules or importlib.util.find_spec(name) is None:
        return
    stand_in = types.ModuleType(name)

    def real_module() -> types.ModuleType:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        return importlib.import_module(name)

    def forward(function: str):
        return lambda *args, **kwargs: getattr(real_module(), function)(*args, **kwargs)

    for function in ("pos_tag", "sent_tokenize", "word_tokenize"):
        setattr(stand_in, function, forward(function))

    def other_attribute(attribute: str):
        if attribute.startswith("__"):  # the import system probing (`__path__`), not a caller
            raise AttributeError(attribute)
        return getattr(real_module(), attribute)

    stand_in.__getattr__ = other_attribute
    sys.modules[name] = stand_in


_defer_spacy_import()

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def looks_like_narrative_text(text: str, *_args, **_kwargs) -> bool:
    """A network-free stand-in for Unstructured's spaCy-based narrative-text check."""
    stripped = text.strip()
    if len(stripped) < 2 or stripped.isnumeric():
        return False
    letters = sum(c.isalpha() for c in stripped)
    visible = sum(not c.isspace() for c in stripped)
    if letters < 0.5 * visible:
        return False
    words = _WORD.findall(stripped)
    if stripped.isupper() or len(words) < 3:
        return False
    return stripped[-1] in ".!?:;\"'»”)" or len(words) >= 8


def _use_offline_classifier() -> None:
    import unstructured.partition.html.parser as html_parser

    # The parser looks the function up in its own namespace at call time (unstructured 0.27).
    html_parser.is_possible_narrative_text = looks_like_narrative_text


# Below this much text, comments aside, a page with a longer comment thread is a discussion (an HN or
# lobste.rs thread, a forum topic: a title, points and an author, then the thread).
DISCUSSION_HEADER_CHARS = 300


def main_content_html(html: str) -> str | None:
    """The page's main content as simple HTML, or None when no main content is found.

    Comments are left out, unless the page is a discussion: then the thread is the content. A page is
    a discussion when it says so, when its main content is a run of posts (`include.parse.discussion`), or
    when its own text is a short header above a longer thread."""
    import trafilatura

    from include.parse.discussion import content_is_posts, declares_discussion

    if declares_discussion(html) and (discussion := _with_comments_html(html)) is not None:
        return discussion
    main = trafilatura.extract(
        html,
        output_format="html",
        include_tables=True,
        include_comments=False,
        include_images=False,
        include_links=False,
        favor_recall=True,
        deduplicate=True,
    )
    main_chars = _text_chars(main)
    if main_chars >= DISCUSSION_HEADER_CHARS and not content_is_posts(html, main):
        return main
    discussion = _with_comments_html(html)
    if main_chars >= DISCUSSION_HEADER_CHARS:  # a run of posts: the thread as trafilatura's defaults take it
        return discussion or main
    return discussion if discussion is not None and _text_chars(discussion) > 2 * main_chars else main


def _with_comments_html(html: str) -> str | None:
    """The page's text and its comment thread as trafilatura's defaults find them, as simple HTML.

    `extract(output_format="html")` drops the comments, so both parts are converted here."""
    import trafilatura
    from lxml.html import tostring
    from trafilatura.htmlprocessing import convert_to_html

    document = trafilatura.bare_extraction(html, include_comments=True, with_metadata=False, include_tables=True,
                                           include_images=False, include_links=False)
    if document is None:
        return None
    parts = [part for part in (document.body, document.commentsbody) if part is not None and len(part)]
    return "".join(tostring(convert_to_html(part), encoding="unicode") for part in parts) or None


def _text_chars(content_html: str | None) -> int:
    if not content_html:
        return 0
    from lxml.html import fromstring

    return len(" ".join(fromstring(content_html).text_content().split()))


def partition_page(html: str, *, main_content_only: bool = True) -> list:
    """Partition a page into Unstructured elements (Title, NarrativeText, ListItem, Table, ...)."""
    _use_offline_classifier()
    content = (main_content_html(html) if main_content_only else None) or html
    elements = _partition(content)
    if not any(e.text.strip() for e in elements):
        # libxml2 stops at 256 levels of nesting, so a pathologically deep page parses as empty:
        # flatten it into paragraphs with a parser that has no depth limit and partition that.
        elements = _partition(flatten_html(html))
    return elements


def _partition(html: str) -> list:
    from unstructured.partition.html import partition_html

    # One language for the whole document: per-element detection is slow and unused downstream.
    return partition_html(text=html, languages=["eng"], detect_language_per_element=False)


_SKIPPED = {"script", "style", "noscript", "template", "svg", "head"}
_BLOCKS = {"p", "div", "li", "ul", "ol", "table", "tr", "td", "th", "section", "article", "main", "br",
           "blockquote", "pre", "header", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "dd", "dt", "body"}


def flatten_html(html: str) -> str:
    """The page's visible text as one `<p>` per block, whatever the nesting depth."""
    from html import escape
    from html.parser import HTMLParser

    paragraphs: list[str] = []
    current: list[str] = []
    skipping = [0]

    def close_block() -> None:
        text = " ".join("".join(current).split())
        if text:
            paragraphs.append(f"<p>{escape(text)}</p>")
        current.clear()

    class Flattener(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag in _SKIPPED:
                skipping[0] += 1
            elif tag in _BLOCKS:
                close_block()

        def handle_endtag(self, tag):
            if tag in _SKIPPED:
                skipping[0] = max(0, skipping[0] - 1)
            elif tag in _BLOCKS:
                close_block()

        def handle_data(self, data):
            if not skipping[0]:
                current.append(data)

    parser = Flattener(convert_charrefs=True)
    parser.feed(html)
    parser.close()
    close_block()
    return "<html><body>" + "".join(paragraphs) + "</body></html>"


def partition_text_post(text_html: str) -> list:
    """A text post (Ask HN...) is already the main content: HN sends it as HTML paragraphs."""
    return partition_page(f"<html><body><p>{text_html}</p></body></html>", main_content_only=False)
