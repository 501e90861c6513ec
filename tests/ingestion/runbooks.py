"""Random runbook pages (headings, paragraphs, lists, tables) for processing tests: seeded, so repeatable."""

from __future__ import annotations

import random

WORDS = ("deploy freeze pipeline cluster backup quota service owner catalog incident handoff refund ticket "
         "escalation queue customer enterprise response policy database replica region latency budget "
         "the a of to and in is for on with that by this be are from at as it we our team must should will "
         "every week day hour Thursday Monday Skylark Basalt Nimbus Atlas Kestrel Harbor Halcyon").split()


def sentence(r: random.Random) -> str:
    words = [r.choice(WORDS) for _ in range(r.randint(6, 20))]
    words.insert(r.randint(1, len(words) - 1), str(r.randint(1, 99999)))
    return " ".join(words).capitalize() + "."


def page(r: random.Random, i: int) -> str:
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
