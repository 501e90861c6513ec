"""Training examples from chunks, document structure, threads and feedback (no database here).

Kinds and payloads (see `db.models.Example`):

* `cpt` {"text"}: a chunk with its document title and heading path (continued pre-training);
* `qa` {"question", "answer"}: facts read from the document's structure with no model —
  data-source row properties, Markdown tables, "key: value" lines, and headings with their
  sections — each asked and answered in several wordings, because knowledge injection needs
  many paraphrases of each fact; and, with a teacher, questions and restatements it wrote;
* `chat` {"messages": [{"role", "content"}, …]}: a question from a thread and the reply that
  resolved it, an assistant conversation, or a well-rated or corrected assistant answer;
* `preference` {"prompt", "chosen", "rejected"}: a corrected answer (chosen = the correction),
  or a well-rated and a badly-rated answer to the same prompt.

Wording is chosen deterministically from the fact itself, so processing the same document
again yields the same examples (and the same content hashes).
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ingestion.processing.chunking import Chunk

PARAPHRASES = 4  # wordings of each structured fact
#: Wordings of a document's structured facts in all: a long table gets fewer wordings per row
#: (down to one), so that a 500-row sheet does not outweigh the rest of a team's knowledge in
#: every refresh; a page of a dozen facts still gets all PARAPHRASES of each.
WORDINGS_PER_DOCUMENT = 64
MAX_FACTS_PER_DOCUMENT = 400
MAX_ANSWER_CHARS = 4000


@dataclass(slots=True)
class Draft:
    """An example before it is stored: its provenance is a chunk ordinal of the document being
    processed, or an interaction id (`pair_id`: the chosen side of a rated preference pair)."""

    kind: str
    payload: dict[str, Any]
    origin: str
    chunk: int | None = None
    interaction_id: int | None = None
    pair_id: int | None = None
    tokens: int = 0

    @property
    def content_hash(self) -> str:
        raw = json.dumps([self.kind, self.payload], sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(raw).hexdigest()

    def text(self) -> str:
        """The text whose tokens the example costs."""
        p = self.payload
        if self.kind == "cpt":
            return p["text"]
        if self.kind == "qa":
            return f"{p['question']}\n{p['answer']}"
        if self.kind == "chat":
            return "\n".join(m["content"] for m in p["messages"])
        return f"{p['prompt']}\n{p['chosen']}\n{p['rejected']}"


# --------------------------------------------------------------------------- cpt
def cpt_examples(title: str, chunks: Sequence[Chunk], skip: set[int] | None = None) -> list[Draft]:
    out = []
    for i, chunk in enumerate(chunks):
        if (skip and i in skip) or not _HEADING_LINE.sub("", chunk.text).strip():  # headings alone teach nothing
            continue
        out.append(Draft("cpt", {"text": cpt_text(title, chunk)}, "chunk", chunk=i))
    return out


def cpt_text(title: str, chunk: Chunk) -> str:
    path = [h for h in chunk.heading_path if h != title]
    head = title if title else ""
    if path:
        head = f"{head} > {' > '.join(path)}" if head else " > ".join(path)
    return f"{head}\n\n{chunk.text}" if head else chunk.text


# --------------------------------------------------------------------------- facts
@dataclass(frozen=True, slots=True)
class Fact:
    subject: str
    attribute: str
    value: str
    context: str  # the document title
    offset: int  # where in the text it was read (to find its chunk); -1: document-level


_QUESTIONS = [
    "What is the {attr} of {subject}?",
    "What {attr} does {subject} have?",
    "In {context}, what is the {attr} of {subject}?",
    "{Subject}: what is the {attr}?",
    "Which {attr} is recorded for {subject}?",
    "Can you tell me the {attr} of {subject}?",
]
_ANSWERS = [
    "The {attr} of {subject} is {value}.",
    "{Value}.",
    "{Subject} has {attr} {value}.",
    "For {subject}, the {attr} is {value}.",
    "It is {value}.",
]
_ROW_QUESTIONS = ["What do we know about {subject}?", "Summarize the {context} entry for {subject}.",
                  "What are the details of {subject}?"]
_SECTION_QUESTIONS = ["What does {context} say about {heading}?", "What should I know about {heading}?",
                      "Can you explain {heading} ({context})?"]

_KV = re.compile(
    r"^[ \t]*(?:[-*+][ \t]+)?(?:\*\*|__)?(?P<key>[A-Za-z][\w ()/&.'+-]{0,48}?)[ \t]*(?:\*\*|__)?[ \t]*:"
    r"(?:\*\*|__)?[ \t]+(?P<value>\S[^\n]{0,300})$", re.M)
_GENERIC_KEYS = {"note", "notes", "nb", "warning", "tip", "example", "examples", "todo", "important", "update",
                 "question", "answer", "q", "a", "summary", "see", "see also", "source", "sources", "edit",
                 "re", "fwd", "subject", "from", "to", "cc", "date", "sent", "step", "eg", "ie", "hint", "info"}
_CODE = re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*\n.*?^ {0,3}\1[ \t]*$", re.M | re.S)
_MD = re.compile(r"(\*\*|__|`|\*|_(?=\w)|(?<=\w)_)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_TABLE_SEP = re.compile(r"^[ \t]*\|?[ \t]*:?-{2,}:?[ \t]*(?:\|[ \t]*:?-{2,}:?[ \t]*)*\|?[ \t]*$")
_HEADING_LINE = re.compile(r"^ {0,3}#{1,6}[ \t]+[^\n]*\n*", re.M)


def plain(text: str) -> str:
    """Markdown inline markup removed (links keep their text)."""
    return _MD.sub("", _LINK.sub(r"\1", text)).strip()


def _attr(key: str) -> str:
    key = plain(key)
    return key if key.isupper() or (len(key) > 1 and key[1].isupper()) else key[:1].lower() + key[1:]


def _cap(s: str) -> str:
    """Capitalised at the start of a sentence, unless it is an identifier (`billing-worker`)."""
    first = s.split(" ", 1)[0]
    return s[:1].upper() + s[1:] if first.isalpha() and first.islower() else s


def _mask_code(text: str) -> str:
    """`text` with fenced code blanked out (same length, so offsets still hold)."""
    return _CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def key_value_facts(text: str, title: str, sections: Sequence[tuple[int, list[str]]]) -> list[Fact]:
    """"Key: value" lines (outside code and tables); the subject is the nearest heading, or the
    document title. `sections` is (offset, heading path) of each chunk, in order."""
    facts = []
    for m in _KV.finditer(_mask_code(text)):
        key, value = m.group("key").strip(), plain(m.group("value")).strip(" .")
        if (not value or len(key.split()) > 6 or plain(key).lower() in _GENERIC_KEYS or "|" in m.group(0)
                or value.startswith("//") or len(value) > 300):
            continue
        facts.append(Fact(_subject_at(m.start(), title, sections), _attr(key), value, title, m.start()))
    return facts


_GENERIC_HEADINGS = {"details", "detail", "overview", "info", "information", "properties", "metadata", "meta",
                     "general", "summary", "about", "facts", "key facts", "basics", "at a glance", "quick facts",
                     "attributes", "settings", "configuration", "contacts", "contact", "ownership", "owners",
                     "notes", "context", "background", "description", "status", "fields", "data"}
_PLACEHOLDERS = re.compile(r"\[(?:SECRET|PRIVATE KEY|CREDENTIALS|EMAIL|PHONE)\]")


def _subject_at(offset: int, title: str, sections: Sequence[tuple[int, list[str]]]) -> str:
    """What a "key: value" line describes: its section's heading, or the document's title when
    the heading is a generic one ("Details", "Overview") or there is none."""
    path: list[str] = []
    for start, p in sections:
        if start > offset:
            break
        path = p
    specific = [h for h in path if h.lower().strip(" :") not in _GENERIC_HEADINGS and h != title]
    return specific[-1] if specific else title or "this document"


def _table_cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [plain(c.strip()) for c in re.split(r"(?<!\\)\|", line)]


def table_facts(text: str, title: str) -> tuple[list[Fact], list[tuple[str, list[tuple[str, str]], int]]]:
    """Facts from Markdown tables (first column names the row), and each row as a whole."""
    facts: list[Fact] = []
    rows_out: list[tuple[str, list[tuple[str, str]], int]] = []
    lines = _mask_code(text).split("\n")
    offsets = []
    pos = 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    i = 0
    while i + 1 < len(lines):
        if "|" in lines[i] and _TABLE_SEP.match(lines[i + 1]):
            header = _table_cells(lines[i])
            j = i + 2
            while j < len(lines) and "|" in lines[j] and lines[j].strip():
                cells = _table_cells(lines[j])
                subject = cells[0] if cells else ""
                pairs = [(header[k], cells[k]) for k in range(1, min(len(header), len(cells)))
                         if header[k] and cells[k] and cells[k] not in ("-", "—")]
                if subject and pairs and len(header) >= 2:
                    for attr, value in pairs:
                        facts.append(Fact(subject, _attr(attr), value, title, offsets[j]))
                    rows_out.append((subject, pairs, offsets[j]))
                j += 1
            i = j
        else:
            i += 1
    return facts, rows_out


def property_facts(properties: Any, title: str) -> list[Fact]:
    """Facts from a data-source row's properties (`metadata.properties`, as connectors give them)."""
    if not isinstance(properties, dict) or not title:
        return []
    facts = []
    for key, raw in properties.items():
        value = _property_text(raw)
        if value and str(key).strip() and str(key).lower() not in ("title", "name") and value != title:
            facts.append(Fact(title, _attr(str(key)), value, title, -1))
    return facts


