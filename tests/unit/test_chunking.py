"""Partition and chunk real corpus pages offline: chunks fit the model window, text is kept."""

from __future__ import annotations

import re

import pytest

from include.config import ChunkConfig, EmbeddingConfig
from include.parse.chunking import TokenCounter, chunk_elements, embedding_input, split_to_token_limit
from include.parse.partition import looks_like_narrative_text, partition_page, partition_text_post
from include.records import Story
from tests import corpus


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter(EmbeddingConfig().model_name)


def story(title: str = "A story title") -> Story:
    return Story(id=42, title=title, url="https://example.com", text_html=None, time=0)


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def test_long_text_is_split_under_the_budget_without_losing_words(counter):
    text = " ".join(f"Sentence number {i} talks about tokenization_and_{i} things." for i in range(300))
    pieces = split_to_token_limit(text, 100, counter)
    assert len(pieces) > 5
    assert all(counter.count(p) - 2 <= 100 for p in pieces)
    assert words(" ".join(pieces)) == words(text)
    assert all(p.endswith(".") for p in pieces[:-1])  # cut at sentence ends when possible


def test_code_heavy_text_is_split_too(counter):
    code = "x = {" + ", ".join(f"'k{i}': [{i}, {i * 7}, 0x{i:04x}]" for i in range(400)) + "}"
    pieces = split_to_token_limit(code, 200, counter)
    assert all(counter.count(p) - 2 <= 200 for p in pieces)
    assert words(" ".join(pieces)) == words(code)


def test_corpus_pages_chunk_within_the_window(require_corpus, counter):
    config = ChunkConfig()
    pages = corpus.pages()[::20]  # ten pages from all sources
    total = 0
    for page in pages:
        elements = partition_page(page.body.decode("utf-8", errors="replace"))
        chunks = chunk_elements(elements, story(page.title), "https://example.com", config, counter)
        assert chunks, page.name
        for chunk in chunks:
            assert counter.count(embedding_input(chunk.title, chunk.text)) <= config.max_tokens
        assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
        total += len(chunks)
    assert total > 50


def test_text_post_html_is_unescaped():
    elements = partition_text_post("I&#x27;m asking about <i>tests</i><p>Second &amp; last paragraph.")
    text = " ".join(e.text for e in elements)
    assert "I'm asking" in text and "Second & last" in text and "&#x27;" not in text


def test_offline_classifier_replaces_spacy():
    import unstructured.nlp.tokenize as tokenize

    def no_spacy(*_a, **_k):
        raise AssertionError("spaCy must not be used")

    original = tokenize._get_nlp
    tokenize._get_nlp = no_spacy
    try:
        elements = partition_page("<html><body><h1>Title</h1><p>This is a sentence that reads like prose.</p>"
                                  "<p>SHORT CAPS</p></body></html>", main_content_only=False)
    finally:
        tokenize._get_nlp = original
    assert [type(e).__name__ for e in elements][:2] == ["Title", "NarrativeText"]
    assert looks_like_narrative_text("A normal sentence with a verb in it.")
    assert not looks_like_narrative_text("12345")


def test_token_counter_sees_past_the_model_window(counter):
    # The saved tokenizer truncates at the window; a counter that did too would pass every check.
    assert counter.count("word " * 1000) == 1002


def test_a_page_nested_deeper_than_libxml2_allows_still_yields_its_text():
    deep = "<div>" * 1000 + "<p>Deeply nested words survive the parser.</p><script>var x;</script>" + "</div>" * 1000
    text = " ".join(e.text for e in partition_page(deep))
    assert "Deeply nested words survive the parser." in text and "var x" not in text


def _page_text(name: str) -> tuple[str, str]:
    page = next(p for p in corpus.pages() if p.name == name)
    html = page.body.decode("utf-8", errors="replace")
    return " ".join(e.text for e in partition_page(html)), page.truth_text


def test_a_discussion_page_keeps_its_thread_and_an_article_keeps_only_itself(require_corpus):
    # lobste.rs: the page's own text is a header (title, points, author); the thread is the content.
    thread, truth = _page_text("tiptopjaw-055")
    assert "cloning Arcs" in thread and "cloning Arcs" in truth
    assert len(thread) > 3000
    # A forum topic that declares itself one (schema.org DiscussionForumPosting): the replies are content.
    topic, truth = _page_text("tiptopjaw-061")
    assert "Bumping MSRV has never been broadly considered" in truth
    assert "Bumping MSRV has never been broadly considered" in topic
    # A forum topic whose main text is a run of posts (FluxBB, no markup): the replies are content.
    topic, truth = _page_text("tiptopjaw-058")
    assert "software that was designed on assumptions just as I suggested" in truth
    assert "software that was designed on assumptions just as I suggested" in topic
    # An article with a comment section below it: the comment stays out.
    article, truth = _page_text("scrapinghub-011")
    assert len(article) > 2000 and "soccer circuit" not in truth
    assert "soccer circuit" not in article  # words of the reader's comment


def test_a_title_that_fills_the_window_still_chunks_the_page(counter):
    """A title of more tokens than the model's window (a pathological one) left the text a budget below
    zero, and the splitter failed the whole batch with an IndexError (seen in bench.reindex_scale)."""
    config = ChunkConfig()
    title = "a-b/" * 200  # one "word" of many tokens, as a URL in a title can be
    assert counter.count(embedding_input(title, "")) > config.max_tokens
    text = "A sentence about the page. " * 80
    elements = partition_text_post(f"<p>{text}</p>")
    chunks = chunk_elements(elements, story(title), "https://example.com", config, counter)
    assert chunks and "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "")
    assert all(counter.count(c.text) - 2 <= config.max_tokens // 4 for c in chunks)
    with pytest.raises(ValueError, match="budget must be positive"):
        split_to_token_limit(text, 0, counter)
