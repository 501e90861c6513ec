"""The prompt-stuffing baseline's retrieval: BM25 ranking, the stuffed prompt, a team's chunks."""

from __future__ import annotations

from tests.training.helpers import add_chunk
from training.retrieval import BM25, TOP_K, rag_question, stuffed_questions, team_chunk_texts

CHUNKS = [
    "Database backups are kept for 35 days in the cold bucket.",
    "Production deploys go through the Skylark pipeline; the freeze starts on Thursday.",
    "The on-call handoff happens every Monday in the pager channel.",
    "Service ownership is recorded in the Atlas catalog.",
    "Deploys deploys deploys: a page that only repeats one word about deploys and deploys.",
]


def test_bm25_ranks_the_chunk_that_shares_the_rare_terms_first() -> None:
    index = BM25(CHUNKS)
    assert index.search("How long do we keep database backups?", 1) == [CHUNKS[0]]
    assert index.search("Which catalog records service ownership?", 1) == [CHUNKS[3]]
    # term frequency saturates: the page repeating "deploys" does not beat the one naming the pipeline
    assert index.search("Which pipeline do production deploys use?", 2)[0] == CHUNKS[1]


def test_bm25_leaves_out_unrelated_texts_and_caps_k() -> None:
    index = BM25(CHUNKS)
    assert index.search("quantum chromodynamics", 3) == []
    assert len(index.search("the deploys backups handoff catalog", 10)) == 5
    assert len(index.search("the deploys backups handoff catalog")) == TOP_K
    assert BM25([]).search("anything") == []


def test_stuffed_prompt_puts_passages_before_the_question() -> None:
    prompt = rag_question("How long are backups kept?", ["first passage", "second passage"])
    assert prompt.index("[1] first passage") < prompt.index("[2] second passage") < prompt.index("How long")
    assert rag_question("alone?", []) == "alone?"
    [stuffed] = stuffed_questions(BM25(CHUNKS), ["How long do we keep database backups?"], k=1)
    assert CHUNKS[0] in stuffed and CHUNKS[3] not in stuffed


def test_team_chunks_are_the_teams_live_chunks(make_ctx, sqlite_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    body = ('[[teams]]\nname = "platform"\nbase_model = "tiny-random"\n'
            '[[teams]]\nname = "support"\nbase_model = "tiny-random"\n'
            '[[sources]]\nname = "assistant"\nkind = "webhook"\nteam = "platform"\n')
    ctx = make_ctx(sqlite_url, body=body)
    add_chunk(ctx, "platform", "assistant", "a", CHUNKS[0])
    add_chunk(ctx, "support", "assistant", "b", CHUNKS[1])
    with ctx.session() as session:
        assert team_chunk_texts(session, ctx.team_row(session, "platform").id) == [CHUNKS[0]]
