"""An offline named-entity detector (no model download) for the Gutenberg filter.

The paper (§3.2) discards Gutenberg entries without named entities; it does not say which tagger
it used. This detector finds proper names with capitalisation heuristics, tuned for English
fiction (it is a filter, not a tagger: it aims at "does this passage name anyone or anything").

A span counts as a named entity when it is

1. **a title and a name**: ``Mr.``/``Mrs.``/``Miss``/``Dr.``/``Captain``/``King``/``Queen``/``Aunt``/
   ``Uncle``/``Lady``/``Sir``/... followed by a capitalised word (``Mr. Brown``, ``Aunt Jo``),
   anywhere, sentence starts included;
2. **a run of capitalised words** (``Anna Winslow``, ``New York City``; ``of``/``de``/``van``/...
   may link them: ``Bank of England``), anywhere; a common word opening a sentence (``The``, ``But``)
   is not part of the run;
3. **a single capitalised word that does not start a sentence** (``... said Robert.``);
4. **a capitalised word that opens two or more sentences and never occurs in lower case** in
   the text (``Tom went home. Tom was glad.``), unless it ends in -ly/-ing/-ed.

A sentence (or a clause) starts at the beginning of the text, after ``.``/``!``/``?``, after an
opening quote or bracket, a colon, a semicolon or a dash. Never entities on their own (documented
choices): the pronoun ``I`` (and ``I'm``, ``I'll`` ...), interjections (``Oh``, ``O``), words of a
list of ~300 common English words that get capitalised at sentence starts or in verse lines
(``The``, ``And``, ``Then``, ``Yes``), kinship and address words used alone (``Mother``,
``Father``, ``Sir``, ``Madam``), ``God``/``Lord``/``Heaven`` used alone, days of the week and month
names (temporal expressions, not names), and all-capitals words (emphasis such as ``THIS``; the
heading of a passage). Nationalities and languages (``English``, ``French``) do count, as they do
for common taggers.
"""

from __future__ import annotations

import re
from typing import Iterator

from blalm.data.filters.text import split_sentences

__all__ = ["named_entities", "has_named_entity", "TITLES", "NON_ENTITIES", "COMMON_WORDS"]

TITLES = frozenset("""
mr mrs ms miss mister master dr doctor captain capt colonel col general gen major lieutenant lt
sergeant sgt admiral commodore sir lady lord king queen prince princess duke duchess count
countess baron baroness earl emperor empress czar tsar sultan chief aunt auntie uncle cousin
grandma grandpa granny grandmother grandfather grandmamma grandpapa saint st professor prof
father mother brother sister mistress madame madam mme mlle monsieur mademoiselle senor senora
judge squire deacon parson reverend rev president senator governor mayor pope bishop elder
dame signor herr frau fraulein farmer nurse
""".split())

_CONNECTORS = frozenset({"of", "de", "da", "del", "della", "di", "du", "la", "le", "van", "von", "der",
                         "den", "ten", "ter", "y", "al", "bin", "ibn", "the"})

NON_ENTITIES = frozenset("""
i i'm i'll i've i'd o oh ah ay aye eh ha hey hi ho lo alas hurrah hurray hush pooh pshaw
god lord heaven heavens hell providence nature
mother father mamma papa mama mammy ma pa mum mom mommy dad daddy granny grandma grandpa
sir madam ma'am miss master mistress missus aunt uncle cousin brother sister baby nurse
monday tuesday wednesday thursday friday saturday sunday
january february march april may june july august september october november december
mr mrs ms dr st
""".split())

COMMON_WORDS = frozenset("""
a about above across after afterwards again against ah all almost alone along already also although
always am among an and another any anybody anyhow anyone anything anyway anywhere are around as at
away back be because been before behind being below beneath beside besides best better between
beyond both but by can cannot could dear did do does doing done down during each either else
enough even ever every everybody everyone everything everywhere except far few first for from
further good goodbye great had has have having he her here hers herself him himself his how however
if in indeed instead into is it its itself just last least less let like little long many may me
meanwhile might mine more moreover most much must my myself near neither never nevertheless next
no nobody none nor not nothing now nowhere of off often oh on once one only onto or other others
otherwise our ours ourselves out over own perhaps please poor quite rather really right same
shall she should since so some somebody someone something sometimes somewhere soon still such
than thank thanks that the their theirs them themselves then there therefore these they this those
though through thus till to together too toward towards under unless until up upon us very was we
well were what whatever when whenever where wherever whether which while who whoever whole whom
whose why will with within without yes yet you your yours yourself yourselves
come comes came go goes went gone look looks looked see sees saw seen say says said tell told ask
asked get got give gave take took make made know knew think thought let's here's there's that's
what's who's it's don't didn't can't won't isn't wasn't couldn't wouldn't shouldn't
suddenly presently meanwhile finally besides certainly surely besides nay hark lo behold
one two three four five six seven eight nine ten hundred thousand
morning evening night today tomorrow yesterday
chapter part book volume section page note end contents preface introduction
""".split())

