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

import os
import re

# Before unstructured is imported: no telemetry request, no notice in the task log.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")

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


def main_content_html(html: str) -> str | None:
    """The page's main content as simple HTML, or None when no main content is found."""
    import trafilatura

    return trafilatura.extract(
        html,
        output_format="html",
        include_tables=True,
        include_comments=False,
        include_images=False,
        include_links=False,
        favor_recall=True,
        deduplicate=True,
    )


def partition_page(html: str, *, main_content_only: bool = True) -> list:
    """Partition a page into Unstructured elements (Title, NarrativeText, ListItem, Table, ...)."""
    from unstructured.partition.html import partition_html

    _use_offline_classifier()
    content = (main_content_html(html) if main_content_only else None) or html
    # One language for the whole document: per-element detection is slow and unused downstream.
    return partition_html(text=content, languages=["eng"], detect_language_per_element=False)


def partition_text_post(text_html: str) -> list:
    """A text post (Ask HN...) is already the main content: HN sends it as HTML paragraphs."""
    return partition_page(f"<html><body><p>{text_html}</p></body></html>", main_content_only=False)
