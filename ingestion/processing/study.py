"""Study data from prose: questions, restatements and cloze items for every fact a sentence states.

Fine-tuning on a document's raw text teaches a small model its facts poorly; many varied
questions and restatements of each fact teach them well (Allen-Zhu & Li, *Physics of Language
Models 3.1*: knowledge augmentation; Lin et al. 2025, *Active Reading*; Yang et al. 2024,
*EntiGraph*). Without a teacher model this module writes that study material deterministically
from each sentence: it finds the spans a question can ask for — numbers with their units,
dates and times, places, people and other proper names, "called X", the object of "X uses Y",
the complement of "X is Y" — and for each one writes

* questions of the matching kind (how many / how long / when / where / who / what / which),
  answered once with the short span and once with the full sentence, and questions in plain
  frames around the span's cue words (the content words nearest to it), since a colleague asks
  in their own words, which share the fact's key words rather than its sentence shape;
* a cloze item (the sentence with the span blanked, answered by the span);
* restatements of the sentence under its document and section (raw-text examples);

and, across the documents processed together, questions that link what several documents of
the team say about the same name. Every example is a `qa` or `cpt` draft (origin `study`) whose
payload carries `study` (its sub-kind) and, for questions, `passage` (the paragraph it came from,
which context distillation puts in the teacher's prompt). Sizes are bounded per chunk and per
page, and everything is chosen from the text itself, so reprocessing yields the same examples.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from ingestion.processing.chunking import Chunk
from ingestion.processing.examples import Draft

#: Study examples per chunk at most: a long chunk spreads them over its sentences (every sentence
#: first gets its first wording, then its second …), so size stays bounded and coverage even.
MAX_PER_CHUNK = 64
#: Cross-document questions per processing page at most.
MAX_LINKS = 16
MAX_PASSAGE_CHARS = 700
MIN_WORDS, MAX_WORDS = 5, 60

_MONTHS = ("january|february|march|april|may|june|july|august|september|october|november|december|"
           "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec")
_WEEKDAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_DAYS = _WEEKDAYS + "|mondays|tuesdays|wednesdays|thursdays|fridays"
_DATE = re.compile(
    rf"\b(?:(?:on|by|before|after|until|since|every|each)\s+)?(?:"
    rf"(?:{_DAYS})(?:\s+(?:morning|afternoon|evening|night))?"
    rf"|\d{{4}}-\d{{2}}-\d{{2}}"
    rf"|(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTHS})(?:\s+\d{{4}})?"
    rf"|(?:in\s+)?(?:{_MONTHS})(?:\s+\d{{4}})?"
    rf"|(?:at\s+)?\d{{1,2}}(?::\d{{2}})\s*(?:am|pm|utc|cet|gmt)?(?:\s+(?:utc|cet|gmt))?"
    rf"|(?:at\s+)?\d{{1,2}}\s*(?:am|pm)"
    rf"|q[1-4](?:\s+\d{{4}})?|(?:in\s+)?(?:19|20)\d{{2}})"
    # a day or date followed by its time is one answer ("on Fridays at 11:00")
    rf"(?:,?\s+at\s+\d{{1,2}}(?::\d{{2}})?(?:\s*(?:am|pm))?(?:\s+(?:utc|cet|gmt))?)?\b", re.I)
_UNIT_WORDS = ("seconds?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|business days|working days|"
               "percent|%|ms|milliseconds?|gb|mb|tb|kb|gib|mib|people|engineers|users|customers|members|"
               "nodes|servers|replicas|copies|times|steps|tickets|requests|euros?|dollars?|pounds?|eur|usd|gbp|"
               "seats|licenses|licences|pages|items|attempts|retries|cores|shards|regions|teams|files")
_NUMBER = re.compile(
    rf"(?:[$€£]\s?)?\b\d[\d,]*(?:\.\d+)?(?:\s*(?:{_UNIT_WORDS})\b|%|\s+[a-z][a-z-]{{2,15}}s\b)?", re.I)
#: Numbers written as words ("three years", "two approvers"): only with a unit or a plural noun
#: after them, so "one of the …" or "a second approval" stay out.
_NUMBER_WORDS = ("two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|"
                 "sixty|ninety|hundred|a hundred|a dozen")
_WORD_NUMBER = re.compile(rf"\b(?:{_NUMBER_WORDS})(?:\s+(?:{_UNIT_WORDS})\b|\s+(?!times\b)[a-z][a-z-]{{2,15}}s\b)",
                          re.I)
_PERIOD = r"(?:day|week|month|quarter|year|sprint|cycle|term|half|release|season)"
#: Recurring moments and frequencies, which carry no digit: "on the first day of each quarter",
#: "at the end of every month", "twice a year", "every other week", "reviewed quarterly".
_RECURRING = re.compile(
    rf"\b(?:(?:on|at|by|before|after|from|until|during)\s+)?the\s+(?:first|last|second|third|fourth|final)\s+"
    rf"(?:(?:working|business)\s+)?(?:day|week|{_WEEKDAYS})\s+of\s+(?:each|every|the|a)\s+(?:new\s+)?{_PERIOD}\b"
    rf"|\b(?:(?:at|by|before|after|from|until|towards)\s+)?the\s+(?:end|start|beginning|close|middle)\s+of\s+"
    rf"(?:each|every|the)\s+{_PERIOD}\b", re.I)
_FREQUENCY = re.compile(
    rf"\b(?:once|twice|(?:three|four|five|six|\d+)\s+times)\s+(?:a|an|per|each|every)\s+(?:hour|{_PERIOD})\b"
    rf"|\b(?:every|each)\s+(?:other\s+|second\s+)?(?:hour|morning|evening|night|weekday|{_PERIOD})\b"
    rf"|\b(?:hourly|daily|nightly|weekly|fortnightly|biweekly|monthly|quarterly|yearly|annually)\b"
    rf"(?=\s*(?:[.,;:]|$|\s+(?:and|or|by|at|on|in|from|to|so|unless|because)\b))", re.I)
#: A duration with an article instead of a number: "within a day", "for an hour".
_ARTICLE_DURATION = re.compile(r"\b(?:within|in|after|for|under|over)\s+(?P<span>(?:a|an|one|half an?)\s+"
                               r"(?:(?:business|working)\s+)?(?:second|minute|hour|day|week|month|quarter|year))\b",
                               re.I)
#: A chat channel ("#dq-alerts"): a name a question can ask for, though written in lower case.
_CHANNEL = re.compile(r"(?<![\w#])#[a-z0-9][\w-]{1,40}", re.I)
#: A passive sentence ending in how it is done, with no other span: "Accounts are assigned by region."
_PASSIVE_HOW = re.compile(r"^(?P<subj>[\w' -]{3,60}?)\s+(?P<aux>is|are|was|were)\s+(?:usually\s+|always\s+|only\s+)?"
                          r"(?P<part>[a-z]{3,}(?:ed|en|wn|ht))\s+(?P<span>(?:by|through|via|with|in)\s+[\w' -]{2,40})\.?$",
                          re.I)
_DURATION_UNITS = re.compile(r"^(?:seconds?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|"
                             r"business days|working days|ms|milliseconds?)$", re.I)
_NAME = re.compile(r"\b(?:[A-Z][a-zA-Z0-9&'-]+|[A-Z]{2,})(?:\s+(?:of\s+|de\s+|van\s+)?(?:[A-Z][a-zA-Z0-9&'-]+|[A-Z]{2,}))*")
_CALLED = re.compile(r"\b(?:called|named|known as)\s+[\"“']?(?P<name>[A-Z0-9][\w&'-]*(?:\s+[A-Z0-9][\w&'-]*)*)", re.U)
_COPULA = re.compile(r"^(?P<subj>(?:the|our|a|an|each|every|all)?\s*[\w' -]{2,60}?)\s+(?P<verb>is|are|was|were)\s+"
                     r"(?P<rest>.+)$", re.I)
_VERB3 = re.compile(r"^(?P<subj>(?:the|our|each|every)?\s*[\w' -]{2,50}?)\s+(?P<verb>[a-z]{3,}(?:es|s))\s+"
                    r"(?P<rest>.+)$")
_PLACE = re.compile(r"\b(?P<prep>in|at)\s+(?:the\s+)?(?P<place>[A-Z][a-zA-Z-]+(?:\s+[A-Z][a-zA-Z-]+)*)")
_NOUN_AFTER = re.compile(r"\s+(?!(?:and|or|but|to|for|of|in|on|at|by|with|from|since|until|when|if|as|is|are|was|"
                         r"were|has|have|every|each)\b)[a-z]{3,}")
_OBJECT_AFTER = re.compile(r"\s+(?:the|a|an|its|our|their|his|her|every|each|all|no|to|that|this|up|out|on|in)\b")
_MARKUP = re.compile(r"\*\*|__|`|\[([^\]]*)\]\([^)]*\)")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])")
_NOT_VERBS = {"is", "was", "has", "does", "this", "its", "his", "yes", "plus", "less", "unless", "across", "always",
              "process", "access", "address", "business", "status", "class", "series", "news", "analysis",
              "basis", "bus", "gas", "us", "as", "thus", "various", "previous", "serious", "towards",
              "afterwards", "besides", "perhaps", "sometimes", "reads", "needs"}
_STOP = {"the", "a", "an", "and", "or", "of", "to", "in", "on", "at", "for", "by", "with", "is", "are", "was",
         "were", "be", "it", "its", "this", "that", "from", "as", "we", "our", "they", "their", "there", "which",
         "who", "what", "when", "where", "how", "each", "every", "all", "any", "some", "not", "no", "if", "then"}
_SKIP_NAMES = {"the", "a", "an", "we", "our", "it", "this", "that", "these", "those", "they", "there", "if",
               "when", "each", "every", "all", "for", "in", "on", "at", "after", "before", "once", "new", "most",
               "some", "one", "two", "three", "i", "you", "he", "she", "his", "her", "please", "note"}

_KIND_LABEL = {"where_name": "where", "which_name": "which", "called": "what"}
_WH_INTRO = ["{q}", "In {where}, {ql}", "According to {title}, {ql}", "{q}", "Quick question about {topic}: {ql}"]
_FULL_ANSWER = ["{sentence}", "{Span}. {sentence}", "According to {title}, {sentence_l}"]
_RESTATE = ["{where}: {sentence}", "From {title}, on {topic}: {sentence}", "A fact about {topic}: {sentence}"]
#: Questions built from a span's cue words (the content words of its sentence nearest to it) in
#: plain frames: people ask about a fact in their own words, which share the fact's key words
#: with the page rather than its sentence shape. Several frames per kind keep the model from
#: tying the answer to one wording.
_CUE_QUESTIONS = {
    "who": ["Who is responsible for {cue}?", "Who handles {cue}?", "Who should I talk to about {cue}?",
            "Who is in charge of {cue}?"],
    "how_many": ["How many for {cue}?", "What is the number for {cue}?", "What count applies to {cue}?",
                 "What's the figure for {cue}?"],
    "how_long": ["How long for {cue}?", "What is the time limit for {cue}?", "How much time for {cue}?",
                 "What period applies to {cue}?"],
    "how_much": ["How much for {cue}?", "What is the amount for {cue}?", "What is the limit for {cue}?",
                 "What value applies to {cue}?"],
    "how_often": ["How often is {cue}?", "How frequently for {cue}?", "At what interval is {cue}?",
                  "How often does {cue} happen?"],
    "how": ["How is {cue} done?", "How does {cue} work?", "In what way is {cue} done?", "How do we handle {cue}?"],
    "when": ["When is {cue}?", "At what time is {cue}?", "What is the schedule for {cue}?",
             "When does {cue} happen?"],
    "where": ["Where is {cue}?", "Which place is it for {cue}?", "What location for {cue}?",
              "Where does {cue} happen?"],
    "which": ["Which one is it for {cue}?", "What is the name for {cue}?", "Which is used for {cue}?",
              "What do we use for {cue}?"],
    "what": ["What is the name of {cue}?", "What do we call {cue}?", "What is {cue} called?",
             "What name does {cue} have?"],
}
_LINK_QUESTIONS = ["What do our documents say about {name}?", "Which documents mention {name}, and what do they say?",
                   "Summarize what we know about {name}."]


@dataclass(frozen=True, slots=True)
class Span:
    """Something a sentence states that a question can ask for."""

    text: str  # the answer, as it reads in the sentence
    start: int
    end: int
    kind: str  # how_many | how_long | how_often | how | when | where_name | who | which_name | called


@dataclass(frozen=True, slots=True)
class Item:
    kind: str  # the study sub-kind: question:<wh> | cloze | restatement | link
    question: str
    answer: str


def plain_text(text: str) -> str:
    return " ".join(_MARKUP.sub(lambda m: m.group(1) or "", text).split())


def sentences(text: str) -> list[tuple[str, str]]:
    """(sentence, paragraph) pairs of the prose in a chunk: headings, tables, code and list
    markers left out; short fragments and run-ons skipped."""
    out: list[tuple[str, str]] = []
    in_code = False
    for block in re.split(r"\n\s*\n", text):
        lines = []
        for line in block.split("\n"):
            stripped = line.strip()
            if stripped.startswith("```"):
                in_code = not in_code
                continue
            if in_code or not stripped or stripped.startswith(("#", "|", ">")):
                continue
            lines.append(re.sub(r"^(?:[-*+]|\d+[.)])\s+", "", stripped))
        paragraph = plain_text(" ".join(lines))
        for sentence in _SENTENCE.split(paragraph):
            sentence = sentence.strip()
            words = len(sentence.split())
            if MIN_WORDS <= words <= MAX_WORDS and sentence[-1:] in ".!" and not sentence.endswith("?"):
                out.append((sentence, paragraph[:MAX_PASSAGE_CHARS]))
    return out


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


_FUNCTION_WORDS = {"the", "our", "a", "an", "each", "every", "all", "this", "these", "those", "there", "it", "we",
                   "they", "most", "some", "new", "any", "no", "only", "who", "what", "when", "where", "how", "which",
                   "backups", "customers", "refunds", "requests", "changes", "deploys", "releases", "invoices"}


_CUE_SKIP = _STOP | {"our", "these", "those", "most", "new", "only", "who", "what", "when", "where", "how",
                     "which", "whatever", "whichever", "whose", "said", "says",
    "may", "can", "could", "should", "must", "will", "would", "shall", "need", "needs", "has", "have", "had", "does",
    "did", "done", "been", "being", "also", "just", "usually", "always", "never", "often", "here", "everyone",
    "anyone", "someone", "anything", "everything", "up", "out", "own", "than", "more", "less", "into", "over", "under",
    "within", "about", "after", "before", "once", "so", "too", "very", "but", "not", "yes", "he", "she", "his", "her",
    "him", "them", "you", "named", "called", "known", "your", "us", "me", "my", "i", "one", "ones", "get", "gets", "goes", "go", "via", "per"}


def _lower_first(text: str) -> str:
    """The text with its first word lower-cased when it is a function word ("The", "Our" …):
    any other capitalised first word may be a name, and stays."""
    first = text.split(" ", 1)[0]
    return text[:1].lower() + text[1:] if first.lower() in _FUNCTION_WORDS else text


def find_spans(sentence: str) -> list[Span]:
    """The askable spans of a sentence, left to right, without overlaps (dates before numbers,
    numbers before names)."""
    found: list[Span] = []
    taken: list[tuple[int, int]] = []

    def add(start: int, end: int, kind: str) -> None:
        text = sentence[start:end].strip(" ,;:")
        if not text or any(s < end and start < e for s, e in taken):
            return
        taken.append((start, end))
        found.append(Span(text, start, start + len(text), kind))

    for m in _CALLED.finditer(sentence):
        add(m.start("name"), m.end("name"), "called")
    for m in _DATE.finditer(sentence):
        if re.fullmatch(r"(?:in\s+)?(?:19|20)\d{2}", m.group(0), re.I) and "%" in sentence[m.end():m.end() + 2]:
            continue
        month = re.search(rf"\b(?:{_MONTHS})\b", m.group(0), re.I)
        if month and not month.group(0)[0].isupper():
            continue  # "may", "march": verbs, not months
        add(m.start(), m.end(), "when")
    for m in _RECURRING.finditer(sentence):
        add(m.start(), m.end(), "when")
    for m in _FREQUENCY.finditer(sentence):
        add(m.start(), m.end(), "how_often")
    for m in _ARTICLE_DURATION.finditer(sentence):
        add(m.start("span"), m.end("span"), "how_long")
    for m in _CHANNEL.finditer(sentence):
        add(m.start(), m.end(), "which_name")
    numbers = [m for m in _NUMBER.finditer(sentence)
               if not (re.search(r"[A-Z][\w-]*\s+$", sentence[:m.start()]) and m.group(0)[:1] not in "$€£")]
    # (a digit after a capitalised word is part of a name: "Service 7", "Windows 11")
    for m in sorted(numbers + list(_WORD_NUMBER.finditer(sentence)), key=lambda m: m.start()):
        text = m.group(0)
        unit = text.split()[-1].lower() if len(text.split()) > 1 else ""
        if unit and not re.fullmatch(_UNIT_WORDS, unit, re.I) and _OBJECT_AFTER.match(sentence[m.end():]):
            if not text.split()[0][0].isdigit():
                continue  # "two keeps …" is no count
            text, unit = text.rsplit(" ", 1)[0], ""  # "3 keeps its …": the word after is a verb
        kind = "how_long" if _DURATION_UNITS.match(unit) else "how_many"
        if text.startswith(("$", "€", "£")) or unit in ("euros", "euro", "dollars", "dollar", "eur", "usd", "gbp",
                                                         "pounds", "pound", "%", "percent"):
            kind = "how_much"
        add(m.start(), m.start() + len(text), kind)
    for m in _PLACE.finditer(sentence):
        add(m.start("place"), m.end("place"), "where_name" if not _NOUN_AFTER.match(sentence[m.end():])
            else "which_name")
    for m in _NAME.finditer(sentence):
        if m.start() == 0 and m.group(0).split()[0].lower() in _SKIP_NAMES:
            continue
        words = m.group(0).split()
        if sentence[m.end():m.end() + 2] in ("'s", "’s"):
            continue  # a possessive ("Ines Duarte's team"): the question would not read
        if m.start() == 0 and len(words) == 1:
            continue  # a capitalised first word is usually not a name
        add(m.start(), m.end(), "who" if len(words) == 2 and all(w[0].isupper() and w[1:].islower() for w in words)
            else "which_name")
    if not found and (m := _PASSIVE_HOW.match(sentence)) and m.group("part").lower() not in ("been", "seen"):
        add(m.start("span"), m.end("span"), "how")
    return sorted(found, key=lambda s: s.start)


def _verb_base(verb: str) -> str:
    if verb.endswith("ies"):
        return verb[:-3] + "y"
    if verb.endswith(("shes", "ches", "sses", "xes", "zes")):
        return verb[:-2]
    return verb[:-1]


def _wh(span: Span, sentence: str) -> tuple[str, str]:
    """(wh phrase, what the span reads as) for a span; the wh phrase replaces the span in place."""
    before = sentence[:span.start].rstrip()
    if span.kind == "how_long":
        unit = span.text.split()[-1].lower()
        return (f"how many {unit if unit.endswith('s') else unit + 's'}" if before.endswith(("for", "within", "after"))
                else "how long"), span.text
    if span.kind == "how_many":
        words = span.text.split()
        return (f"how many {' '.join(words[1:])}" if len(words) > 1 and not words[-1][0].isdigit()
                else "how many"), span.text
    if span.kind == "how_much":
        return "how much", span.text
    if span.kind == "when":
        return "when", span.text
    if span.kind in ("how_often", "how"):
        return span.kind.replace("_", " "), span.text
    if span.kind == "where_name":
        return "where", span.text
    if span.kind == "who":
        return "who", span.text
    if span.kind == "called":
        return "what", span.text
    return "what", span.text


def _echo_question(sentence: str, span: Span) -> str | None:
    """The sentence with the span replaced by its wh-phrase: a subject span gives a real question
    ("Who owns Basalt?"); any other an echo question ("Backups are kept for how many days?"),
    which small models learn as readily and which keeps the sentence's own words around it."""
    wh, _ = _wh(span, sentence)
    before = sentence[:span.start].rstrip()
    after = re.split(r"[,;:(]|\s[-–—]\s", sentence[span.end:], maxsplit=1)[0].rstrip(" .!")  # the span's clause
    if "; " in before:
        before = before.rsplit("; ", 1)[1]
    if span.kind == "how_long" and re.search(r"\bevery$", before, re.I):
        before, wh = before[:-5].rstrip(), "how often"
    if span.kind in ("when", "where_name"):
        before = re.sub(r"\s+(?:on|in|at|by|from|during)$", "", before, flags=re.I)
        if span.kind == "where_name":
            wh = "where"
    if span.kind == "which_name" and _NOUN_AFTER.match(sentence[span.end:]):
        before, wh = re.sub(r"\s+the$", "", before, flags=re.I), "which"
    if not before:
        q = f"{_cap(wh)}{after}?"
    else:
        q = f"{before} {wh}{after}?"
    q = re.sub(r"\s+", " ", q).replace(" ,", ",")
    return q if len(q.split()) >= 3 else None


