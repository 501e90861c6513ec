"""Example builders (no database) and the teachers that write synthetic QA."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from ingestion.processing.chunking import chunk_markdown
from ingestion.processing.examples import (
    InteractionView,
    chat_from_interaction,
    cpt_examples,
    feedback_examples,
    normalized_rating,
    rated_pairs,
    structure_qa,
)
from tacit.config import TrainingConfig
from tests.ingestion.fake_openai import FakeOpenAI as _FakeOpenAI
from tests.ingestion.fake_openai import serve_fake_openai
from training.base_models import load_tokenizer
from training.teacher import OpenAITeacher, Passage, SelfTeacher, TeacherError, make_teacher, parse_reading

PAGE = """# Basalt

The primary Postgres cluster is called Basalt.

## Details

Owner: Ada Moreau
- **Region**: eu-west-3
Note: this line is not a fact
Contact: [EMAIL]

## Replicas

| Replica | Zone | Lag budget |
|---|---|---|
| basalt-r1 | eu-west-3a | 5 s |
| basalt-r2 | eu-west-3b | — |

```yaml
owner: not-a-fact-inside-code
```

## How do I fail over?

Run the Skylark failover job and page the on-call engineer.
"""


@pytest.fixture(scope="module")
def chunks():  # type: ignore[no-untyped-def]
    return chunk_markdown(PAGE, tokenizer=load_tokenizer("tiny-random"), max_tokens=64)


def test_cpt_examples_carry_title_heading_path_and_chunk(chunks) -> None:  # type: ignore[no-untyped-def]
    drafts = cpt_examples("Basalt", chunks)
    assert [d.chunk for d in drafts] == list(range(len(chunks)))
    assert drafts[1].payload["text"].startswith("Basalt > Details\n\n## Details\n\nOwner: Ada Moreau")
    assert all(d.kind == "cpt" and d.origin == "chunk" for d in drafts)
    assert [d.chunk for d in cpt_examples("Basalt", chunks, skip={0})] == list(range(1, len(chunks)))


def test_structure_qa_from_key_values_tables_and_headings(chunks) -> None:  # type: ignore[no-untyped-def]
    drafts = structure_qa("Basalt", PAGE, chunks)
    qa = [(d.payload["question"], d.payload["answer"], d.chunk) for d in drafts]
    owner = [q for q in qa if "owner" in q[0].lower() and "Ada Moreau" in q[1]]
    assert len(owner) == 4  # four wordings of the one fact
    assert len({q for q, _, _ in owner}) == 4
    assert all("Basalt" in q for q, _, _ in owner)  # "Details" is generic: the subject is the page
    assert all(c == 1 for _, _, c in owner)  # the chunk holding the line
    region = [q for q in qa if "region" in q[0].lower()]
    assert region and all("eu-west-3" in a for _, a, _ in region)
    # Notes, scrubbed values and code are not facts.
    assert not [q for q in qa if "note" in q[0].lower() or "contact" in q[0].lower()]
    assert not [q for q in qa if "not-a-fact" in q[1]]
    lag = [q for q in qa if "lag budget" in q[0].lower()]
    assert lag and all("basalt-r1" in q and "5 s" in a for q, a, _ in lag)  # the "—" cell is empty
    rows = [q for q in qa if q[1].startswith("basalt-r2:")]
    assert rows == [("Summarize the Basalt entry for basalt-r2.", "basalt-r2: zone eu-west-3b.", 2)]  # whole row
    failover = [q for q in qa if q[0] == "How do I fail over?"]
    assert failover == [("How do I fail over?", "Run the Skylark failover job and page the on-call engineer.",
                         len(chunks) - 1)]
    assert structure_qa("Basalt", PAGE, chunks) == drafts  # deterministic wording
    assert all(d.kind == "qa" and d.origin == "structure" for d in drafts)


def test_a_notion_row_rendered_as_property_lines_gives_facts_about_the_row() -> None:
    text = "# Refund of order 1182\n\n- **Amount**: 250 euros\n- **Approver**: Dana Whitfield\n- **Status**: Done"
    chunks = chunk_markdown(text, tokenizer=load_tokenizer("tiny-random"), max_tokens=64)
    qa = [(d.payload["question"], d.payload["answer"]) for d in structure_qa("Refund of order 1182", text, chunks)]
    assert any("approver of Refund of order 1182" in q and "Dana Whitfield" in a for q, a in qa)
    assert sum("amount" in q for q, _ in qa) == 4


def test_a_long_table_gets_fewer_wordings_per_row_than_a_short_page() -> None:
    from ingestion.processing.examples import PARAPHRASES, WORDINGS_PER_DOCUMENT

    rows = "\n".join(f"| run-{i} | {i * 3} h |" for i in range(200))
    text = f"# Runs\n\n| Run | Hours |\n| --- | --- |\n{rows}\n"
    chunks = chunk_markdown(text, tokenizer=load_tokenizer("tiny-random"), max_tokens=256)
    qa = [d.payload["question"] for d in structure_qa("Runs", text, chunks)]
    hours = [q for q in qa if "hours" in q.lower()]
    assert len(hours) == 200  # every row is still asked about, in one wording
    assert sum(bool(re.search(r"\brun-7\b", q)) for q in hours) == 1
    assert len(hours) < PARAPHRASES * 200 and WORDINGS_PER_DOCUMENT < 200


def test_data_source_row_properties_become_facts() -> None:
    drafts = structure_qa("Platform roadmap", "", [], {"Status": {"name": "In progress"}, "Quarter": "Q3",
                                                       "Tags": ["infra", "db"], "Done": False, "Name": "x"})
    answers = {d.payload["question"]: d.payload["answer"] for d in drafts}
    assert len(drafts) == 12
    assert any("In progress" in a for q, a in answers.items() if "status" in q)
    assert any("infra, db" in a for q, a in answers.items() if "tags" in q)
    assert all(d.chunk is None for d in drafts)


def view(i: int, kind: str, msgs: list[tuple[str, str, str]], **kw: Any) -> InteractionView:
    return InteractionView(i, kind, [{"author": a, "role": r, "text": t} for a, r, t in msgs], **kw)


def test_thread_question_and_the_reply_that_resolved_it() -> None:
    thread = view(1, "thread", [("bram", "other", "When does the deploy freeze start?"),
                                ("chen", "other", "I think Friday?"),
                                ("ada", "other", "Thursday at 16:00 UTC, see the deploy policy."),
                                ("bram", "other", "Thanks Ada!"),
                                ("chen", "other", "ok")])
    draft = chat_from_interaction(thread)
    assert draft is not None and draft.interaction_id == 1 and draft.origin == "thread"
    assert draft.payload == {"messages": [
        {"role": "user", "content": "When does the deploy freeze start?"},
        {"role": "assistant", "content": "Thursday at 16:00 UTC, see the deploy policy."}]}
    # As connectors give Teams threads and comments: the opener is "user", the others "assistant".
    teams = view(7, "thread", [("Bram", "user", "Who approves refunds above 200 euros?"),
                               ("Chen", "assistant", "Maybe Emeka?"),
                               ("Dana", "assistant", "Dana Whitfield approves them."),
                               ("Bram", "user", "Thank you!"), ("Chen", "assistant", "ok")])
    assert chat_from_interaction(teams).payload["messages"] == [
        {"role": "user", "content": "Who approves refunds above 200 euros?"},
        {"role": "assistant", "content": "Dana Whitfield approves them."}]
    unanswered = view(2, "thread", [("bram", "other", "Who owns Basalt?"), ("bram", "other", "anyone?")])
    assert chat_from_interaction(unanswered) is None
    only_thanks = view(3, "thread", [("bram", "other", "Who owns Basalt?"), ("ada", "other", "Thanks!")])
    assert chat_from_interaction(only_thanks) is None
    not_a_question = view(4, "comment", [("ada", "other", "Updated the table."), ("bram", "other", "Looks good")])
    assert chat_from_interaction(not_a_question) is None


def test_comment_on_a_document_names_it_and_conversations_keep_their_turns() -> None:
    comment = view(5, "comment", [("bram", "other", "Is this still true?"), ("ada", "other", "Yes, as of May.")],
                   context="Deploy policy")
    assert chat_from_interaction(comment).payload["messages"][0]["content"] == 'About "Deploy policy": Is this still true?'
    chat = view(6, "chat", [("", "assistant", "Hi! How can I help?"), ("u", "user", "Freeze time?"),
                            ("u", "user", "For deploys."), ("", "assistant", "Thursday 16:00 UTC."),
                            ("u", "user", "thanks")])
    assert chat_from_interaction(chat).payload["messages"] == [
        {"role": "user", "content": "Freeze time?\n\nFor deploys."},
        {"role": "assistant", "content": "Thursday 16:00 UTC."}]


def test_feedback_corrections_ratings_and_pairs() -> None:
    q = [("u", "user", "When does the freeze start?")]
    corrected = view(10, "feedback", q + [("", "assistant", "Friday.")], rating=-1,
                     correction="Thursday at 16:00 UTC.")
    kinds = [(d.kind, d.origin) for d in feedback_examples(corrected)]
    assert kinds == [("preference", "feedback"), ("chat", "feedback")]
    assert feedback_examples(corrected)[0].payload == {"prompt": "When does the freeze start?",
                                                       "chosen": "Thursday at 16:00 UTC.", "rejected": "Friday."}
    good = view(11, "feedback", q + [("", "assistant", "Thursday 16:00 UTC.")], rating=5,
                meta={"rating_scale": "1-5"})
    bad = view(12, "feedback", [("u", "user", "when does the FREEZE start")] + [("", "assistant", "No idea.")],
               rating=1, meta={"rating_scale": "1-5"})
    assert [d.kind for d in feedback_examples(good)] == ["chat"]
    assert feedback_examples(bad) == []
    pairs = rated_pairs([bad], [good, corrected])
    assert len(pairs) == 1  # against the well-rated answer (two badly-rated ones make no pair)
    first = pairs[0]
    assert first.payload == {"prompt": "when does the FREEZE start", "chosen": "Thursday 16:00 UTC.",
                             "rejected": "No idea."}
    assert (first.interaction_id, first.origin) == (12, "pair:11")
    assert rated_pairs([], [good, bad]) == []  # pairs need one new interaction
    # A new well-rated answer pairs with every badly-rated one already there.
    assert sorted(p.interaction_id for p in rated_pairs([good], [bad, corrected])) == [10, 12]


def test_rating_scales() -> None:
    assert normalized_rating(None) is None
    assert (normalized_rating(1), normalized_rating(-1), normalized_rating(0)) == (1.0, -1.0, 0.0)
    assert (normalized_rating(5), normalized_rating(3), normalized_rating(2)) == (1.0, 0.0, -0.5)
    assert normalized_rating(1, {"rating_scale": "1-5"}) == -1.0


# --------------------------------------------------------------------------- teachers
@pytest.fixture
def fake_openai() -> Iterator[str]:
    with serve_fake_openai() as url:
        yield url


def test_openai_compatible_teacher(fake_openai: str) -> None:
    cfg = TrainingConfig(teacher=fake_openai, teacher_model="qwen-small", teacher_api_key="sk-test")
    teacher = make_teacher(cfg, "tiny-random")
    assert isinstance(teacher, OpenAITeacher)
    reading = teacher.read(Passage("Basalt", ["Basalt", "Details"], "Owner: Ada Moreau"))
    assert reading.qa == [("What does Basalt > Details say?", "Owner: Ada Moreau")]
    assert reading.statements == ["In other words: Basalt > Details.", "Basalt > Details relates to the team."]
    sent = _FakeOpenAI.requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer sk-test"
    assert sent["body"]["model"] == "qwen-small" and sent["body"]["messages"][0]["role"] == "system"
    _FakeOpenAI.status = 500
    with pytest.raises(TeacherError, match="HTTP 500"):
        teacher.read(Passage("Basalt", [], "x"))
    _FakeOpenAI.status, _FakeOpenAI.reply = 200, "I cannot help with that."
    with pytest.raises(TeacherError, match="no JSON"):
        teacher.read(Passage("Basalt", [], "x"))
    teacher.close()
    with pytest.raises(TeacherError, match="failed"):
        OpenAITeacher("http://127.0.0.1:1/v1", timeout=2).read(Passage("t", [], "x"))


def test_reading_is_parsed_leniently() -> None:
    reading = parse_reading('Sure! {"questions": [{"question": "Q?", "answer": "A."}], "relations": ["R", 3]} bye')
    assert (reading.qa, reading.statements) == ([("Q?", "A.")], ["R"])
    with pytest.raises(TeacherError):
        parse_reading("{not json}")


def test_self_teacher_runs_on_the_team_base_model() -> None:
    teacher = make_teacher(TrainingConfig(teacher="self"), "tiny-random")
    assert isinstance(teacher, SelfTeacher)
    teacher.max_new_tokens = 8
    reading = teacher.read(Passage("Basalt", [], "The primary Postgres cluster is called Basalt."))
    # A random model rarely writes a question; whatever it asks is answered by the passage.
    assert all(a == "The primary Postgres cluster is called Basalt." and q.endswith("?") for q, a in reading.qa)
    assert reading.statements == []
    # Several passages are read together, each exactly as it is read alone.
    passages = [Passage("Basalt", [], "The primary Postgres cluster is called Basalt."),
                Passage("Deploys", ["Freeze"], "Deploys freeze on Thursday at 16:00 UTC until Monday."),
                Passage("Backups", [], "Backups are kept for 35 days.")]
    assert [(r.qa, r.statements) for r in teacher.read_many(passages)] == \
        [(r.qa, r.statements) for r in (teacher.read(p) for p in passages)]
    assert make_teacher(TrainingConfig(), "tiny-random") is None
    with pytest.raises(ValueError, match="teacher must be none, self or"):
        TrainingConfig(teacher="gpt-please")
