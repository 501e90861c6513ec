"""Hygiene: secrets and personal data scrubbed, boilerplate stripped, duplicates found."""

from __future__ import annotations

from collections import Counter

import pytest

from ingestion.processing.hygiene import (
    DuplicateIndex,
    LineStats,
    lsh_params,
    minhash,
    scrub,
    strip_boilerplate,
)
from tacit.config import HygieneConfig

ALL = HygieneConfig()


@pytest.mark.parametrize(("raw", "expected"), [
    ("password: hunter2-prod", "password: [SECRET]"),
    ('DB_PASSWORD="s3cr3t!!"', 'DB_PASSWORD="[SECRET]"'),
    ("api_key = sk-proj-abcdefghijklmnopqrstuvwx", "api_key = [SECRET]"),
    ("token: <your token here>", "token: <your token here>"),  # a placeholder stays
    ("secret: ${NOTION_TOKEN}", "secret: ${NOTION_TOKEN}"),
    ("key AKIAIOSFODNN7EXAMPLE in the logs", "key [SECRET] in the logs"),
    ("use ghp_" + "a" * 36 + " for CI", "use [SECRET] for CI"),
    ("slack xoxb-1234567890-abcdefghij", "slack [SECRET]"),
    ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz123456", "Authorization: Bearer [SECRET]"),
    ("postgres://admin:s3cret@db.internal:5432/app", "postgres://[CREDENTIALS]@db.internal:5432/app"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N", "jwt [SECRET]"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----\nafter",
     "[PRIVATE KEY]\nafter"),
    ("mail ada@lumenlabs.example today", "mail [EMAIL] today"),
    ("call +33 1 23 45 67 89 or (555) 123-4567", "call [PHONE] or [PHONE]"),
    # Things that look a little like secrets or phone numbers but are not.
    ("The freeze starts at 16:00 UTC on 2024-01-15, version 1.2.3, host 10.0.0.1.",
     "The freeze starts at 16:00 UTC on 2024-01-15, version 1.2.3, host 10.0.0.1."),
    ("The token is sent with each request.", "The token is sent with each request."),
])
def test_scrub(raw: str, expected: str) -> None:
    assert scrub(raw, ALL) == expected


def test_scrubbing_is_configurable_and_counted() -> None:
    text = "ada@lumenlabs.example password: hunter2-prod +44 20 7946 0958"
    counts: Counter[str] = Counter()
    assert scrub(text, ALL, counts) == "[EMAIL] password: [SECRET] [PHONE]"
    assert (counts["email"], counts["password"], counts["phone"]) == (1, 1, 1)
    only_secrets = HygieneConfig(scrub_emails=False, scrub_phone_numbers=False)
    assert scrub(text, only_secrets) == "ada@lumenlabs.example password: [SECRET] +44 20 7946 0958"
    nothing = HygieneConfig(scrub_secrets=False, scrub_emails=False, scrub_phone_numbers=False)
    assert scrub(text, nothing) == text


def test_boilerplate_lines_repeated_across_a_source_are_stripped() -> None:
    footer = "Lumen Labs internal wiki · do not share outside the company"
    docs = [f"# Page {i}\n\nFact number {i} is specific.\n\n{footer}" for i in range(4)]
    stats = LineStats()
    for d in docs:
        stats.add_document(d)
    assert stats.docs == 4
    assert strip_boilerplate(docs[0], stats) == "# Page 0\n\nFact number 0 is specific."
    # A line in only one document stays; so do code blocks, even repeated.
    code = "```\n" + footer + "\n```"
    assert strip_boilerplate(code, stats) == code
    assert LineStats.from_state(stats.to_state()) == stats


def test_property_lines_repeated_across_rows_are_facts_not_boilerplate() -> None:
    rows = [f"# Task {i}\n\n- **Status**: Done\n- **Owner**: Ada" for i in range(6)]
    stats = LineStats()
    for r in rows:
        stats.add_document(r)
    assert strip_boilerplate(rows[0], stats) == rows[0]


def test_well_known_noise_lines_are_stripped_without_statistics() -> None:
    text = ("[Home](/) | [Docs](/docs) | [Blog](/blog)\nSkip to content\n\nReal text stays.\n\n"
            "© 2024 Lumen Labs. All rights reserved.\nSent from my iPhone")
    counts: Counter[str] = Counter()
    assert strip_boilerplate(text, None, counts) == "Real text stays."
    assert counts["boilerplate_lines"] == 4


def test_line_stats_stay_bounded() -> None:
    stats = LineStats(capacity=16)
    for i in range(500):
        stats.add_document(f"unique line number {i} here\nshared footer line of every page")
    assert len(stats.counts) <= 32
    assert stats.is_boilerplate(next(iter(stats.counts)))  # the shared line survived the pruning
    assert strip_boilerplate("keep me please\nshared footer line of every page", stats) == "keep me please"


def test_minhash_estimates_similarity() -> None:
    base = " ".join(f"word{i}" for i in range(400))
    near = base.replace("word200", "changed")
    other = " ".join(f"term{i}" for i in range(400))
    assert (minhash(base) == minhash(near)).mean() > 0.9
    assert (minhash(base) == minhash(other)).mean() < 0.1


def test_duplicate_index_finds_exact_and_near_copies_only() -> None:
    assert lsh_params(0.85) == (8, 16)
    index = DuplicateIndex(0.85)
    page = " ".join(f"The deploy freeze rule number {i} applies to service s{i}." for i in range(60))
    assert index.check_and_add(page, 1) is None
    assert index.check_and_add(page.upper(), 2) == 1  # same words: an exact copy
    assert index.check_and_add(page.replace("rule number 30 ", "rule nr 30 "), 3) == 1  # near copy
    assert index.check_and_add(" ".join(f"Refund case {i} was approved by agent a{i}." for i in range(60)), 4) is None
    exact_only = DuplicateIndex(1.0)
    assert exact_only.check_and_add(page, 1) is None
    assert exact_only.check_and_add(page.replace("rule number 30 ", "rule nr 30 "), 2) is None
    assert exact_only.check_and_add(page, 3) == 1


def test_duplicate_index_keeps_working_past_its_in_memory_buffer() -> None:
    index = DuplicateIndex(0.85)
    texts = [" ".join(f"doc{d} token{t}" for t in range(30)) for d in range(700)]
    for i, t in enumerate(texts):
        assert index.check_and_add(t, i) is None
    assert index._runs  # flushed into sorted arrays
    assert all(index.check_and_add(t, 10_000 + i) == i for i, t in enumerate(texts))
