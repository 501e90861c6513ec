"""Chunking: token-accurate, structure-aware, every chunk with its heading path."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion.processing.chunking import TokenCounter, chunk_documents, chunk_markdown


def n_tokens(tok, text: str) -> int:  # type: ignore[no-untyped-def]
    return len(tok(text, add_special_tokens=False)["input_ids"])


DOC = """Preamble before any heading.

# Deploy policy

The weekly deploy freeze starts every Thursday at 16:00 UTC.

## Pipeline

Production deploys go through the Skylark pipeline.

```bash
skylark deploy --env prod

skylark verify --env prod
```

### Rollback

Run `skylark rollback` within 10 minutes.

# On-call

| Day | Primary | Secondary |
|---|---|---|
| Monday | Ada | Bram |
| Tuesday | Chen | Ada |
"""


def test_heading_paths_and_exact_counts(tok) -> None:  # type: ignore[no-untyped-def]
    chunks = chunk_markdown(DOC, tokenizer=tok, max_tokens=64)
    paths = [c.heading_path for c in chunks]
    assert paths == [[], ["Deploy policy"], ["Deploy policy", "Pipeline"],
                     ["Deploy policy", "Pipeline", "Rollback"], ["On-call"]]
    assert chunks[0].text == "Preamble before any heading."
    assert chunks[2].text.startswith("## Pipeline\n\nProduction deploys") and chunks[2].text.endswith("```")
    for c in chunks:
        assert c.token_count == n_tokens(tok, c.text) <= 64
        assert c.text == DOC[c.start:c.end]


def test_a_heading_with_no_text_of_its_own_joins_the_next_section(tok) -> None:  # type: ignore[no-untyped-def]
    chunks = chunk_markdown("# Runbook\n\n## Restart\n\nRestart the worker with `make restart`.", tokenizer=tok,
                            max_tokens=64)
    assert len(chunks) == 1
    assert chunks[0].heading_path == ["Runbook", "Restart"]
    assert chunks[0].text.startswith("# Runbook\n\n## Restart")


def test_code_block_is_kept_whole_when_it_fits(tok) -> None:  # type: ignore[no-untyped-def]
    code = "```python\n" + "\n\n".join(f"def f{i}():\n    return {i}" for i in range(6)) + "\n```"
    text = "# Code\n\n" + "Some words before the code block. " * 8 + "\n\n" + code + "\n\nAfter."
    budget = n_tokens(tok, code) + 2
    chunks = chunk_markdown(text, tokenizer=tok, max_tokens=budget)
    assert [c.text for c in chunks if "```" in c.text] == [code]
    assert all(c.token_count <= budget for c in chunks)


def test_large_table_splits_between_rows_and_repeats_its_header(tok) -> None:  # type: ignore[no-untyped-def]
    header = "| Service | Owner | Quota |\n|---|---|---|"
    rows = [f"| service-{i} | person {i} | {i} vCPUs |" for i in range(40)]
    text = "# Catalog\n\n" + header + "\n" + "\n".join(rows)
    chunks = chunk_markdown(text, tokenizer=tok, max_tokens=80)
    assert len(chunks) > 3
    seen = []
    for c in chunks:
        assert c.token_count == n_tokens(tok, c.text) <= 80
        lines = [line for line in c.text.split("\n") if line.startswith("| service-")]
        assert all(line in rows for line in lines)  # never a partial row
        seen += lines
        if c is not chunks[0]:
            assert c.text.startswith(header + "\n")
    assert seen == rows


def test_oversized_paragraph_splits_at_sentences_then_tokens(tok) -> None:  # type: ignore[no-untyped-def]
    sentences = [f"Sentence number {i} says something about deploys." for i in range(30)]
    para = " ".join(sentences)
    chunks = chunk_markdown(para, tokenizer=tok, max_tokens=40)
    assert all(c.token_count <= 40 for c in chunks)
    assert all(c.text.endswith(".") for c in chunks)  # cut at sentence ends only
    assert " ".join(c.text for c in chunks) == para
    word = "x" * 3000  # one "word": only token boundaries are left
    chunks = chunk_markdown(word, tokenizer=tok, max_tokens=32)
    assert "".join(c.text for c in chunks) == word
    assert all(c.token_count == n_tokens(tok, c.text) <= 32 for c in chunks)


def test_overlap_repeats_the_end_of_the_previous_chunk(tok) -> None:  # type: ignore[no-untyped-def]
    paras = "\n\n".join(f"Paragraph {i} is about topic {i}." for i in range(20))
    chunks = chunk_markdown(paras, tokenizer=tok, max_tokens=48, overlap_tokens=12)
    assert len(chunks) > 2
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        assert nxt.start < prev.end  # they share text
        assert prev.text.endswith(paras[nxt.start:prev.end])
    assert all(c.token_count <= 48 for c in chunks)


def test_bad_sizes_are_refused(tok) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        chunk_markdown("x", tokenizer=tok, max_tokens=16, overlap_tokens=16)
    with pytest.raises(TypeError):
        chunk_markdown("x", tokenizer=object(), max_tokens=16)


def test_batch_equals_one_by_one(tok) -> None:  # type: ignore[no-untyped-def]
    docs = [DOC, "", "plain text only", DOC.replace("Ada", "Zed")]
    batch = chunk_documents(docs, tokenizer=tok, max_tokens=40)
    assert batch == [chunk_markdown(d, tokenizer=tok, max_tokens=40) for d in docs]
    assert batch[1] == []


# --------------------------------------------------------------------------- property test
_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789éü你好-'", min_size=1, max_size=14)
_sentence = st.lists(_word, min_size=1, max_size=30).map(lambda ws: " ".join(ws) + ".")
_para = st.lists(_sentence, min_size=1, max_size=8).map(" ".join)
_heading = st.tuples(st.integers(1, 4), _word).map(lambda t: "#" * t[0] + " " + t[1])
_table = st.lists(st.lists(_word, min_size=2, max_size=2), min_size=1, max_size=12).map(
    lambda rows: "| a | b |\n|---|---|\n" + "\n".join(f"| {r[0]} | {r[1]} |" for r in rows))
_code = st.lists(_sentence, min_size=1, max_size=10).map(lambda ls: "```\n" + "\n".join(ls) + "\n```")
_list = st.lists(_sentence, min_size=1, max_size=8).map(lambda ls: "\n".join(f"- {x}" for x in ls))
_raw = st.text(alphabet=st.sampled_from(list("ab1 .|#-`>*\t\r\n\u00a0😀<|im_end|>")), max_size=120)
_block = st.one_of(_para, _heading, _table, _code, _list, _raw)
_doc = st.lists(st.tuples(_block, st.sampled_from(["\n\n", "\n", "\n \n", "\r\n\r\n", "\n\n\n"])),
                min_size=0, max_size=14).map(lambda parts: "".join(b + sep for b, sep in parts))


def test_counts_add_up_across_line_breaks_for_byte_level_bpe(tok) -> None:  # type: ignore[no-untyped-def]
    assert TokenCounter(tok).additive  # SmolLM2's tokenizer: packed counts are exact without a recount
    a, b = "The freeze starts Thursday.", "| Day | Owner |"
    counter = TokenCounter(tok)
    assert n_tokens(tok, a + "\n\n" + b) == n_tokens(tok, a) + counter.gap("\n\n", b[0]) + n_tokens(tok, b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=_doc, max_tokens=st.integers(16, 200), overlap=st.integers(0, 12), additive=st.booleans())
def test_no_chunk_is_ever_over_the_limit(tok, text: str, max_tokens: int, overlap: int,  # type: ignore[no-untyped-def]
                                         additive: bool) -> None:
    counter = TokenCounter(tok)
    counter.additive = additive  # False: the path every other tokenizer takes (count, then recount)
    chunks = chunk_documents([text], tokenizer=tok, max_tokens=max_tokens, overlap_tokens=overlap,
                             counter=counter)[0]
    covered = bytearray(len(text))
    for c in chunks:
        assert c.token_count == n_tokens(tok, c.text)
        assert 0 < c.token_count <= max_tokens
        assert all(isinstance(h, str) for h in c.heading_path)
        assert text[c.start:c.end] in c.text
        covered[c.start:c.end] = b"\x01" * (c.end - c.start)
    # Every visible character of the document is in some chunk.
    assert all(covered[m.start()] for m in re.finditer(r"\S", text))
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)


_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZäöüß0123456789", min_size=1, max_size=10)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(words=st.lists(_word, min_size=20, max_size=200), max_tokens=st.integers(24, 64),
       sep=st.sampled_from([" ", "  ", " \u00a0", "\t"]))
def test_a_sentence_longer_than_a_chunk_splits_between_words(tok, words: list[str], max_tokens: int,  # type: ignore[no-untyped-def]
                                                             sep: str) -> None:
    text = sep.join(words)  # one sentence, no punctuation: only a token cut can split it
    chunks = chunk_markdown(text, tokenizer=tok, max_tokens=max_tokens)
    assert all(0 < c.token_count <= max_tokens for c in chunks)
    # No word is ever cut in two: the chunks' words, in order, are the sentence's words.
    assert [w for c in chunks for w in c.text.split()] == text.split()
