"""TinyStories: remove template openings (paper §3.2: "We remove template-like introductions (e.g.,
"Once upon a time…") to reduce repetition and increase stylistic variety").

``remove_template_opening(story)`` cuts the first matching opening of ``TEMPLATE_OPENINGS`` at the
start of the story (case-insensitive; leading quotes and spaces allowed) and re-capitalises what
follows. Openings that carry the sentence's verb keep it: ``Once upon a time, there was a girl``
-> ``There was a girl``; ``Once there were two cats`` -> ``There were two cats``. The list is tried
in order (longest first); pass your own ``openings`` to change it.
"""

from __future__ import annotations

import re

__all__ = ["TEMPLATE_OPENINGS", "remove_template_opening"]

# (regular expression matched at the start, replacement); the replacement's case is fixed afterwards
TEMPLATE_OPENINGS: tuple[tuple[str, str], ...] = (
    (r"once\s+upon\s+a\s+time\s*,?\s+there\s+(was|were|lived|lives|is|are)\b", r"there \1"),
    (r"once\s+upon\s+a\s+time\s*,?\s+in\s+a\s+(?=\w)", "in a "),
    (r"once\s+upon\s+a\s+time\s*[,.!…]*\s*", ""),
    (r"once\s+there\s+(was|were|lived|is|are)\b", r"there \1"),
    (r"one\s+(?:sunny\s+|bright\s+|beautiful\s+|fine\s+)?day\s*,\s*", ""),
    (r"one\s+(?:sunny\s+|bright\s+|beautiful\s+|fine\s+)?day\s+(?=\w)", ""),
    (r"once\s*,\s*", ""),
)


def remove_template_opening(story: str,
                            openings: tuple[tuple[str, str], ...] = TEMPLATE_OPENINGS) -> str:
    """The story without its template opening (unchanged when none matches)."""
    m = re.match(r"^[\s\"'“‘]*", story)
    lead = m.end() if m else 0
    head = story[:lead].strip()
    rest = story[lead:]
    for pattern, replacement in openings:
        new, count = re.subn(r"^(?:" + pattern + ")", replacement, rest, count=1, flags=re.IGNORECASE)
        if count:
            new = new.lstrip(" ,")
            if new[:1].isalpha():
                new = new[0].upper() + new[1:]
            return head + new
    return story
