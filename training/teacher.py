"""Synthetic question–answer pairs and restatements from a teacher model.

Knowledge enters a model's weights when each fact is seen many times in many wordings
(Ovadia et al. 2024; EntiGraph, Yang et al. 2024; Active Reading, Lin et al. 2025). A teacher
reads a passage and writes (1) questions a colleague would ask, answered from the passage,
(2) paraphrases of what it states, and (3) entity–relation statements linking the things it
names, in the manner of EntiGraph. Which teacher is set per team (`[teams.training] teacher`):

* `none` — no teacher; examples come from the documents' structure only;
* `self` — the team's own base model, with `transformers`' `generate` (greedy, bounded);
* an `http(s)://…` base URL of an OpenAI-compatible server (`POST {base}/chat/completions`),
  with `teacher_model` and `teacher_api_key`, called with the `openai` client: its retries
  (429, 5xx, timeouts, honouring `Retry-After`) go through the shared rate budget of
  `connectors.http` (key `teacher:<host>`, in Redis when there is one), so every worker backs off
  together when the teacher throttles.

Every call is bounded (questions per passage, tokens, a timeout); a teacher that fails raises
`TeacherError` and the caller goes on without it.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import openai

from connectors.http import HttpBudget, RetryPolicy

log = logging.getLogger(__name__)

QUESTIONS_PER_PASSAGE = 3
STATEMENTS_PER_PASSAGE = 3
MAX_PASSAGE_CHARS = 6000


class TeacherError(RuntimeError):
    """The teacher could not be reached or answered something unusable."""


@dataclass(frozen=True)
class Passage:
    title: str
    heading_path: list[str]
    text: str

    def render(self) -> str:
        where = " > ".join([self.title, *[h for h in self.heading_path if h != self.title]])
        return f"{where}\n\n{self.text[:MAX_PASSAGE_CHARS]}"


@dataclass
class Reading:
    """What a teacher made of one passage."""

    qa: list[tuple[str, str]] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)  # paraphrases and entity relations


class Teacher(Protocol):
    name: str

    def read(self, passage: Passage) -> Reading: ...


SYSTEM = (
    "You help a team turn its internal documents into study material. Read the passage and answer "
    "with one JSON object and nothing else: "
    '{"questions": [{"question": "...", "answer": "..."}], "paraphrases": ["..."], "relations": ["..."]}. '
    f"Write up to {QUESTIONS_PER_PASSAGE} questions a colleague would ask whose answers are stated in the "
    "passage (answers in full sentences, only from the passage); up to "
    f"{STATEMENTS_PER_PASSAGE} paraphrases restating its facts in other words; and up to "
    f"{STATEMENTS_PER_PASSAGE} short statements of how two things named in it relate. "
    "Never invent facts."
)


def parse_reading(content: str) -> Reading:
    """A `Reading` from a model's reply: the first JSON object in it (code fences allowed)."""
    start = content.find("{")
    end = content.rfind("}")
    if start == -1 or end <= start:
        raise TeacherError("the teacher's reply holds no JSON object")
    try:
        data = json.loads(content[start:end + 1])
    except json.JSONDecodeError as exc:
        raise TeacherError(f"the teacher's reply is not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise TeacherError("the teacher's reply is not a JSON object")
    reading = Reading()
    for item in data.get("questions") or []:
        if isinstance(item, dict):
            q, a = str(item.get("question") or "").strip(), str(item.get("answer") or "").strip()
            if q and a:
                reading.qa.append((q, a))
    for key in ("paraphrases", "relations"):
        for item in data.get(key) or []:
            if isinstance(item, str) and item.strip():
                reading.statements.append(item.strip())
    reading.qa = reading.qa[:QUESTIONS_PER_PASSAGE]
    reading.statements = reading.statements[: 2 * STATEMENTS_PER_PASSAGE]
    return reading


class OpenAITeacher:
    """A teacher behind an OpenAI-compatible chat-completions endpoint."""

    #: Attempts after the first; the `openai` client backs off between them.
    MAX_RETRIES = 2

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None, *,
                 timeout: float = 120.0, redis_url: str | None = None, rate: float | None = None) -> None:
        self.name = f"openai:{model or 'default'}"
        self.model = model or "default"
        # One attempt per request in the budget layer: the retries are the openai client's, and
        # each of them waits for the budget (and for a 429's block, shared by every worker).
        self.budget = HttpBudget(f"teacher:{httpx.URL(base_url).host}", rate=rate, redis_url=redis_url,
                                 policy=RetryPolicy(max_attempts=1), timeout=timeout, validate_json=False)
        # A local server may need no key; the client insists on one, which such a server ignores.
        self.client = openai.OpenAI(base_url=base_url.rstrip("/"), api_key=api_key or "no-key",
                                    max_retries=self.MAX_RETRIES, timeout=timeout, http_client=self.budget.client())

    def read(self, passage: Passage) -> Reading:
        try:
            reply = self.client.chat.completions.create(
                model=self.model, temperature=0.3, max_tokens=800,
                messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": passage.render()}])
        except openai.APIStatusError as exc:
            raise TeacherError(f"teacher answered HTTP {exc.status_code}: {exc.response.text[:200]}") from None
        except (openai.APIError, httpx.HTTPError) as exc:
            raise TeacherError(f"teacher request failed: {type(exc).__name__}: {exc}") from None
        try:
            content = reply.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            raise TeacherError("teacher reply is not a chat completion") from None
        return parse_reading(str(content or ""))

    def close(self) -> None:
        self.client.close()


_QUESTION = re.compile(r"^\W*(?:q(?:uestion)?\s*\d*\s*[:.)-]\s*)?(.{8,200}?\?)", re.I)


class SelfTeacher:
    """The team's own base model asks questions about a passage; the passage is the answer.

    A small model cannot be trusted to answer, so only its questions are used, each paired
    with the passage it was asked about (grounded by construction).
    """

    def __init__(self, base_model: str, data_dir: Path | None = None, *, max_new_tokens: int = 48) -> None:
        from training.base_models import load_model, load_tokenizer

        self.name = f"self:{base_model}"
        self.tokenizer = load_tokenizer(base_model, data_dir)
        self.model = load_model(base_model, data_dir)
        self.model.eval()
        self.max_new_tokens = max_new_tokens

    def _prompt(self, passage: Passage) -> str:
        instruction = ("Write one question that this passage answers. Reply with the question only.\n\n"
                       + passage.render()[:2000])
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": instruction}],
                                                      tokenize=False, add_generation_prompt=True)
        return instruction + "\n\nQuestion:"

    def read(self, passage: Passage) -> Reading:
        return self.read_many([passage])[0]

    def read_many(self, passages: list[Passage], batch_size: int = 8) -> list[Reading]:
        """Readings of several passages, generated together (greedy, left padding: each the same
        as alone)."""
        import torch

        from training.modeling import greedy_continuations

        def encode(tokenizer: Any, text: str) -> list[int]:
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])

        continuations = greedy_continuations(self.model, self.tokenizer, [self._prompt(p) for p in passages],
                                             torch.device("cpu"), max_new_tokens=self.max_new_tokens,
                                             batch_size=batch_size, encode=encode)
        return [self._reading(p, self.tokenizer.decode(c, skip_special_tokens=True))
                for p, c in zip(passages, continuations, strict=True)]

    @staticmethod
    def _reading(passage: Passage, generated: str) -> Reading:
        reading = Reading()
        for line in generated.splitlines():
            m = _QUESTION.match(line.strip())
            if m and len(m.group(1).split()) >= 3:
                reading.qa.append((m.group(1).strip(), passage.text.strip()))
                break
        return reading

    def close(self) -> None:
        pass


def make_teacher(training: Any, base_model: str, data_dir: Path | None = None, *,
                 redis_url: str | None = None) -> Teacher | None:
    """The teacher a team's training configuration names, or None for `none`; `redis_url` shares
    an HTTP teacher's rate budget between workers."""
    spec = (training.teacher or "none").strip()
    if spec == "none":
        return None
    if spec == "self":
        return SelfTeacher(base_model, data_dir)
    if spec.startswith(("http://", "https://")):
        key = training.teacher_api_key.get_secret_value() if training.teacher_api_key else None
        return OpenAITeacher(spec, training.teacher_model, key, redis_url=redis_url)
    raise TeacherError(f"unknown teacher {spec!r} (use none, self or an http(s):// base URL)")