def _fronted_question(sentence: str, span: Span) -> str | None:
    """A fronted question where the sentence's shape allows it: "X is called Y" → "What is X
    called?", "X is Y" → "What is X?", "X uses Y" → "What does X use?"."""
    tail = sentence[span.end:].strip(" .!")
    if span.kind == "how":
        m = _PASSIVE_HOW.match(sentence)
        return f"How {m.group('aux').lower()} {_lower_first(m.group('subj').strip())} {m.group('part')}?" if m else None
    if span.kind == "called":
        head = sentence[:span.start]
        m = re.match(r"^(?P<subj>.+?)\s+(?P<aux>is|are|was|were)\s+(?:also\s+)?(?:called|named|known as)\s*$", head, re.I)
        if m and "," not in m.group("subj") and len(m.group("subj").split()) <= 8:
            return f"What {m.group('aux').lower()} {_lower_first(m.group('subj'))} called?"
        return None
    if tail:
        return None  # the span is not the end of the sentence: no simple fronting
    m = _COPULA.match(sentence[:span.start].rstrip() + " X")
    if m and m.group("rest") == "X" and len(m.group("subj").split()) <= 8:
        return f"{_cap(_wh(span, sentence)[0])} {m.group('verb').lower()} {_lower_first(m.group('subj').strip())}?"
    m = _VERB3.match(sentence[:span.start].rstrip() + " X")
    if (m and m.group("rest") == "X" and m.group("verb") not in _NOT_VERBS and len(m.group("subj").split()) <= 6
            and span.kind in ("which_name", "who", "how_many", "what")):
        wh = "who" if span.kind == "who" else "what"
        return f"{_cap(wh)} does {_lower_first(m.group('subj').strip())} {_verb_base(m.group('verb'))}?"
    return None


