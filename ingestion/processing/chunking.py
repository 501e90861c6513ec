"""Structure-aware, token-accurate Markdown chunking (no database needed).

A document is cut into sections at its headings; a section's blocks (paragraphs, lists,
tables, fenced code) are packed greedily into chunks of at most `max_tokens` tokens of the
team's base-model tokenizer, counted without special tokens. A block that is too large on its
own is split at its lines (code, tables, lists), then at sentences, and only as a last resort
at token boundaries (at a word boundary when there is one), so a chunk never ends inside a code block or a table row when that can be
avoided. Every chunk carries its heading path; a continued table repeats its header row.

Speed comes from tokenizing in batches. A section short enough to fit is counted whole and,
when it fits, is one chunk: one pass. Longer sections have every block counted once, are
packed from those counts (token counts of concatenations are nearly additive: packing adds a
small cost per gap), and every packed chunk is counted once more to make its count exact; the
rare chunk whose true count is over the limit is packed again, tighter.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

_FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})([^\n]*)$", re.M)
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.M)
_RUN = re.compile(r"^[^\S\n]*\S[^\n]*(?:\n[^\S\n]*\S[^\n]*)*", re.M)  # consecutive non-blank lines
_LIST = re.compile(r"[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]")
_TABLE_SEP = re.compile(r"^[ \t]*\|?[ \t]*:?-{2,}:?[ \t]*(?:\|[ \t]*:?-{2,}:?[ \t]*)*\|?[ \t]*$")
_LINE = re.compile(r"[^\n]*\S[^\n]*")
_SENTENCE = re.compile(r"\S.*?(?:[.!?]+[\"')\]]*(?=\s)|$)", re.S)
_EMPHASIS = re.compile(r"[*_`]+")

PARA, LIST, TABLE, CODE, HEADING, QUOTE = "para", "list", "table", "code", "heading", "quote"


@dataclass(slots=True)
class Chunk:
    """A piece of a document: `text` is `source[start:end]`, prefixed by a table's header
    row when it continues a table that began in an earlier chunk."""

    text: str
    token_count: int
    heading_path: list[str]
    start: int
    end: int


@dataclass(slots=True)
class _Unit:
    start: int
    end: int
    kind: str
    tokens: int = 0
    context: tuple[int, int] | None = None  # a split table's header span, repeated when it starts a chunk
    exact: bool = True  # `tokens` is the exact count of the unit's text (not an estimate)


@dataclass(slots=True)
class _Section:
    path: list[str]
    units: list[_Unit] = field(default_factory=list)


class TokenCounter:
    """Counts tokens of many strings at once with a Hugging Face fast tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None) or tokenizer
        if not hasattr(backend, "encode_batch"):
            raise TypeError("chunking needs a Hugging Face fast tokenizer (tokenizers.Tokenizer backend)")
        self.backend = backend
        self._batch = getattr(backend, "encode_batch_fast", None) or backend.encode_batch
        self._gaps: dict[tuple[str, str], int] = {}
        self.additive = _newline_additive(backend)

    def counts(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(e) for e in self._batch(list(texts), add_special_tokens=False)]

    def count(self, text: str) -> int:
        return len(self.backend.encode(text, add_special_tokens=False))

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return list(self.backend.encode(text, add_special_tokens=False).offsets)

    def gap(self, gap: str, nxt: str) -> int:
        """What the whitespace between two blocks adds, measured between a period and a stand-in
        for the next block's first character (a lone "\\n\\n" is one token, two before a word)."""
        nxt = "a" if nxt.islower() else "A" if nxt.isupper() else "0" if nxt.isdigit() else nxt
        key = (gap, nxt)
        cost = self._gaps.get(key)
        if cost is None:
            a, b, ab = self.counts([".", nxt, "." + gap + nxt])
            cost = max(0, ab - a - b)
            self._gaps[key] = cost
        return cost


