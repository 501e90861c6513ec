"""The prompt-stuffing baseline: BM25 over a team's chunks, the best few put into the prompt.

This is what the adapter competes with: the same base model, closed-book questions turned
open-book by retrieving the team's best-matching chunks (Okapi BM25, k1 = 1.5, b = 0.75, on
lower-cased word tokens) and putting the top `TOP_K` before the question. Evaluation measures it
beside the adapter (`qa_rag`: base + retrieval; `qa_adapter_rag`: adapter + retrieval).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from sqlalchemy import select

from db import models

TOP_K = 3
MAX_PASSAGE_CHARS = 1200  # a chunk is at most ~256 tokens; this only guards odd ones
K1, B = 1.5, 0.75
RAG_PROMPT = "Notes from the team's documents:\n\n{passages}\n\nUsing the notes, answer briefly: {question}"
_STOP = set("a an the of to in on at for by is are was be do does did we our you your it its and or what which "
            "who when where how why with from this that as".split())


def words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP]


class BM25:
    """An in-memory Okapi BM25 index over a list of texts."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.docs = [Counter(words(t)) for t in texts]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.avg = (sum(self.lengths) / len(self.lengths)) if self.lengths else 0.0
        df: Counter[str] = Counter(w for d in self.docs for w in d)
        n = len(texts)
        self.idf = {w: math.log(1 + (n - f + 0.5) / (f + 0.5)) for w, f in df.items()}

    def scores(self, query: str) -> list[float]:
        terms = words(query)
        out = []
        for doc, length in zip(self.docs, self.lengths, strict=True):
            norm = K1 * (1 - B + B * length / self.avg) if self.avg else K1
            out.append(sum(self.idf.get(t, 0.0) * doc[t] * (K1 + 1) / (doc[t] + norm) for t in terms if doc[t]))
        return out

    def search(self, query: str, k: int = TOP_K) -> list[str]:
        """The k best texts for the query, best first; texts that share no term are left out."""
        scored = sorted(((s, i) for i, s in enumerate(self.scores(query)) if s > 0), key=lambda p: (-p[0], p[1]))
        return [self.texts[i] for _, i in scored[:k]]


def rag_question(question: str, passages: list[str]) -> str:
    """The user turn with the retrieved passages before the question (the question alone without any)."""
    if not passages:
        return question
    body = "\n\n".join(f"[{n}] {p.strip()[:MAX_PASSAGE_CHARS]}" for n, p in enumerate(passages, 1))
    return RAG_PROMPT.format(passages=body, question=question)


def stuffed_questions(index: BM25, questions: list[str], k: int = TOP_K) -> list[str]:
    return [rag_question(q, index.search(q, k)) for q in questions]


def team_chunk_texts(session: Any, team_id: int) -> list[str]:
    """A team's live chunks (the retrieval corpus), oldest first."""
    rows = session.scalars(select(models.Chunk.text).where(models.Chunk.team_id == team_id,
                                                            models.Chunk.retired_at.is_(None))
                           .order_by(models.Chunk.id))
    return [t for t in rows if t and t.strip()]