_VERB_OBJECT = {"the", "a", "an", "their", "its", "our", "his", "her", "them", "it", "to", "place", "up", "out",
                "into", "through", "within", "for", "by", "on", "every", "each", "all", "no"}


def cue_words(sentence: str, span: Span, n: int = 4) -> str:
    """The n content words of the sentence nearest to the span (outside it), in sentence order:
    what a colleague's own question about this fact most likely shares with the page."""
    tokens = list(re.finditer(r"[A-Za-z][\w'-]*[A-Za-z0-9]|[A-Za-z]", sentence))
    words = []
    for i, m in enumerate(tokens):
        word = m.group(0).lower().removesuffix("'s").removesuffix("’s")
        after = tokens[i + 1].group(0).lower() if i + 1 < len(tokens) else ""
        if (m.start() < span.end and span.start < m.end()) or len(word) < 3 or word in _CUE_SKIP:
            continue
        if (word.endswith("ed") and not m.group(0)[0].isupper()) or (
                word.endswith("s") and after in _VERB_OBJECT and not word.endswith("ss")):
            continue  # "flagged", "takes place", "covers the …": verbs, which a question rewords anyway
        words.append((m.start(), m.group(0)))
    nearest = sorted(words, key=lambda w: (min(abs(w[0] - span.start), abs(w[0] - span.end)), w[0]))[:n]
    return " ".join(_lower_first(w) if w[:1].isupper() and w.lower() in _FUNCTION_WORDS else w
                    for _, w in sorted(nearest))