def _newline_additive(backend: Any) -> bool:
    """Whether counts add up exactly across a line break: true of byte-level BPE with GPT-2's
    pre-tokenization regex (SmolLM2, GPT-2 and their kin), no normalizer and no added token that
    holds or strips whitespace. That regex never lets a pre-token run across a newline that is
    followed by a visible character, so `count(a + gap + b) == count(a) + count(gap in context)
    + count(b)` when `a` and `b` have no whitespace at their ends and `gap` ends with a newline
    (https://github.com/huggingface/tokenizers/blob/main/tokenizers/src/pre_tokenizers/byte_level.rs)."""
    try:
        from tokenizers.pre_tokenizers import ByteLevel
    except ImportError:  # pragma: no cover
        return False
    pre = getattr(backend, "pre_tokenizer", None)
    if backend.normalizer is not None or not isinstance(pre, ByteLevel) or not pre.use_regex or pre.add_prefix_space:
        return False
    for token in backend.get_added_tokens_decoder().values():
        if token.lstrip or token.rstrip or any(c.isspace() for c in token.content):
            return False
    return True


_COUNTERS: weakref.WeakKeyDictionary[Any, TokenCounter] = weakref.WeakKeyDictionary()


def token_counter(tokenizer: Any) -> TokenCounter:
    """The counter of a tokenizer, kept while the tokenizer lives (its gap costs are cached)."""
    try:
        counter = _COUNTERS.get(tokenizer)
        if counter is None:
            counter = _COUNTERS[tokenizer] = TokenCounter(tokenizer)
        return counter
    except TypeError:  # not weak-referenceable
        return TokenCounter(tokenizer)


# --------------------------------------------------------------------------- parsing
def _code_spans(text: str) -> list[tuple[int, int]]:
    """Fenced code blocks as (start, end) spans; an unclosed fence runs to the end."""
    spans: list[tuple[int, int]] = []
    opening: re.Match[str] | None = None
    for m in _FENCE_LINE.finditer(text):
        if opening is None:
            opening = m
        else:
            fence = opening.group(1)
            close = m.group(1)
            if close[0] == fence[0] and len(close) >= len(fence) and not m.group(2).strip():
                spans.append((opening.start(), m.end()))
                opening = None
    if opening is not None:
        spans.append((opening.start(), len(text.rstrip())))
    return spans


def _kind(text: str, start: int, end: int) -> str:
    first = text[start:text.find("\n", start, end) if "\n" in text[start:end] else end]
    stripped = first.lstrip()
    if stripped.startswith("|"):
        return TABLE
    if stripped.startswith(">"):
        return QUOTE
    if _LIST.match(first):
        return LIST
    nl = text.find("\n", start, end)
    if nl != -1:
        nl2 = text.find("\n", nl + 1, end)
        second = text[nl + 1:nl2 if nl2 != -1 else end]
        if "|" in first and _TABLE_SEP.match(second):
            return TABLE
    return PARA


def _trim(text: str, s: int, e: int) -> tuple[int, int]:
    """The span without whitespace at either end (units never begin or end with whitespace)."""
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def _blocks(text: str, start: int, end: int, out: list[_Unit]) -> None:
    for m in _RUN.finditer(text, start, end):
        s, e = _trim(text, m.start(), m.end())
        if e > s:
            out.append(_Unit(s, e, _kind(text, s, e)))


def _title(raw: str) -> str:
    return _EMPHASIS.sub("", raw).strip()


def parse_sections(text: str) -> list[_Section]:
    """Sections in order, each with its heading path and its blocks (heading lines included)."""
    sections: list[_Section] = [_Section([])]
    stack: list[tuple[int, str]] = []
    pos = 0

    def prose(upto: int) -> None:
        nonlocal pos, stack
        for h in _HEADING.finditer(text, pos, upto):
            _blocks(text, pos, h.start(), sections[-1].units)
            level = len(h.group(1))
            stack = [(lv, t) for lv, t in stack if lv < level] + [(level, _title(h.group(2)))]
            sections.append(_Section([t for _, t in stack], [_Unit(*_trim(text, h.start(), h.end()), HEADING)]))
            pos = h.end()
        _blocks(text, pos, upto, sections[-1].units)
        pos = upto

    for s, e in _code_spans(text):
        prose(s)
        sections[-1].units.append(_Unit(*_trim(text, s, e), CODE))
        pos = e
    prose(len(text))

    # A section with nothing but its heading joins the next one (its path is the deeper one).
    merged: list[_Section] = []
    carry: list[_Unit] = []
    for section in sections:
        units = carry + section.units
        if units and all(u.kind == HEADING for u in units) and section is not sections[-1]:
            carry = units
            continue
        carry = []
        if units:
            merged.append(_Section(section.path, units))
    return merged


