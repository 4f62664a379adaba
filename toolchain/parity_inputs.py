"""The built-in batches every parity check runs (the task adapters pick theirs; vocabulary trimming keeps their
tokens). A leaf module: it imports nothing, so the adapters, the steps and parity can all read it."""

# Different lengths, non-ASCII, emoji, odd whitespace, an empty text and one longer than any
# model window (it must be truncated, not rejected).
PARITY_TEXTS: tuple[str, ...] = (
    "I loved it.",
    "The plot meanders, but the performances are strong enough to carry the film through its slower second half.",
    "Überraschend gut – ein Film für die ganze Familie! 😀🎬👍",
    "東京で見た映画は素晴らしかった。 Naïve café owners, façades and jalapeños.",
    "NEW YORK (Reuters) - Apple Inc. said on Monday that Tim Cook will visit Berlin and São Paulo.",
    "tabs\tand\nnewlines   and zero\u200bwidth spaces",
    "",
    " ".join(["This sentence repeats until the text is far longer than the model window."] * 120),
)

PARITY_QA: tuple[tuple[str, str], ...] = (
    ("Who wrote the report?", "The report was written by Ada Lovelace in 1843 and published in London."),
    ("Where is the café?", "Le café « Chez Zoë » 😀 se trouve à Paris, near the Seine, next to a bookshop."),
    ("When did it open?", "It opened in 1999."),
    ("What colour is the door?", " ".join(["The house has many rooms and a long corridor."] * 100)
     + " The front door is painted bright red."),
)