def cue_questions(sentence: str, span: Span, seed: int) -> list[str]:
    """Two questions about the span in plain frames of its kind, one with the cue words nearest
    to it and one with the sentence's leading content words (its subject, usually)."""
    frames = _CUE_QUESTIONS[_KIND_LABEL.get(span.kind, span.kind)]
    near = cue_words(sentence, span)
    lead = cue_words(sentence, Span("", 0, 0, span.kind), n=3)
    if lead and any(w in span.text.split() for w in lead.split()):
        lead = ""
    out = []
    for k, cue in enumerate(c for c in dict.fromkeys((near, lead)) if c):
        out.append(frames[(seed + k) % len(frames)].format(cue=cue))
    return out


def sentence_items(sentence: str, title: str, topic: str) -> list[list[Item]]:
    """Study items of one sentence, grouped by round: 0 a short-answer question about its first
    span, 1 about its other spans and cue-word questions about each, 2 other wordings with full-sentence answers and a
    restatement, 3 cloze items, 4 a second restatement. A chunk takes round 0 of every sentence
    before round 1 of any, and so on, until its cap."""
    spans = find_spans(sentence)
    where = f"{title} ({topic})" if topic and topic != title else title or "our documents"
    values = {"title": title or "our documents", "topic": topic or title or "this topic", "where": where,
              "sentence": sentence, "sentence_l": _lower_first(sentence)}
    seed = zlib.crc32(sentence.encode())
    rounds: list[list[Item]] = [[], [], [], [], []]
    for k, span in enumerate(spans[:4]):
        kind = "question:" + _KIND_LABEL.get(span.kind, span.kind)
        questions = [q for q in (_fronted_question(sentence, span), _echo_question(sentence, span)) if q]
        if not questions:
            continue
        q0 = questions[0]
        full = _FULL_ANSWER[(seed + k) % len(_FULL_ANSWER)].format(**values, Span=_cap(span.text))
        intro = _WH_INTRO[(seed + k) % len(_WH_INTRO)]
        rounds[min(k, 1)].append(Item(kind, intro.format(**values, q=q0, ql=_lower_first(q0)), f"{_cap(span.text)}."))
        rounds[1].extend(Item(kind, q, f"{_cap(span.text)}.") for q in cue_questions(sentence, span, seed + k))
        alt = questions[-1]
        rounds[2].append(Item(kind, _WH_INTRO[(seed + k + 1) % len(_WH_INTRO)].format(
            **values, q=alt, ql=_lower_first(alt)), full))
        blank = sentence[:span.start] + "____" + sentence[span.end:]
        rounds[3].append(Item("cloze", f"Fill in the blank ({values['title']}): {blank}", span.text))
    rounds[2].append(Item("restatement", "", _RESTATE[seed % len(_RESTATE)].format(**values)))
    if spans:
        rounds[4].append(Item("restatement", "", _RESTATE[(seed + 1) % len(_RESTATE)].format(**values)))
    return rounds