# --------------------------------------------------------------------------- splitting
def _line_units(text: str, unit: _Unit) -> list[_Unit]:
    spans = (_trim(text, m.start(), m.end()) for m in _LINE.finditer(text, unit.start, unit.end))
    return [_Unit(s, e, unit.kind) for s, e in spans if e > s]


def _sentence_units(text: str, unit: _Unit) -> list[_Unit]:
    spans = (_trim(text, m.start(), m.end()) for m in _SENTENCE.finditer(text, unit.start, unit.end))
    return [_Unit(s, e, unit.kind) for s, e in spans if e > s]


def _token_units(text: str, unit: _Unit, budget: int, counter: TokenCounter) -> list[_Unit]:
    """The last resort: cut at token boundaries, about `budget` tokens at a time (never inside
    a character that spans several byte-level tokens)."""
    part = text[unit.start:unit.end]
    offsets = counter.offsets(part)
    cuts = [0]
    last, i = 0, budget
    while i < len(offsets):
        j = i
        while j > last and offsets[j - 1][1] > offsets[j][0]:  # token j starts inside token j-1's text
            j -= 1
        # Prefer the nearest word boundary before it: a cut inside a word leaves two halves that
        # mean nothing; a word longer than the whole budget is still cut where it must be.
        k = j
        while k > last and not _word_boundary(part, offsets, k):
            k -= 1
        if k > last:
            j = k
        if j > last and offsets[j][0] > cuts[-1]:
            cuts.append(offsets[j][0])
            last, i = j, j + budget
        else:
            i += 1  # no clean boundary here: look a little further
    cuts.append(unit.end - unit.start)
    out = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        s, e = unit.start + a, unit.start + b
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append(_Unit(s, e, unit.kind, min(budget, len(offsets)), unit.context, exact=False))
    return out


def _word_boundary(part: str, offsets: list[tuple[int, int]], k: int) -> bool:
    """Token k starts a word (or the space before one), and not inside token k-1's text."""
    start = offsets[k][0]
    if offsets[k - 1][1] > start or start <= 0 or start >= len(part):
        return False
    return part[start].isspace() or part[start - 1].isspace()


def _split(text: str, unit: _Unit, budget: int, counter: TokenCounter, level: int = 0) -> list[_Unit]:
    """Split a block that does not fit: lines, then sentences, then tokens; counts filled in."""
    if unit.tokens <= budget:
        return [unit]
    levels = ["sentences", "lines"] if unit.kind in (PARA, QUOTE) else ["lines", "sentences"]
    while level < len(levels):
        how = levels[level]
        level += 1
        parts = _line_units(text, unit) if how == "lines" else _sentence_units(text, unit)
        if len(parts) <= 1:
            continue
        if unit.kind == TABLE and how == "lines":
            header = _table_header(text, parts)
            for p in parts[header:]:
                p.context = (parts[0].start, parts[header - 1].end) if header else None
        else:
            for p in parts:
                p.context = unit.context
        for p, n in zip(parts, counter.counts([text[p.start:p.end] for p in parts]), strict=True):
            p.tokens = n
        out: list[_Unit] = []
        for p in parts:
            out.extend(_split(text, p, budget, counter, level) if p.tokens > budget else [p])
        return out
    return _token_units(text, unit, budget, counter)


def _table_header(text: str, rows: list[_Unit]) -> int:
    """How many leading lines of a table form its header (header row plus separator)."""
    if len(rows) >= 2 and _TABLE_SEP.match(text[rows[1].start:rows[1].end]):
        return 2
    return 0


