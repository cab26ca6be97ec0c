"""From HTML to chunks: the page's main content (or its discussion, `discussion`), Unstructured's
elements (`partition`), token-bounded chunks (`chunking`) and a comment thread's chunks (`comments`).
Imports `config`, `records`, `hn` (the thread a comment chunk comes from) and the embedding model's
tokenizer (`embed.model`) to measure chunks."""
