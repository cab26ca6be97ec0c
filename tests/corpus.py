"""Access to the shared real-world corpus (`../shared/corpus`), read in place, never copied."""

from __future__ import annotations

import csv
import html
import json
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

from include.config import PROJECT_ROOT

_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def corpus_dir() -> Path:
    return Path(os.environ.get("HN_CORPUS_DIR", PROJECT_ROOT.parent / "shared" / "corpus")).resolve()


def corpus_available() -> bool:
    return (corpus_dir() / "index.tsv").is_file()


@dataclass(frozen=True)
class CorpusPage:
    name: str
    charset: str  # as declared by the page, '' when none
    original_url: str = ""  # where the source saved it from ('' when unknown)

    @property
    def path(self) -> Path:
        return corpus_dir() / "pages" / f"{self.name}.html"

    def truth(self, suffix: str) -> Path:
        return corpus_dir() / "truth" / f"{self.name}{suffix}"

    @cached_property
    def body(self) -> bytes:
        return self.path.read_bytes()

    @cached_property
    def truth_text(self) -> str | None:
        path = self.truth(".txt")
        return path.read_text(encoding="utf-8") if path.is_file() else None

    @cached_property
    def snippets(self) -> dict | None:
        path = self.truth(".snippets.json")
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    @cached_property
    def title(self) -> str:
        """The page's own title: curated metadata first, then its <title> element."""
        for suffix in (".meta.json", ".snippets.json"):
            path = self.truth(suffix)
            if path.is_file():
                title = json.loads(path.read_text(encoding="utf-8")).get("title")
                if title:
                    return " ".join(str(title).split())
        match = _TITLE.search(self.body[:200_000])
        if match:
            title = " ".join(html.unescape(match.group(1).decode("utf-8", "replace")).split())
            if title:
                return title
        return self.name


def pages() -> list[CorpusPage]:
    with open(corpus_dir() / "index.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [CorpusPage(row["name"], row.get("charset_declared") or "", row.get("url") or "") for row in rows]


def site_groups(pages: list[CorpusPage]) -> list[int]:
    """A site number per page: pages from one original domain share a site; a page of unknown origin
    has one of its own. For a replay whose sites are spread as the real pages' hosts were."""
    sites: dict[str, int] = {}
    numbers = []
    for page in pages:
        domain = urlsplit(page.original_url).hostname or f"unknown:{page.name}"
        numbers.append(sites.setdefault(domain, len(sites)))
    return numbers


def hn_items(name: str = "dagster-snapshot-25576000-25581999.jsonl") -> list[dict]:
    with open(corpus_dir() / "hn" / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def middle_sentence(text: str) -> str | None:
    """A full sentence from the middle of a ground truth (not a heading or a caption): a query that is
    not the story's title, which every chunk carries."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split()))]
    candidates = [s for s in sentences if 12 <= len(s.split()) <= 40]
    return candidates[len(candidates) // 2] if candidates else None
