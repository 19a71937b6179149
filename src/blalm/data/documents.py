"""The unit that flows from readers to filters: one raw input document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Document:
    id: str                 # the source's id, or file:line when it has none
    text: str               # raw text as the source has it
    origin: str             # "path:line" (or "path" for whole-file documents): where to look when it goes wrong
    meta: dict[str, Any] = field(default_factory=dict)


def count_words(text: str) -> int:
    """Words are whitespace-separated tokens (the BabyLM counting rule)."""
    return len(text.split())