_STOP = COMMON_WORDS | NON_ENTITIES
_WORD = re.compile(r"[A-Za-z][A-Za-z'’\-]*")
_CLAUSE_OPEN = re.compile(r"[“‘(\[:;—]|--|(?:^|\s)[\"']")


def _base(word: str) -> str:
    """The word without a possessive ``'s`` or trailing apostrophes/hyphens."""
    if "'" not in word and "’" not in word and not word.endswith("-"):
        return word
    w = word.rstrip("'’-")
    if w.endswith(("'s", "’s")):
        w = w[:-2]
    return w


def _is_cap(word: str) -> bool:
    return word[:1].isupper() and not (len(word) > 1 and word.isupper() and word.isalpha())


def _tokens(sentence: str) -> list[tuple[str, bool, int]]:
    """Words of a sentence: (word, does it open a clause?, start)."""
    out: list[tuple[str, bool, int]] = []
    prev_end = 0
    for m in _WORD.finditer(sentence):
        start = m.start()
        if not out:
            opens = True
        elif start - prev_end == 1 and sentence[prev_end] == " ":
            opens = False                       # the common case: one space between words
        else:
            opens = _CLAUSE_OPEN.search(sentence, prev_end, start) is not None
        out.append((m.group(), opens, start))
        prev_end = m.end()
    return out


def _span(sentence: str, toks: list[tuple[str, bool, int]], i: int, j: int) -> str:
    """The text from word ``i`` to word ``j`` (possessive 's of the last word dropped)."""
    return sentence[toks[i][2]:toks[j][2] + len(_base(toks[j][0]))]


class _Context:
    """The text's sentences, tokenised on demand, and the whole-text facts rule 4 needs (computed
    only when a candidate needs them: ``has_named_entity`` usually stops in the first sentences)."""

    def __init__(self, text: str):
        self.text = text
        self.sentences = split_sentences(text)
        self._tokens: list[list[tuple[str, bool, int]] | None] = [None] * len(self.sentences)
        self._lower: set[str] | None = None
        self._starts: dict[str, int] | None = None

    def tokens(self, k: int) -> list[tuple[str, bool, int]]:
        toks = self._tokens[k]
        if toks is None:
            toks = self._tokens[k] = _tokens(self.sentences[k])
        return toks

    def repeated_start_never_lower(self, base: str) -> bool:
        if self._starts is None:
            self._starts = {}
            for toks in (self.tokens(k) for k in range(len(self.sentences))):
                for word, opens, _ in toks:
                    if opens and _is_cap(word):
                        b = _base(word)
                        self._starts[b] = self._starts.get(b, 0) + 1
            self._lower = {w for w in _WORD.findall(self.text) if w[:1].islower()}
        assert self._lower is not None
        low = base.lower()
        return (self._starts.get(base, 0) >= 2 and low not in self._lower
                and not low.endswith(("ly", "ing", "ed")))


def _iter_entities(text: str) -> Iterator[str]:
    context = _Context(text)
    for k, sentence in enumerate(context.sentences):
        toks = context.tokens(k)
        i = 0
        n = len(toks)
        while i < n:
            word, opens = toks[i][0], toks[i][1]
            if not word[:1].isupper():
                i += 1
                continue
            base = _base(word)
            low = base.lower()
            # 1. title + capitalised name
            if low in TITLES and i + 1 < n and _is_cap(toks[i + 1][0]) and \
                    _base(toks[i + 1][0]).lower() not in _STOP:
                j = i + 1
                while j + 1 < n and _is_cap(toks[j + 1][0]) and not toks[j + 1][1] and \
                        _base(toks[j + 1][0]).lower() not in _STOP:
                    j += 1
                yield _span(sentence, toks, i, j)
                i = j + 1
                continue
            if not _is_cap(word) or low in _STOP:
                i += 1
                continue
            # 2. a run of capitalised words (linked by connectors)
            j = i
            while j + 1 < n:
                nxt, nxt_opens = toks[j + 1][0], toks[j + 1][1]
                if nxt_opens:
                    break
                if _is_cap(nxt) and _base(nxt).lower() not in _STOP:
                    j += 1
                    continue
                if nxt.lower() in _CONNECTORS and j + 2 < n and _is_cap(toks[j + 2][0]) \
                        and not toks[j + 2][1] and _base(toks[j + 2][0]).lower() not in _STOP:
                    j += 2
                    continue
                break
            if j > i:
                yield _span(sentence, toks, i, j)
                i = j + 1
                continue
            # 3. a single capitalised word inside a sentence
            if not opens:
                yield base
            # 4. a sentence-opening word seen twice that never occurs in lower case
            elif context.repeated_start_never_lower(base):
                yield base
            i += 1


def named_entities(text: str) -> list[str]:
    """Named entities found in ``text``, in order of appearance (duplicates kept)."""
    return list(_iter_entities(text))


def has_named_entity(text: str) -> bool:
    """Whether ``text`` names anything (stops at the first entity found)."""
    return next(_iter_entities(text), None) is not None
