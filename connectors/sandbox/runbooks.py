"""Seeded random runbook text (sentences and Markdown pages) for tests and benchmarks: the same seed,
the same text. The callers' knobs keep each one's corpus exactly as it was measured."""

from __future__ import annotations

import random
from collections.abc import Sequence

WORDS = ("deploy freeze pipeline cluster backup quota service owner catalog incident handoff refund ticket "
         "escalation queue customer enterprise response policy database replica region latency budget "
         "the a of to and in is for on with that by this be are from at as it we our team must should will "
         "every week day hour Thursday Monday Skylark Basalt Nimbus Atlas Kestrel Harbor Halcyon").split()


def sentence(r: random.Random, *, words: Sequence[str] = WORDS, length: tuple[int, int] = (6, 20),
             largest_number: int = 99999, number_share: float | None = None, ends: str = ".") -> str:
    """`length` random words with a number among them (in `number_share` of the sentences; in all
    when None), capitalised, ending in one of `ends`."""
    out = [r.choice(words) for _ in range(r.randint(*length))]
    if number_share is None or r.random() < number_share:
        out.insert(r.randint(1, len(out) - 1), str(r.randint(1, largest_number)))
    return " ".join(out).capitalize() + (r.choice(ends) if len(ends) > 1 else ends)


def page(r: random.Random, i: int) -> str:
    """A runbook page: a title, an introduction, and 2 to 5 steps of prose, a list or a table."""
    out = [f"# Runbook {i}", "", " ".join(sentence(r) for _ in range(r.randint(2, 6)))]
    for s in range(r.randint(2, 5)):
        out += ["", f"## Step {s}: {r.choice(WORDS)}", ""]
        kind = r.random()
        if kind < 0.6:
            out.append(" ".join(sentence(r) for _ in range(r.randint(1, 6))))
        elif kind < 0.8:
            out += [f"- {sentence(r)}" for _ in range(r.randint(2, 6))]
        else:
            out += ["| Host | Owner |", "|---|---|"] + [f"| h{i}-{j} | {r.choice(WORDS)} |" for j in range(r.randint(2, 8))]
    return "\n".join(out)
