"""From HTML to chunks: the page's main content (or its discussion, `discussion`), Unstructured's
elements (`partition`) and token-bounded chunks (`chunking`). Imports `config`, `records` and the
embedding model's tokenizer (`embed.model`) to measure chunks."""