# --------------------------------------------------------------------------- packing
class _Packer:
    """Greedy packing of units into groups whose estimated token count fits a budget."""

    def __init__(self, text: str, counter: TokenCounter, budget: int, overlap: int) -> None:
        self.text, self.counter, self.budget, self.overlap = text, counter, budget, overlap
        self._context: dict[tuple[int, int], int] = {}

    def context_cost(self, u: _Unit) -> int:
        if u.context is None or u.context[1] > u.start:
            return 0
        if u.context not in self._context:
            self._context[u.context] = self.counter.count(self.text[u.context[0]:u.context[1]]) + 1
        return self._context[u.context]

    def gap(self, prev: _Unit, nxt: _Unit) -> int:
        return self.counter.gap(self.text[prev.end:nxt.start], self.text[nxt.start])

    def exact(self, units: list[_Unit]) -> bool:
        """Whether `cost(units)` is the group's exact count (see `_newline_additive`)."""
        if not self.counter.additive or not all(u.exact for u in units):
            return False
        for a, b in zip(units, units[1:], strict=False):
            gap = self.text[a.end:b.start]
            if not gap.endswith("\n") or gap.strip(" \t\r\n"):  # ASCII whitespace ending in a newline
                return False
        return True

    def cost(self, units: list[_Unit]) -> int:
        if not units:
            return 0
        return (self.context_cost(units[0]) + sum(u.tokens for u in units)
                + sum(self.gap(a, b) for a, b in zip(units, units[1:], strict=False)))

    def pack(self, units: list[_Unit]) -> list[list[_Unit]]:
        groups: list[list[_Unit]] = []
        cur: list[_Unit] = []
        cur_tokens = 0
        for u in units:
            if cur:
                add = self.gap(cur[-1], u) + u.tokens
                if cur_tokens + add <= self.budget:
                    cur.append(u)
                    cur_tokens += add
                    continue
                groups.append(cur)
                cur = self.tail(cur, self.budget - u.tokens - self.context_cost(u) - 2)
                cur_tokens = self.cost(cur)
                if cur:
                    cur_tokens += self.gap(cur[-1], u)
            if not cur:
                if u.context is not None and self.context_cost(u) + u.tokens > self.budget:
                    u.context = None  # the header does not fit beside this row: leave it out
                cur_tokens = self.context_cost(u)
            cur.append(u)
            cur_tokens += u.tokens
        if cur:
            groups.append(cur)
        return groups

    def tail(self, group: list[_Unit], room: int) -> list[_Unit]:
        """The end of `group` repeated at the start of the next chunk: whole units that fit in
        `overlap` tokens, or else the last `overlap` tokens of the last unit."""
        limit = min(self.overlap, room)
        if limit <= 0:
            return []
        tail: list[_Unit] = []
        total = 0
        for u in reversed(group):
            if u.kind not in (PARA, LIST, QUOTE):  # tables, code and headings are not repeated
                break
            add = u.tokens + (self.gap(u, tail[0]) if tail else 0)
            if total + add > limit:
                break
            tail.insert(0, _Unit(u.start, u.end, u.kind, u.tokens, u.context, u.exact))
            total += add
        last = group[-1]
        if tail or last.kind not in (PARA, LIST, QUOTE):
            return tail
        offsets = self.counter.offsets(self.text[last.start:last.end])
        start = last.start + offsets[max(0, len(offsets) - limit)][0]
        # Begin at a word: the rest of a cut word is not worth its tokens.
        if start > last.start and not self.text[start - 1].isspace():
            space = self.text.find(" ", start, last.end)
            start = space + 1 if space != -1 else start
        if start >= last.end:
            return []
        return [_Unit(start, last.end, last.kind, self.counter.count(self.text[start:last.end]), last.context)]


def _render(text: str, group: list[_Unit]) -> str:
    body = text[group[0].start:group[-1].end]
    ctx = group[0].context
    if ctx is not None and ctx[1] <= group[0].start:
        return text[ctx[0]:ctx[1]] + "\n" + body
    return body


# --------------------------------------------------------------------------- public API
def chunk_markdown(text: str, *, tokenizer: Any, max_tokens: int, overlap_tokens: int = 0) -> list[Chunk]:
    """Chunks of one Markdown document; see `chunk_documents`."""
    return chunk_documents([text], tokenizer=tokenizer, max_tokens=max_tokens, overlap_tokens=overlap_tokens)[0]


#: A section shorter than this many characters per token of budget is first counted whole:
#: most sections of real documents fit in one chunk, and then one tokenizer pass is enough.
_CHARS_PER_TOKEN_GUESS = 8


