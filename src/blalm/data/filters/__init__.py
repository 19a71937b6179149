"""The paper's §3.2 filters as pure functions (text in; text, bool or number out).

One module per source; ``text`` holds the shared helpers. ``blalm.data.sources`` chains them into
the per-source-kind processors the corpus builder calls. The only I/O is in the two network
clients: ``grammar.LanguageToolClient`` and ``edu.OpenAIEduScorer``.
"""

from blalm.data.filters.childes import clean_chat, is_child, split_speaker, utterance_words
from blalm.data.filters.cosmopedia import cosmopedia_paragraphs, domain_marker, is_k12
from blalm.data.filters.edu import EduScorer, OfflineEduScorer, OpenAIEduScorer, parse_edu_score
from blalm.data.filters.grammar import LanguageToolClient, make_grammar_normaliser, offline_normalise
from blalm.data.filters.gutenberg import drop_headings, gutenberg_paragraphs, strip_boilerplate
from blalm.data.filters.ner import has_named_entity, named_entities
from blalm.data.filters.plain import clean_babylm_line, drop_level_tag, plain_paragraphs
from blalm.data.filters.sampling import sample_segments
from blalm.data.filters.text import (group_segments, normalise_whitespace, split_sentences,
                                     unwrap_paragraphs, word_count)
from blalm.data.filters.tinystories import TEMPLATE_OPENINGS, remove_template_opening
from blalm.data.filters.wiki import wiki_paragraphs

__all__ = [
    "clean_chat", "is_child", "split_speaker", "utterance_words",
    "cosmopedia_paragraphs", "domain_marker", "is_k12",
    "EduScorer", "OfflineEduScorer", "OpenAIEduScorer", "parse_edu_score",
    "LanguageToolClient", "make_grammar_normaliser", "offline_normalise",
    "drop_headings", "gutenberg_paragraphs", "strip_boilerplate",
    "has_named_entity", "named_entities",
    "clean_babylm_line", "drop_level_tag", "plain_paragraphs",
    "sample_segments",
    "group_segments", "normalise_whitespace", "split_sentences", "unwrap_paragraphs", "word_count",
    "TEMPLATE_OPENINGS", "remove_template_opening",
    "wiki_paragraphs",
]