def _draft(item: Item, chunk: int, passage: str) -> Draft:
    if item.kind == "restatement":
        return Draft("cpt", {"text": item.answer, "study": item.kind}, "study", chunk=chunk)
    return Draft("qa", {"question": item.question, "answer": item.answer, "study": item.kind, "passage": passage},
                 "study", chunk=chunk)


def study_examples(title: str, chunks: Sequence[Chunk], skip: set[int] | None = None,
                   per_chunk: int = MAX_PER_CHUNK) -> list[Draft]:
    """The study drafts of one document: at most `per_chunk` per chunk, spread over its sentences."""
    out: list[Draft] = []
    for i, chunk in enumerate(chunks):
        if skip and i in skip:
            continue
        path = [h for h in chunk.heading_path if h != title]
        topic = path[-1] if path else title
        per_sentence = [(sentence_items(s, title, topic), p) for s, p in sentences(chunk.text)]
        drafts: list[Draft] = []
        seen: set[tuple[str, str]] = set()
        for round_ in range(5):
            for rounds, passage in per_sentence:
                for item in rounds[round_]:
                    if len(drafts) >= per_chunk:
                        break
                    if (item.question, item.answer) not in seen:
                        seen.add((item.question, item.answer))
                        drafts.append(_draft(item, i, passage))
        out.extend(drafts)
    return out


