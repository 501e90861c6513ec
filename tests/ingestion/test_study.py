"""Study data from prose (`ingestion.processing.study`): questions of several kinds from several
sentence shapes, cloze items, restatements, cross-document links, caps, determinism, and the
grounding filter of teacher-written study data (through a real OpenAI-compatible server)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from connectors.base import parse_record
from ingestion.corpus.runner import ingest_records
from ingestion.processing.chunking import Chunk
from ingestion.processing.pipeline import process_team
from ingestion.processing.study import (
    Span,
    cue_questions,
    cue_words,
    find_spans,
    grounded,
    link_examples,
    sentence_items,
    sentences,
    study_examples,
)
from tacit.cli.export import export_rows
from tacit.context import Context
from tests.ingestion.fake_openai import FakeOpenAI, serve_fake_openai

TEXT = ("Backups of the Basalt cluster are kept for 35 days. Our catalog is called Atlas. "
        "Ada Lovelace owns the billing service. The deploy freeze starts on Thursday at 16:00 UTC. "
        "The search cluster uses Elasticsearch. Refunds above 500 euros need a second approval. "
        "The primary database runs in Frankfurt.")


def chunk(text: str, path: list[str] | None = None) -> Chunk:
    return Chunk(text=text, token_count=len(text.split()), heading_path=path or ["Storage"], start=0, end=len(text))


def qa(drafts):  # type: ignore[no-untyped-def]
    return {d.payload["question"]: d.payload["answer"] for d in drafts if d.kind == "qa"}


def test_sentence_shapes_give_questions_of_their_kind() -> None:
    kinds = {s: [(sp.kind, sp.text) for sp in find_spans(s)] for s, _ in sentences(TEXT)}
    assert kinds["Backups of the Basalt cluster are kept for 35 days."] == [("which_name", "Basalt"),
                                                                            ("how_long", "35 days")]
    assert kinds["Our catalog is called Atlas."] == [("called", "Atlas")]
    assert kinds["Ada Lovelace owns the billing service."] == [("who", "Ada Lovelace")]
    # a day and its time are one answer
    assert kinds["The deploy freeze starts on Thursday at 16:00 UTC."] == [("when", "on Thursday at 16:00 UTC")]
    assert kinds["Refunds above 500 euros need a second approval."] == [("how_much", "500 euros")]
    assert kinds["The primary database runs in Frankfurt."] == [("where_name", "Frankfurt")]
    pairs = qa(study_examples("Operations handbook", [chunk(TEXT)]))
    assert any(q.endswith("what is our catalog called?") and a == "Atlas." for q, a in pairs.items())
    assert pairs["Who owns the billing service?"] == "Ada Lovelace."
    assert pairs["What does the search cluster use?"] == "Elasticsearch."
    assert any(q.endswith("the primary database runs where?") and a == "Frankfurt." for q, a in pairs.items())
    assert any("kept for how many days?" in q and a == "35 days." for q, a in pairs.items())
    assert any("how much" in q and a.startswith("500 euros") for q, a in pairs.items())
    assert any("when" in q for q in pairs)
    # short and full-sentence answers; cloze items; restatements as raw text
    assert any(a.endswith("Ada Lovelace owns the billing service.") and len(a) > 20 for a in pairs.values())
    assert pairs["Fill in the blank (Operations handbook): Our catalog is called ____."] == "Atlas"
    drafts = study_examples("Operations handbook", [chunk(TEXT)])
    sub = Counter(d.payload["study"] for d in drafts)
    assert {"question:who", "question:what", "question:how_long", "question:how_much", "question:when",
            "question:where", "cloze", "restatement"} <= set(sub)
    assert all(d.origin == "study" and d.chunk == 0 for d in drafts)
    assert all(d.payload["passage"] == TEXT for d in drafts if d.kind == "qa")
    restatement = next(d for d in drafts if d.payload["study"] == "restatement")
    assert restatement.kind == "cpt" and set(restatement.payload) == {"text", "study"}


def test_numbers_in_words_and_cue_word_questions() -> None:
    spans = find_spans("We cap multi-year contracts at three years so that pricing can be revisited.")
    assert [(sp.kind, sp.text) for sp in spans] == [("how_long", "three years")]
    assert find_spans("Two engineers review every change.") == [Span("Two engineers", 0, 13, "how_many")]
    assert find_spans("One of the reviewers signs off.") == []
    sentence = "Anything deeper goes to the deal desk, which Marco Ferreira runs."
    span = next(sp for sp in find_spans(sentence) if sp.kind == "who")
    assert "deal desk" in cue_words(sentence, span) and "Marco" not in cue_words(sentence, span)
    questions = cue_questions(sentence, span, seed=0)
    assert questions and all(q.startswith("Who") and "deal desk" in q and q.endswith("?") for q in questions)
    # they are study questions with the short answer
    pairs = qa(study_examples("Sales handbook", [chunk(sentence)]))
    assert all(pairs[q] == "Marco Ferreira." for q in questions)


def test_headings_tables_code_and_fragments_give_nothing() -> None:
    text = "# Storage\n\n| Service | Owner |\n|---|---|\n| Basalt | Ada |\n\n```\nkept for 35 days.\n```\n\nShort one."
    assert sentences(text) == []
    assert study_examples("T", [chunk(text)]) == []


def test_same_text_same_examples_and_sizes_are_capped() -> None:
    a = study_examples("Ops", [chunk(TEXT)])
    b = study_examples("Ops", [chunk(TEXT)])
    assert [(d.kind, d.payload) for d in a] == [(d.kind, d.payload) for d in b]
    assert len({d.content_hash for d in a}) == len(a)  # no duplicates
    long = " ".join(f"Service {i} keeps its logs for {i + 2} days in the Oslo region." for i in range(300))
    capped = study_examples("Ops", [chunk(long)], per_chunk=48)
    assert len(capped) == 48
    # the cap is spread over the sentences (first wording of each first), not spent on the first few
    assert all(d.kind == "qa" and d.payload["study"].startswith("question") for d in capped)
    covered = {n for d in capped for n in range(300) if f"Service {n} " in d.payload["question"]}
    assert len(covered) >= 20
    assert len(study_examples("Ops", [chunk(long), chunk(long)], per_chunk=10)) == 20
    assert study_examples("Ops", [chunk(TEXT)], skip={0}) == []


def test_links_across_documents_of_a_team() -> None:
    docs = [("Storage", [chunk("Basalt is our primary Postgres cluster in Oslo.")], 0),
            ("Incidents", [chunk("The March outage hit Basalt for two hours.")], 1),
            ("Billing", [chunk("Invoices are sent on the first day of the month.")], 2)]
    links = link_examples(docs)
    assert len(links) == 1
    index, draft = links[0]
    assert index == 0 and draft.payload["study"] == "link" and "Basalt" in draft.payload["question"]
    assert "Storage: Basalt is our primary" in draft.payload["answer"]
    assert "Incidents: The March outage hit Basalt" in draft.payload["answer"]
    assert link_examples(docs[:1]) == []


def test_grounding() -> None:
    passage = "Backups of the Basalt cluster are kept for 35 days in Oslo."
    assert grounded("Backups are kept for 35 days.", passage)
    assert not grounded("Backups are kept for 30 days.", passage)  # a number the passage does not state
    assert not grounded("The cluster lives in Frankfurt with weekly snapshots.", passage)
    assert grounded("In other words, Basalt keeps its backups a while.", passage, share=0.0)
    assert not grounded("Granite keeps its backups a while.", passage, share=0.0)  # a name it does not state


def test_teacher_study_data_is_kept_only_when_grounded(default_sources: str, default_teams: str, make_ctx: Callable[..., Context], sqlite_url: str) -> None:
    reply = ('{"questions": [{"question": "How long are backups kept?", "answer": "Backups are kept for 35 days."},'
             ' {"question": "Where do backups go?", "answer": "They are shipped to Frankfurt every night."}],'
             ' "paraphrases": ["Basalt backups stay around for 35 days.", "Granite backups stay for 90 days."],'
             ' "relations": []}')
    with serve_fake_openai() as url:
        FakeOpenAI.reply = reply
        body = default_teams.replace('name = "platform"\nbase_model = "tiny-random"',
                                     f'name = "platform"\nbase_model = "tiny-random"\n'
                                     f'[teams.training]\nteacher = "{url}"') + default_sources
        ctx = make_ctx(sqlite_url, body=body)
        record = {"type": "document", "external_id": "p", "title": "Basalt",
                  "text": "# Basalt\n\nBackups of the Basalt cluster are kept for 35 days."}
        assert ingest_records(ctx, "assistant", [parse_record(record)]).failures == 0
        result = process_team(ctx, "platform")
    assert result["teacher_examples"] == 2 and result["teacher_ungrounded"] == 2
    teacher = [r["payload"] for r in export_rows(ctx, "examples", "platform") if r["origin"] == "teacher"]
    assert {"question": "How long are backups kept?", "answer": "Backups are kept for 35 days."} in teacher
    assert {"text": "Basalt backups stay around for 35 days."} in teacher
    assert result["study"]["question:how_long"] >= 1 and result["study"]["cloze"] >= 1


def test_recurring_moments_frequencies_article_durations_channels_and_passive_how() -> None:
    def kinds(sentence: str) -> list[tuple[str, str]]:
        return [(sp.kind, sp.text) for sp in find_spans(sentence)]

    assert kinds("Evaluation sets are frozen on the first day of each quarter.") == [
        ("when", "on the first day of each quarter")]
    assert kinds("Invoices go out at the end of every month.") == [("when", "at the end of every month")]
    assert kinds("List prices are reviewed twice a year.") == [("how_often", "twice a year")]
    assert kinds("Backups are checked weekly.") == [("how_often", "weekly")]
    assert kinds("The weekly freeze starts on Thursday.") == [("when", "on Thursday")]  # an adjective, not a frequency
    assert kinds("Interviewers put their notes there within a day.") == [("how_long", "a day")]
    assert kinds("Alerts are posted to the #dq-alerts channel.") == [("which_name", "#dq-alerts")]
    assert kinds("Accounts are assigned by region.") == [("how", "by region")]
    assert kinds("Accounts are assigned by region in 2024.") == [("when", "in 2024")]  # only where nothing else is

    items = [item for group in sentence_items("List prices are reviewed twice a year.", "Pricing", "Pricing")
             for item in group]
    assert any(i.kind == "question:how_often" and i.question.endswith("List prices are reviewed how often?")
               and i.answer == "Twice a year." for i in items)
    how = [i for group in sentence_items("Accounts are assigned by region.", "Territories", "Territories")
           for i in group if i.kind == "question:how"]
    assert how[0].question.endswith("How are Accounts assigned?") and how[0].answer == "By region."
    assert all("region" not in i.question for i in how)