def _property_text(raw: Any) -> str:
    if raw is None or isinstance(raw, bool) and raw is False:
        return ""
    if isinstance(raw, bool):
        return "yes"
    if isinstance(raw, int | float | str):
        return plain(str(raw)).strip()
    if isinstance(raw, list):
        return ", ".join(v for v in (_property_text(x) for x in raw) if v)
    if isinstance(raw, dict):
        for key in ("name", "plain_text", "title", "value", "text", "start"):
            if key in raw:
                return _property_text(raw[key])
    return ""


def _fmt(template: str, fact: Fact) -> str:
    values = {"attr": fact.attribute, "subject": fact.subject, "value": fact.value, "context": fact.context or
              fact.subject, "Subject": _cap(fact.subject), "Value": _cap(fact.value)}
    return template.format(**values)


def fact_qa(fact: Fact, chunk: int | None, n: int = PARAPHRASES) -> list[Draft]:
    """`n` question–answer wordings of one fact, chosen deterministically from the fact."""
    seed = zlib.crc32(f"{fact.subject}\x00{fact.attribute}".encode())
    questions = [q for q in _QUESTIONS if "{context}" not in q or (fact.context and fact.context != fact.subject)]
    out = []
    for k in range(min(n, len(questions))):
        q = questions[(seed + k) % len(questions)]
        a = _ANSWERS[(seed // 7 + k) % len(_ANSWERS)]
        out.append(Draft("qa", {"question": _fmt(q, fact), "answer": _fmt(a, fact)}, "structure", chunk=chunk))
    return out


def _chunk_at(offset: int, chunks: Sequence[Chunk]) -> int | None:
    if offset < 0:
        return None
    for i, c in enumerate(chunks):
        if c.start <= offset < c.end:
            return i
    return None


def structure_qa(title: str, text: str, chunks: Sequence[Chunk], properties: Any = None,
                 skip: set[int] | None = None) -> list[Draft]:
    """Every QA example the document's structure yields, with the chunk each came from."""
    sections = [(c.start, c.heading_path) for c in chunks]
    facts = property_facts(properties, title) + key_value_facts(text, title, sections)
    table, rows = table_facts(text, title)
    facts += table
    out: list[Draft] = []
    seen: set[tuple[str, str]] = set()
    kept: list[Fact] = []
    for fact in facts[:MAX_FACTS_PER_DOCUMENT]:
        if _PLACEHOLDERS.search(fact.value):  # a scrubbed secret or address is no fact to learn
            continue
        key = (fact.subject.lower(), fact.attribute.lower())
        if key in seen:  # the same attribute stated twice: ask about the first only
            continue
        seen.add(key)
        kept.append(fact)
    wordings = max(1, min(PARAPHRASES, WORDINGS_PER_DOCUMENT // max(1, len(kept))))
    for fact in kept:
        chunk = _chunk_at(fact.offset, chunks)
        if skip and chunk in skip:
            continue
        out.extend(fact_qa(fact, chunk, wordings))
    for subject, pairs, offset in rows[:MAX_FACTS_PER_DOCUMENT]:
        chunk = _chunk_at(offset, chunks)
        if skip and chunk in skip:
            continue
        fact = Fact(subject, "", "", title, offset)
        q = _ROW_QUESTIONS[zlib.crc32(subject.encode()) % len(_ROW_QUESTIONS)]
        answer = f"{_cap(subject)}: " + "; ".join(f"{_attr(a)} {v}" for a, v in pairs) + "."
        out.append(Draft("qa", {"question": _fmt(q, fact), "answer": answer}, "structure", chunk=chunk))
    out.extend(section_qa(title, chunks, skip))
    return out


def section_qa(title: str, chunks: Sequence[Chunk], skip: set[int] | None = None) -> list[Draft]:
    """A question from each section's heading, answered by the section's (first) chunk."""
    out = []
    previous: list[str] | None = None
    for i, chunk in enumerate(chunks):
        path = chunk.heading_path
        first_of_section = path != previous
        previous = path
        if not path or not first_of_section or (skip and i in skip):
            continue
        heading = path[-1]
        if heading == title and len(path) == 1:
            continue
        body = _HEADING_LINE.sub("", chunk.text).strip()
        if len(body.split()) < 4:
            continue
        if heading.endswith("?"):
            questions = [heading]
        else:
            seed = zlib.crc32(heading.encode())
            questions = [_SECTION_QUESTIONS[(seed + k) % len(_SECTION_QUESTIONS)] for k in range(2)]
        for q in questions:
            text = q.format(heading=heading, context=title or "our documents")
            out.append(Draft("qa", {"question": text, "answer": body[:MAX_ANSWER_CHARS]}, "structure", chunk=i))
    return out


# --------------------------------------------------------------------------- interactions
@dataclass(slots=True)
class InteractionView:
    """What the builders need of an interaction (texts already scrubbed)."""

    id: int
    kind: str
    messages: list[dict[str, Any]]
    rating: float | None = None
    correction: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    context: str | None = None  # the title of the document it is about, if any


_ACK = re.compile(r"^\W*(?:thanks?|thank you|thx|ty|cheers|great|perfect|awesome|got it|makes sense|"
                  r"that (?:worked|works|helped|fixed it|did it)|solved|resolved|ok(?:ay)?|cool|\+1|👍|🙏)\b",
                  re.I)
_ASKS = re.compile(r"^\W*(?:who|what|when|where|why|how|which|can|could|is|are|does|do|did|should|would|will|"
                   r"has|have|anyone|any idea)\b", re.I)


def _is_ack(text: str) -> bool:
    return len(text) < 120 and bool(_ACK.match(text))


def _is_question(text: str) -> bool:
    return "?" in text or bool(_ASKS.match(text))


def chat_from_interaction(item: InteractionView) -> Draft | None:
    """A chat example: an assistant conversation (kind `chat`) as it was, or a thread's or
    comment discussion's question and the reply that resolved it. Connectors mark the one who
    opened a thread as `user` and the others as `assistant`; with no roles, authors tell them
    apart. Threads without a resolving reply, or that ask nothing, give nothing."""
    msgs = [m for m in item.messages if str(m.get("text") or "").strip()]
    if not msgs or item.meta.get("served"):
        # An answer of Tacit's own endpoint teaches the model nothing new until someone rates or
        # corrects it (then it is a `feedback` interaction): training on it would only echo it.
        return None
    if item.kind == "chat" and any(m.get("role") in ("user", "assistant") for m in msgs):
        return _conversation(item, msgs)
    opener = msgs[0].get("author") or ""

    def asks(m: dict[str, Any]) -> bool:  # written by the one who opened the thread
        return m.get("author") == opener if opener else m.get("role") == "user"

    i = 1
    question = [msgs[0]["text"].strip()]
    while i < len(msgs) and asks(msgs[i]):  # follow-ups before any reply
        question.append(msgs[i]["text"].strip())
        i += 1
    q = "\n".join(question)
    if not _is_question(q):
        return None
    answer = None
    resolved = None
    for m in msgs[i:]:
        text = m["text"].strip()
        if not asks(m):
            if not _is_ack(text):
                answer = text
        elif _is_ack(text) and answer:
            resolved = answer  # the asker thanked the reply before: that one resolved it
            break
    answer = resolved or answer
    if not answer:
        return None
    if item.context and item.context.lower() not in q.lower():
        q = f'About "{item.context}": {q}'
    messages = [{"role": "user", "content": q}, {"role": "assistant", "content": answer[:MAX_ANSWER_CHARS]}]
    return Draft("chat", {"messages": messages}, "thread", interaction_id=item.id)


def _conversation(item: InteractionView, msgs: list[dict[str, Any]]) -> Draft | None:
    turns: list[dict[str, str]] = []
    for m in msgs:
        role = m.get("role")
        if role not in ("user", "assistant"):
            continue
        if not turns and role == "assistant":
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + m["text"].strip()
        else:
            turns.append({"role": role, "content": m["text"].strip()})
    while turns and turns[-1]["role"] != "assistant":
        turns.pop()
    if len(turns) < 2:
        return None
    return Draft("chat", {"messages": turns}, "thread", interaction_id=item.id)


def normalized_rating(rating: float | None, meta: dict[str, Any] | None = None) -> float | None:
    """A rating on -1..1: thumbs (-1, 0, 1) as they are; a 1..5 scale (any rating above 1, or
    `metadata.rating_scale` = "1-5") mapped so that 3 is neutral."""
    if rating is None:
        return None
    scale = str((meta or {}).get("rating_scale") or "")
    if rating > 1 or scale.replace(" ", "") in ("1-5", "1..5", "5"):
        return max(-1.0, min(1.0, (rating - 3.0) / 2.0))
    return max(-1.0, min(1.0, float(rating)))


def feedback_turns(item: InteractionView) -> tuple[str, str] | None:
    """(prompt, answer) of a feedback interaction: the last assistant message and the user
    message before it."""
    msgs = item.messages
    for k in range(len(msgs) - 1, -1, -1):
        if msgs[k].get("role") == "assistant" and str(msgs[k].get("text") or "").strip():
            for j in range(k - 1, -1, -1):
                if msgs[j].get("role") == "user" and str(msgs[j].get("text") or "").strip():
                    return msgs[j]["text"].strip(), msgs[k]["text"].strip()
            return None
    return None


def prompt_key(prompt: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", prompt.lower()).split())


def feedback_examples(item: InteractionView) -> list[Draft]:
    """From one feedback: a correction → preference (chosen = correction) and a chat example
    with the correction; a well-rated answer → a chat example."""
    turns = feedback_turns(item)
    if turns is None:
        return []
    prompt, answer = turns
    rating = normalized_rating(item.rating, item.meta)
    correction = (item.correction or "").strip()
    out = []
    if correction and correction != answer:
        out.append(Draft("preference", {"prompt": prompt, "chosen": correction, "rejected": answer}, "feedback",
                         interaction_id=item.id))
        out.append(Draft("chat", {"messages": [{"role": "user", "content": prompt},
                                               {"role": "assistant", "content": correction}]},
                         "feedback", interaction_id=item.id))
    elif rating is not None and rating > 0:
        out.append(Draft("chat", {"messages": [{"role": "user", "content": prompt},
                                               {"role": "assistant", "content": answer}]},
                         "feedback", interaction_id=item.id))
    return out


def rated_pairs(new: Iterable[InteractionView], others: Iterable[InteractionView], limit: int = 4) -> list[Draft]:
    """Preference pairs between well- and badly-rated answers to the same prompt, each pair
    involving at least one interaction of `new`. Provenance: the rejected interaction
    (`interaction_id`) and the chosen one (`pair_id`, stored as origin "pair:<id>")."""
    groups: dict[str, list[tuple[InteractionView, str, float, bool]]] = {}
    for is_new, items in ((True, new), (False, others)):
        for item in items:
            turns = feedback_turns(item)
            rating = normalized_rating(item.rating, item.meta)
            if turns is None or rating is None or rating == 0:
                continue
            groups.setdefault(prompt_key(turns[0]), []).append((item, turns[1], rating, is_new))
    out = []
    for entries in groups.values():
        good = sorted([e for e in entries if e[2] > 0], key=lambda e: (-e[2], e[0].id))
        bad = sorted([e for e in entries if e[2] < 0], key=lambda e: (e[2], e[0].id))
        made: dict[int, int] = {}
        for g in good:
            for b in bad:
                if not (g[3] or b[3]) or g[1] == b[1]:
                    continue
                key = g[0].id if g[3] else b[0].id
                if made.get(key, 0) >= limit:
                    continue
                made[key] = made.get(key, 0) + 1
                prompt = feedback_turns(b[0])[0]  # type: ignore[index]
                out.append(Draft("preference", {"prompt": prompt, "chosen": g[1], "rejected": b[1]},
                                 f"pair:{g[0].id}", interaction_id=b[0].id, pair_id=g[0].id))
    return out
