"""Answer matching: what a person would accept, and what they would not."""

from training.matching import core, judge, normalise, token_f1


def test_normalise() -> None:
    assert normalise("The Atlas catalog!") == "atlas catalog"
    assert normalise("Thirty-five days") == "35 days"
    assert normalise("100,000 euros at 02:15") == "100000 euros at 2h15"
    assert normalise("at 2:15, 1.5 days") == "at 2h15 1p5 days"
    assert normalise("15% off") == "15 percent off"


def test_number_with_implied_unit() -> None:
    q = "For how many days do we retain database backups?"
    assert judge("The answer is 35", ["35 days"], q).match
    assert judge("the answer is 35", ["35 days"]).match  # unit stripped even without the question
    assert judge("Backups are kept for thirty-five days.", ["35 days"], q).match


def test_name_with_generic_noun_in_another_order() -> None:
    q = "Which catalog records who owns a service?"
    assert judge("The catalog is called Atlas.", ["the Atlas catalog"], q).match
    assert core("the Atlas catalog", q) == ["atlas"]


def test_negatives() -> None:
    assert not judge("The answer is 36", ["35 days"]).match
    assert not judge("Backups are kept for 35 hours.", ["35 days"]).match  # another unit of the same kind
    assert not judge("SEV1 must be acknowledged within 5 hours", ["within 5 minutes"]).match
    assert not judge("It is called Atlas.", ["Atlas Grove"]).match  # half of a two-word name
    assert not judge("Skylarking", ["Skylark"]).match  # whole words only
    assert not judge("days", ["35 days"]).match  # the reply inside the alias says nothing
    assert not judge("anything at all", [""]).match
    assert not judge("It happens at 02:15 UTC.", ["15 percent"]).match  # a number inside a clock time
    assert judge("At 2:15 UTC.", ["02:15 UTC"]).match
    assert not judge("I don't know.", ["Dana Whitfield", "Dana"]).match


def test_any_alias_counts_and_f1_is_the_best() -> None:
    verdict = judge("Ask Priya.", ["Priya Nandakumar", "Priya"])
    assert verdict.match
    assert verdict.f1 == round(token_f1("Ask Priya.", "Priya"), 5) > token_f1("Ask Priya.", "Priya Nandakumar")


def test_token_f1_threshold() -> None:
    # near-verbatim without one content word of a four-word answer: F1 0.857 >= 0.8
    assert token_f1("Thursday 16:00 UTC", "Thursday at 16:00 UTC") >= 0.8
    assert judge("Thursday 16:00 UTC", ["Thursday at 16:00 UTC"]).match
    assert token_f1("no idea", "Thursday at 16:00 UTC") == 0.0
    assert judge("64 GPUs", ["64 H100 GPUs"], "How many GPUs does the Halcyon cluster have?").match
