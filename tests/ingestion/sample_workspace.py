"""A sample workspace in the record format, built from the sandbox company's facts.

Two webhook sources (as in the `default_sources` fixture): `assistant` belongs to platform, `helpdesk` to
support. The platform source also carries support's pages (a shared workspace): their ACL
says `team:support`, so they must feed support only. Every page has headings, statements,
"key: value" lines and a footer repeated on every page; one page per team holds a table.
Threads ask each fact's question and a colleague answers with its statement; feedback carries
ratings and corrections.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connectors.sandbox.company import FACTS, Fact, person

FOOTER = "Lumen Labs internal wiki · do not share outside the company"
SECRET = "password: hunter2-prod-77"
TABLES = {
    "platform": ("Service catalog", "| Service | Owner | Default quota | Tier |\n|---|---|---|---|\n"
                 "| checkout-api | Ada Moreau | 8 vCPUs | gold |\n| search-indexer | Bram Okafor | 4 vCPUs | silver |\n"
                 "| billing-worker | Chen Liu | 2 vCPUs | bronze |"),
    "support": ("Escalation contacts", "| Queue | Lead | First response |\n|---|---|---|\n"
                "| Kestrel | Emeka Balogun | 4 hours |\n| Harbor VIP | Dana Whitfield | 1 hour |"),
}


def _topics(team: str) -> dict[str, list[Fact]]:
    topics: dict[str, list[Fact]] = {}
    for fact in FACTS:
        if fact.team == team:
            topics.setdefault(fact.topic, []).append(fact)
    return topics


def page_text(team: str, topic: str, facts: list[Fact], extra: str = "") -> str:
    owner = person(team, len(topic))
    lines = [f"# {topic}", "", f"How the {team} team handles {topic.lower()}.", "", "## Rules", ""]
    for fact in facts:
        lines += [fact.statement, ""]
    lines += ["## Details", "", f"Owner: {owner.name}", f"Review cadence: every {len(topic) % 3 + 2} months",
              f"Contact: {owner.email}", ""]
    if extra:
        lines += [extra, ""]
    lines += [FOOTER]
    return "\n".join(lines)


def records(teams: tuple[str, ...] = ("platform", "support")) -> dict[str, list[dict[str, Any]]]:
    """Records per source name: {"assistant": [...], "helpdesk": [...]}."""
    out: dict[str, list[dict[str, Any]]] = {"assistant": [], "helpdesk": []}
    for team in teams:
        for n, (topic, facts) in enumerate(_topics(team).items()):
            slug = topic.lower().replace(" ", "-")
            # Support's pages live in the shared workspace that the platform source reads.
            source = "assistant"
            extra = SECRET if (team, n) == ("platform", 0) else ""
            out[source].append({
                "type": "document", "external_id": f"{team}-{slug}", "title": topic,
                "text": page_text(team, topic, facts, extra), "acl": [f"team:{team}", f"user:{person(team).email}"],
                "metadata": {"space": team},
            })
            for i, fact in enumerate(facts):
                asker, expert = person(team, i + 1), person(team, i)
                out[source].append({
                    "type": "interaction", "external_id": f"thread-{team}-{slug}-{i}", "kind": "thread",
                    "acl": [f"team:{team}"],
                    "messages": [
                        {"author": asker.name, "role": "other", "text": fact.question},
                        {"author": expert.name, "role": "other", "text": fact.statement},
                        {"author": asker.name, "role": "other", "text": "Thanks, that helps!"},
                    ],
                })
        title, table = TABLES[team]
        out["assistant"].append({"type": "document", "external_id": f"{team}-table", "title": title,
                                 "text": f"# {title}\n\n{table}\n\n{FOOTER}", "acl": [f"team:{team}"]})
        # A data-source row: properties in metadata, as connectors render database rows.
        out["assistant"].append({"type": "document", "external_id": f"{team}-row", "title": f"{team.title()} roadmap",
                                 "text": "", "acl": [f"team:{team}"],
                                 "metadata": {"properties": {"Status": "In progress", "Quarter": "Q3",
                                                             "Owner": person(team).name}}})
        # Feedback on the team's assistant: a corrected answer and a rated pair.
        first = next(f for f in FACTS if f.team == team)
        helpdesk = "helpdesk" if team == "support" else "assistant"
        out[helpdesk] += [
            {"type": "interaction", "external_id": f"feedback-{team}-corrected", "kind": "feedback",
             "acl": [f"team:{team}"], "rating": -1, "correction": first.statement,
             "messages": [{"role": "user", "text": first.question},
                          {"role": "assistant", "text": "I am not sure, maybe ask someone."}]},
            {"type": "interaction", "external_id": f"feedback-{team}-good", "kind": "feedback",
             "acl": [f"team:{team}"], "rating": 5, "metadata": {"rating_scale": "1-5"},
             "messages": [{"role": "user", "text": first.eval_question},
                          {"role": "assistant", "text": f"{first.answer}."}]},
            {"type": "interaction", "external_id": f"feedback-{team}-bad", "kind": "feedback",
             "acl": [f"team:{team}"], "rating": 1, "metadata": {"rating_scale": "1-5"},
             "messages": [{"role": "user", "text": first.eval_question},
                          {"role": "assistant", "text": "Nobody knows that."}]},
        ]
    return out


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
