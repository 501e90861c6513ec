"""The sample company reads like a team's wiki, and its eval questions are worded unlike it."""

from __future__ import annotations

import re

from connectors.sandbox.company import FACTS, TEAMS, WIKI, discussed, facts_for


def _grams(text: str, n: int = 4) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_every_fact_sits_in_one_prose_paragraph_under_a_topic_heading() -> None:
    assert set(WIKI) == {(f.team, f.topic) for f in FACTS}
    for fact in FACTS:
        sections = WIKI[(fact.team, fact.topic)]
        holding = [text for _, paragraphs in sections for text in paragraphs if fact.statement in text]
        assert len(holding) == 1, fact.statement
        assert holding[0] != fact.statement  # surrounded by context, not a bare line
        assert all(not heading.endswith("?") for heading, _ in sections)  # topics, not questions


def test_only_a_few_facts_per_team_are_discussed() -> None:
    for team in TEAMS:
        assert 1 <= len(discussed(team.name)) <= 2 <= len(facts_for(team.name)) // 4


def test_eval_questions_copy_no_four_words_of_their_statement() -> None:
    for fact in FACTS:
        assert not _grams(fact.statement) & _grams(fact.eval_question), fact.eval_question
        assert fact.answer and all(alias.strip() for alias in fact.answers)