def link_examples(documents: Sequence[tuple[str, Sequence[Chunk], int]], limit: int = MAX_LINKS
                  ) -> list[tuple[int, Draft]]:
    """Questions linking what several documents (title, chunks, index) say about the same name:
    (index of the document the example is filed under, draft). Names met in one document only
    give nothing."""
    mentions: dict[str, dict[int, tuple[str, int, str]]] = {}
    named: set[str] = set()  # met as a name inside a sentence somewhere, not only as its first word
    for title, chunks, index in documents:
        for c, chunk in enumerate(chunks):
            for sentence, _ in sentences(chunk.text):
                names = [span.text for span in find_spans(sentence)
                         if span.kind in ("who", "which_name", "called", "where_name") and len(span.text) >= 3]
                named.update(names)
                first = re.match(r"[A-Z][a-zA-Z0-9&'-]{2,}", sentence)
                if first and first.group(0).lower() not in _SKIP_NAMES | _FUNCTION_WORDS:
                    names.append(first.group(0))  # a sentence may well open with a name
                for name in names:
                    mentions.setdefault(name, {}).setdefault(index, (title, c, sentence))
    out: list[tuple[int, Draft]] = []
    for name in sorted(mentions, key=lambda n: (-len(mentions[n]), n)):
        docs = mentions[name]
        if len(docs) < 2 or name not in named:
            continue
        if len(out) >= limit:
            break
        ordered = sorted(docs.items())
        answer = " ".join(f"{title}: {sentence}" for _, (title, _, sentence) in ordered[:4])
        q = _LINK_QUESTIONS[zlib.crc32(name.encode()) % len(_LINK_QUESTIONS)].format(name=name)
        first, (_, chunk, _) = ordered[0]
        passage = "\n".join(sentence for _, (_, _, sentence) in ordered[:4])
        out.append((first, Draft("qa", {"question": q, "answer": answer, "study": "link", "passage": passage},
                                 "study", chunk=chunk)))
    return out


# --------------------------------------------------------------------------- teacher output
def content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP]


def grounded(text: str, passage: str, share: float = 0.8) -> bool:
    """Whether model-written text is grounded in the passage: every number and every
    capitalised word (a name, or a sentence's first word) it states occurs in the passage, and at least `share` of
    its content words do (answers: most of their words; paraphrases, which reword by design: 0)."""
    words = content_words(text)
    if not words:
        return False
    have = set(content_words(passage))
    names = [w.lower() for w in re.findall(r"\b[A-Z][\w-]+", text)]
    needed = [w for w in words if w.isdigit()] + [w for n in names for w in content_words(n)]
    if any(w not in have for w in needed):
        return False
    return sum(1 for w in words if w in have) / len(words) >= share
