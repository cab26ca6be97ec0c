"""Chunk partitioned elements so that every chunk fits the embedding model's token window.

`chunk_by_title` keeps sections together and sizes chunks in characters; characters are only a
proxy for tokens (code and non-English text run far more tokens per character), so each chunk is
then measured with the model's own tokenizer and split at word boundaries when it would not fit.
Text past the window would otherwise be silently cut off by the model.
"""

from __future__ import annotations

import re
from functools import lru_cache

from include.config import ChunkConfig
from include.records import Chunk, Story

_SENTENCE_END = re.compile(r"[.!?。！？]['\")\]]*$")


def embedding_input(title: str, text: str) -> str:
    """The text the model embeds for a chunk: the story title gives every chunk its context."""
    return f"{title}\n\n{text}"


class TokenCounter:
    """Counts tokens as the embedding model does, special tokens included."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self._tokenizer = _load_tokenizer(model_name)

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text).ids)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the text's tokens, special tokens left out."""
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        return [span for span in encoding.offsets if span[1] > span[0]]


@lru_cache(maxsize=4)
def _load_tokenizer(model_name: str):
    from include.embed.model import bundled_model_path

    local = bundled_model_path(model_name)
    if local is not None:
        from tokenizers import Tokenizer  # fast to import, no torch

        tokenizer = Tokenizer.from_file(f"{local}/tokenizer.json")
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_name).backend_tokenizer
    # The saved tokenizer truncates to the model window: counting must see every token.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def split_to_token_limit(text: str, budget: int, counter: TokenCounter) -> list[str]:
    """Split `text` into pieces of at most `budget` tokens, preferring sentence ends, then spaces."""
    if budget < 1:
        raise ValueError(f"a token budget must be positive (got {budget})")
    spans = counter.offsets(text)
    if len(spans) <= budget:
        return [text] if text.strip() else []
    pieces: list[str] = []
    start = 0
    while start < len(spans):
        end = min(start + budget, len(spans))
        if end < len(spans):
            end = _best_cut(text, spans, start, end)
        piece = text[spans[start][0]:spans[end - 1][1]].strip()
        if piece:
            pieces.append(piece)
        start = end
    return pieces


def _best_cut(text: str, spans: list[tuple[int, int]], start: int, end: int) -> int:
    """The token index to cut before: a sentence end in the window's second half, else a space."""
    floor = start + (end - start) // 2
    space_cut = None
    for cut in range(end, floor, -1):
        gap = text[spans[cut - 1][1]:spans[cut][0]]
        if not gap:
            continue  # inside a word: cutting here would change how both halves tokenize
        if _SENTENCE_END.search(text[spans[cut - 1][0]:spans[cut - 1][1]]):
            return cut
        space_cut = space_cut or cut
    return space_cut or end


def chunk_elements(elements: list, story: Story, url: str, config: ChunkConfig, counter: TokenCounter) -> list[Chunk]:
    """Group elements into titled sections, then fit each piece into the model window."""
    from unstructured.chunking.title import chunk_by_title

    sections = chunk_by_title(
        elements,
        max_characters=config.max_characters,
        new_after_n_chars=config.new_after_n_chars,
        combine_text_under_n_chars=config.combine_text_under_n_chars,
    )
    # The title goes before every chunk. A title that would fill the window (a pathological one: HN's are
    # at most 80 characters) still leaves each piece a quarter of it; the model's window then cuts the
    # piece's end in the embedding, but nothing fails and the text is stored whole.
    budget = max(config.max_tokens // 4, config.max_tokens - counter.count(embedding_input(story.title, "")))
    texts = [piece for section in sections for piece in split_to_token_limit(section.text, budget, counter)]
    texts = texts[: config.max_chunks_per_story]
    return [Chunk(story.id, index, story.title, url, text, posted_at=story.time, points=story.score,
                  comments=story.descendants) for index, text in enumerate(texts)]