def chunk_documents(texts: Sequence[str], *, tokenizer: Any, max_tokens: int, overlap_tokens: int = 0,
                    counter: TokenCounter | None = None) -> list[list[Chunk]]:
    """Chunks of many documents, tokenized together in batch passes.

    No chunk has more than `max_tokens` tokens (without special tokens); consecutive chunks
    of one section share up to `overlap_tokens` tokens of whole blocks or sentences.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    if overlap_tokens < 0 or overlap_tokens >= max_tokens:
        raise ValueError("overlap_tokens must be at least 0 and smaller than max_tokens")
    counter = counter or token_counter(tokenizer)
    parsed = [parse_sections(t) for t in texts]
    out: list[dict[int, list[Chunk]]] = [{} for _ in texts]

    # 1. Short sections counted whole: those that fit are a chunk each, with an exact count.
    #    (Not needed where counts add up across line breaks: the blocks' counts are exact then.)
    short = [(d, k, s) for d, sections in enumerate(parsed) for k, s in enumerate(sections)
             if not counter.additive and s.units[-1].end - s.units[0].start <= max_tokens * _CHARS_PER_TOKEN_GUESS]
    counts = counter.counts([texts[d][s.units[0].start:s.units[-1].end] for d, _, s in short])
    whole = set()
    for (d, k, s), n in zip(short, counts, strict=True):
        if n <= max_tokens:
            a, b = s.units[0].start, s.units[-1].end
            out[d][k] = [Chunk(texts[d][a:b], n, list(s.path), a, b)]
            whole.add((d, k))

    # 2. The other sections: count their blocks, pack them, count each packed chunk exactly.
    rest = [(d, k, s) for d, sections in enumerate(parsed) for k, s in enumerate(sections) if (d, k) not in whole]
    flat = [(texts[d], u) for d, _, s in rest for u in s.units]
    for (_t, u), n in zip(flat, counter.counts([t[u.start:u.end] for t, u in flat]), strict=True):
        u.tokens = n
    plans: list[tuple[int, int, list[str], list[_Unit], int | None]] = []
    for d, k, section in rest:
        text = texts[d]
        units: list[_Unit] = []
        for u in section.units:
            units.extend(_split(text, u, max_tokens, counter) if u.tokens > max_tokens else [u])
        packer = _Packer(text, counter, max_tokens, overlap_tokens)
        for group in packer.pack(units):
            plans.append((d, k, section.path, group, packer.cost(group) if packer.exact(group) else None))
    rendered = [_render(texts[d], g) for d, _, _, g, _ in plans]
    unknown = [i for i, plan in enumerate(plans) if plan[4] is None]
    exact = [plan[4] for plan in plans]
    for i, n in zip(unknown, counter.counts([rendered[i] for i in unknown]), strict=True):
        exact[i] = n
    for (d, k, path, group, _), body, n in zip(plans, rendered, exact, strict=True):
        assert n is not None
        chunks = out[d].setdefault(k, [])
        if n <= max_tokens:
            chunks.append(Chunk(body, n, list(path), group[0].start, group[-1].end))
        else:
            chunks.extend(_refit(texts[d], path, group, max_tokens, n, counter))
    result = []
    for by_section in out:
        chunks = [c for k in sorted(by_section) for c in by_section[k]]
        result.append(_drop_contained(chunks) if overlap_tokens else chunks)
    return result


def _drop_contained(chunks: list[Chunk]) -> list[Chunk]:
    """Without chunks whose whole span the next chunk repeats (a chunk packed again after its
    successor took its end as overlap)."""
    kept: list[Chunk] = []
    for c in reversed(chunks):
        if kept and kept[-1].start <= c.start and c.end <= kept[-1].end:
            continue
        kept.append(c)
    return kept[::-1]


def _refit(text: str, path: list[str], group: list[_Unit], max_tokens: int, actual: int,
           counter: TokenCounter) -> list[Chunk]:
    """Pack an over-limit chunk again, tighter, until every piece fits: a smaller budget for
    groups of several blocks; a block alone that is still over loses its repeated table header,
    or is split further."""
    units = list(group)
    budget = max_tokens - (actual - max_tokens)
    for _ in range(64):
        groups = _Packer(text, counter, max(1, budget), 0).pack(units)
        bodies = [_render(text, g) for g in groups]
        counts = counter.counts(bodies)
        worst = max(counts)
        if worst <= max_tokens:
            return [Chunk(b, n, list(path), g[0].start, g[-1].end)
                    for g, b, n in zip(groups, bodies, counts, strict=True)]
        units = []
        for g, n in zip(groups, counts, strict=True):
            if n <= max_tokens or len(g) > 1:
                units.extend(g)
                continue
            u = g[0]
            if u.context is not None and u.context[1] <= u.start:
                units.append(_Unit(u.start, u.end, u.kind, u.tokens, None))
            else:
                whole = _Unit(u.start, u.end, u.kind, n, None)
                units.extend(_split(text, whole, max(1, 2 * max_tokens - n), counter))
        budget -= max(1, worst - max_tokens)
    raise RuntimeError(f"could not fit a chunk into {max_tokens} tokens")  # pragma: no cover
