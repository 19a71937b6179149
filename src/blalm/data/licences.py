"""The licences of the shared data's sources (``../shared/data/README.md``), for the manifest.

A source's licence is what its config says (``sources.NAME.licence``); when it says nothing and
every input file is one of the shared data's (``NAME-000.jsonl.xz``, ...), the licence and the
citation that data's README gives; otherwise ``"unknown"`` with a hint to set it.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["KNOWN_LICENCES", "source_licence"]

_CHILDES = ("CC BY-NC-SA 3.0 (TalkBank ground rules)",
            "MacWhinney, B. (2000). The CHILDES Project: Tools for Analyzing Talk (3rd ed.). Mahwah, NJ: "
            "Lawrence Erlbaum Associates; and each corpus used (words_by_corpus)")

# file-name stem of the shared data -> (licence, citation)
KNOWN_LICENCES: dict[str, tuple[str, str]] = {
    "childes": _CHILDES,
    "childes_talkbank": _CHILDES,
    "gutenberg": ("public domain (Project Gutenberg; the licence boilerplate is stripped)", "Project Gutenberg"),
    "onestop": ("CC BY-SA 4.0", "Vajjala, S. and Lučić, I. (2018). OneStopEnglish corpus: A new corpus for "
                "automatic readability assessment and text simplification. BEA workshop"),
    "nltk": ("mixed, per NLTK corpus (Brown: non-commercial research)",
             "Bird, S., Klein, E. and Loper, E. (2009). Natural Language Processing with Python (the NLTK corpora)"),
    "wikipedia": ("CC BY-SA 3.0", "Wikipedia contributors, English Wikipedia (2019 export)"),
    "tinystories": ("CDLA-Sharing-1.0", "Eldan, R. and Li, Y. (2023). TinyStories: How Small Can Language "
                    "Models Be and Still Speak Coherent English? arXiv:2305.07759"),
}

_SHARED_FILE = re.compile(r"^([a-z_]+)-\d{3}\.jsonl\.xz$")


def source_licence(name: str, configured: str, files: list[Path]) -> dict[str, str]:
    """``{"licence": ..., "citation": ...}`` of one source (see the module docstring)."""
    if configured:
        return {"licence": configured, "citation": ""}
    stems = {m.group(1) if (m := _SHARED_FILE.match(Path(f).name)) else None for f in files}
    if len(stems) == 1 and (stem := stems.pop()) in KNOWN_LICENCES:
        licence, citation = KNOWN_LICENCES[stem]
        return {"licence": licence, "citation": citation}
    if not files:
        return {"licence": "", "citation": ""}
    return {"licence": f"unknown (set sources.{name}.licence in the corpus config)", "citation": ""}
