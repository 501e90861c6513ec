"""The sample company (`connectors.sandbox.company`) written as a realistic Notion workspace.

Per team: a top-level teamspace page (parent: the workspace) titled with the team's title, one
child page per topic holding the team's wiki prose (topic headings, facts inside paragraphs), plus the block types peers
drop (tables, lists with check state, toggles, callouts, quotes, code, equations, mentions,
media with captions, synced blocks, a page with more than 100 blocks, a toggle with more than
100 children, nested child pages, one block type no client knows); one data source per team
whose rows carry facts in their properties (people, dates, selects, relations, rollups,
formulas); and discussions: the few `discussed` facts asked on their pages and answered by a
teammate, a question on a heading, and a lone comment.

`build_workspace(extra_pages=N)` adds N filler pages (for the benchmark).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from connectors.sandbox.company import (
    COMPANY,
    DOMAIN,
    PEOPLE,
    TEAMS,
    Person,
    facts_for,
    person,
    wiki_sections,
)
from connectors.sandbox.notion.builder import (
    Builder,
    Spec,
    bookmark,
    bullet,
    callout,
    child_page,
    code,
    divider,
    embed,
    equation_block,
    file_block,
    h1,
    h2,
    h3,
    image,
    number,
    p,
    pdf,
    quote,
    raw,
    synced_copy,
    synced_original,
    table,
    todo,
    toggle,
)
from connectors.sandbox.notion.model import (
    Workspace,
    equation,
    mention_date,
    mention_link,
    mention_page,
    mention_user,
    rich,
    stable_id,
    text,
)

#: The team a teamspace root page maps to: its title -> team name (see `teamspaces` in the connector).
TEAMSPACES = {t.title: t.name for t in TEAMS}


def _u(who: Person) -> dict[str, Any]:
    return mention_user(who.id, who.name)


def _user_value(who: Person, *, full: bool = True) -> dict[str, Any]:
    if not full:  # some responses carry only the id; clients must look the name up
        return {"object": "user", "id": who.id}
    return {"object": "user", "id": who.id, "name": who.name, "type": "person", "avatar_url": None,
            "person": {"email": who.email}}


def _opt(name: str, color: str = "default") -> dict[str, Any]:
    return {"id": stable_id(f"option:{name}")[:8], "name": name, "color": color}


def _prop(pid: str, kind: str, config: dict[str, Any] | None = None, name: str = "") -> dict[str, Any]:
    return {"id": pid, "name": name, "type": kind, kind: config or {}}


def _schema(**props: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, prop in props.items():
        label = name.replace("_", " ")
        out[label] = {**prop, "name": label}
    return out


# --------------------------------------------------------------------------- topic pages
def _fact_blocks(team: str, topic: str) -> list[Spec]:
    """The topic's wiki prose: a heading per sub-topic, then its paragraphs."""
    blocks: list[Spec] = []
    for heading, paragraphs in wiki_sections(team, topic):
        blocks += [h1(heading), *(p(text) for text in paragraphs)]
    return blocks


def _platform_topics(b: Builder, ids: dict[str, str]) -> dict[str, list[Spec]]:
    ada, bram, chen = (person("platform", i) for i in range(3))
    return {
        "Deploy policy": [
            p("Maintained by ", _u(bram), ". Read this before shipping anything to production."),
            *_fact_blocks("platform", "Deploy policy"),
            h1("How to deploy"),
            code("skylark deploy --service api --env production", "bash", "Deploying the API with Skylark"),
            h2("Checklist"),
            todo("Change reviewed by a second engineer", checked=True),
            todo("Feature flag created for risky changes", checked=True),
            todo("Rollback plan written down", checked=False),
            quote("If it is Thursday after 16:00 UTC, it waits until Monday."),
        ],
        "On-call": [
            p("The rotation changes weekly; the schedule lives in the table below."),
            *_fact_blocks("platform", "On-call"),
            h1("Rotation"),
            table([["Week", "Primary", "Secondary"], ["1", ada.name, bram.name], ["2", bram.name, chen.name],
                   ["3", chen.name, ada.name]]),
            callout("🚨", "SEV1: acknowledge within 5 minutes, then open an incident channel."),
            h2("Escalation contacts"),
            synced_copy("platform/synced/contacts"),
        ],
        "Databases": [
            *_fact_blocks("platform", "Databases"),
            h1("Restore procedure"),
            number("Pick the snapshot in the Basalt console."),
            number("Restore into a scratch cluster.", children=[
                number("Check row counts against the primary."),
                number("Run the smoke queries."),
            ]),
            number("Swap the connection string."),
            toggle("Connection details", [
                p("Use the read replica for analytics."),
                code("psql \"host=basalt.eu-west-3.internal dbname=app\"", "shell"),
            ]),
            bookmark("https://www.postgresql.org/docs/current/backup.html", "PostgreSQL backup documentation"),
            child_page("Basalt failover drill", [
                h2("Last drill"),
                p("The failover drill on ", mention_date("2025-03-12"), " took 4 minutes 10 seconds."),
                child_page("Drill timeline", [
                    bullet("09:00 primary stopped"),
                    bullet("09:02 replica promoted"),
                    bullet("09:04 traffic restored"),
                ], key="platform/drill-timeline"),
            ], key="platform/failover-drill"),
        ],
        "Internal cloud": [
            p("Nimbus is our internal cloud; see ", mention_page(ids["platform/Deploy policy"], "Deploy policy"),
              " for how services reach production."),
            *_fact_blocks("platform", "Internal cloud"),
            h1("Quota formula"),
            equation_block("q_{\\text{default}} = 8\\ \\text{vCPUs}"),
            p("A service with ", equation("n"), " replicas may request up to ", equation("8n"), " vCPUs."),
            image("https://assets.lumenlabs.example/nimbus-architecture.png", "Nimbus architecture overview"),
            embed("https://status.lumenlabs.example/nimbus", "Nimbus status board"),
        ],
    }


def _support_topics(b: Builder, ids: dict[str, str]) -> dict[str, list[Spec]]:
    dana, emeka, fatima = (person("support", i) for i in range(3))
    return {
        "Refunds": [
            p("Questions about refunds go to ", _u(dana), "."),
            *_fact_blocks("support", "Refunds"),
            h1("Limits at a glance"),
            table([["Amount", "Who approves"], ["up to 200 euros", "any support agent"],
                   ["above 200 euros", dana.name]]),
            callout("💶", "Always note the order number in the refund reason."),
        ],
        "SLAs": [
            *_fact_blocks("support", "SLAs"),
            h1("First response targets"),
            table([["Plan", "First response"], ["Enterprise", "2 business hours"], ["Standard", "1 business day"]]),
            h2("When a target is missed"),
            todo("Tag the ticket sla-missed", checked=True),
            todo("Tell the account manager", checked=False),
        ],
        "Escalation": [
            *_fact_blocks("support", "Escalation"),
            h1("How to escalate"),
            number("Reproduce the bug and collect the logs."),
            number("File it in the Kestrel queue with the customer's plan."),
            number("Link the Kestrel issue in the Harbor conversation."),
            quote("Escalate early: a reopened ticket costs more than a quick question to engineering."),
            toggle("Templates", [
                child_page("Escalation email template", [
                    p("Hello, we have escalated your issue to our engineering team (reference KES-<number>)."),
                ], key="support/escalation-template"),
            ]),
        ],
        "Tools": [
            *_fact_blocks("support", "Tools"),
            h1("Macros"),
            code("RESET-7: Here is a link to reset your password. It expires in 30 minutes.", "plain text",
                 "The password reset macro"),
            p("Harbor's changelog: ", mention_link("https://harbor.example/changelog", "Harbor changelog"), "."),
            file_block("https://files.lumenlabs.example/harbor-guide.pdf", "harbor-guide.pdf", "Harbor user guide"),
            bookmark("https://harbor.example/docs", "Harbor documentation"),
        ],
    }


def _research_topics(b: Builder, ids: dict[str, str]) -> dict[str, list[Spec]]:
    gustav, hana, ivan = (person("research", i) for i in range(3))
    review_log = [bullet(f"Review {n}: draft {n} discussed, {n % 3 + 1} action items") for n in range(1, 106)]
    return {
        "Cluster": [
            p("Halcyon is run by ", _u(ivan), "."),
            *_fact_blocks("research", "Cluster"),
            h1("Capacity"),
            equation_block("\\text{GPU-hours per day} = 64 \\times 24 = 1536"),
            p("A reservation is needed when ", equation("t_{\\text{job}} > 48\\,\\text{h}"), "."),
            table([["Node group", "GPUs"], ["halcyon-a", "32"], ["halcyon-b", "32"]]),
        ],
        "Experiments": [
            *_fact_blocks("research", "Experiments"),
            h1("Reproducibility"),
            code("from lodestar import track\n\nset_seed(1729)\ntrack(run='baseline')", "python",
                 "Every run starts like this"),
            todo("Seed set to 1729", checked=True),
            todo("Run logged in Lodestar", checked=True),
            todo("Config committed", checked=False),
        ],
        "Papers": [
            *_fact_blocks("research", "Papers"),
            h1("Review meeting"),
            p("Next review: ", mention_date("2025-06-04"), ", led by ", _u(gustav), "."),
            quote("A draft that nobody outside the team has read is not ready for review."),
            h3("Reviewer guidelines", children=[p("Read the draft before the meeting and leave comments inline.")]),
            toggle("Review log", review_log),
        ],
        "Data": [
            *_fact_blocks("research", "Data"),
            h1("Layout of the Quarry bucket"),
            bullet("datasets/", children=[
                bullet("raw/", children=[bullet("web-2024/"), bullet("code-2024/")]),
                bullet("processed/"),
            ]),
            bullet("evals/ (frozen on the first day of each quarter)"),
            image("https://assets.lumenlabs.example/quarry-layout.png", "Quarry bucket layout"),
            pdf("https://files.lumenlabs.example/data-policy.pdf", "Data retention policy"),
        ],
    }


# --------------------------------------------------------------------------- data sources
def _services(b: Builder, root: str, owner: Person) -> None:
    ada, bram, chen = (person("platform", i) for i in range(3))
    schema = _schema(
        Name=_prop("title", "title"),
        Owner=_prop("own", "people"),
        Tier=_prop("tie", "select", {"options": [_opt("Tier 1", "red"), _opt("Tier 2", "yellow")]}),
        Status=_prop("sta", "status", {"options": [_opt("Live", "green"), _opt("Deprecated", "gray")]}),
        Region=_prop("reg", "rich_text"),
        Quota_vCPUs=_prop("quo", "number", {"format": "number"}),
        Depends_on=_prop("dep", "relation", {"data_source_id": stable_id("platform/services/data_source"),
                                              "type": "single_property", "single_property": {}}),
        Dependency_count=_prop("dcn", "rollup", {"function": "count", "relation_property_name": "Depends on",
                                                 "rollup_property_name": "Name"}),
        Dependency_names=_prop("dnm", "rollup", {"function": "show_original",
                                                 "relation_property_name": "Depends on",
                                                 "rollup_property_name": "Name"}),
        Backup_retention_days=_prop("brd", "number", {"format": "number"}),
        Retention=_prop("ret", "formula", {"expression": "format(prop(\"Backup retention days\")) + \" days\""}),
        Last_review=_prop("lrv", "date"),
        Tags=_prop("tag", "multi_select", {"options": [_opt("deploy"), _opt("data"), _opt("catalog")]}),
        Paged=_prop("pag", "checkbox"),
        Runbook=_prop("run", "url"),
        ID=_prop("uid", "unique_id", {"prefix": "SVC"}),
    )
    ds = b.database(root, "Services", schema, key="platform/services", author=owner.id)
    rows = [
        ("Nimbus", chen, "Tier 1", "Internal cloud. New services get a default quota of 8 vCPUs.", 8, [], None),
        ("Atlas", ada, "Tier 2", "Service catalog: ownership of every service is recorded here.", 2, [], None),
        ("Basalt", chen, "Tier 1", "Primary Postgres cluster in eu-west-3.", 16, [], 35),
        ("Skylark", bram, "Tier 1", "The pipeline every production deploy goes through.", 4, ["Nimbus", "Atlas"], None),
    ]
    made: dict[str, str] = {}
    for n, (name, who, tier, summary, quota, deps, retention) in enumerate(rows, start=1):
        dep_ids = [made[d] for d in deps]
        values: dict[str, Any] = {
            "Owner": [_user_value(who)],
            "Tier": _opt(tier, "red" if tier == "Tier 1" else "yellow"),
            "Status": _opt("Live", "green"),
            "Region": rich("eu-west-3"),
            "Quota vCPUs": quota,
            "Depends on": [{"id": d} for d in dep_ids],
            "Dependency count": {"type": "number", "number": len(dep_ids), "function": "count"},
            "Dependency names": {"type": "array", "function": "show_original",
                                 "array": [{"type": "title", "title": [text(d)]} for d in deps]},
            "Last review": {"start": f"2025-0{n}-15", "end": None, "time_zone": None},
            "Tags": [_opt("deploy")] if name == "Skylark" else [_opt("data")] if name == "Basalt" else [_opt("catalog")],
            "Paged": tier == "Tier 1",
            "Runbook": f"https://runbooks.{DOMAIN}/{name.lower()}",
            "ID": {"prefix": "SVC", "number": n},
        }
        if retention is not None:
            values["Backup retention days"] = retention
            values["Retention"] = {"type": "string", "string": f"{retention} days"}
        else:
            values["Backup retention days"] = None
            values["Retention"] = {"type": "string", "string": None}
        page = b.row(ds, name, values, [p(summary)], key=f"platform/row/{name}", author=who.id)
        made[name] = page.id
    # The relation points both ways in Notion; the sandbox keeps it one-way for readability.
    b.discussion(made["Skylark"], [
        (ada.id, rich("Which services does Skylark depend on?")),
        (bram.id, rich("Nimbus and Atlas; both are listed in Depends on.")),
    ], key="platform/discussion/row")


def _known_issues(b: Builder, root: str, owner: Person) -> None:
    dana, emeka, fatima = (person("support", i) for i in range(3))
    schema = _schema(
        Issue=_prop("title", "title"),
        Status=_prop("sta", "status", {"options": [_opt("Open", "red"), _opt("Workaround", "yellow")]}),
        Severity=_prop("sev", "select", {"options": [_opt("High", "red"), _opt("Medium", "yellow")]}),
        Reporter=_prop("rep", "people"),
        Approver=_prop("app", "people"),
        Escalated_via=_prop("esc", "select", {"options": [_opt("Kestrel", "purple")]}),
        Macro=_prop("mac", "rich_text"),
        Reopened=_prop("reo", "number"),
        Escalate_to_lead=_prop("etl", "formula", {"expression": "prop(\"Reopened\") >= 3"}),
        Opened=_prop("opn", "date"),
        Customers=_prop("cus", "multi_select", {"options": [_opt("Enterprise"), _opt("Standard")]}),
        Related=_prop("rel", "relation", {"data_source_id": stable_id("support/issues/data_source"),
                                          "type": "single_property", "single_property": {}}),
    )
    ds = b.database(root, "Known issues", schema, key="support/issues", author=owner.id)
    rows = [
        ("Password reset emails delayed", "Workaround", "High", emeka, fatima, "RESET-7", 1, "2025-02-03",
         "Send the RESET-7 macro while the mail provider is slow.", []),
        ("Refund above the agent limit", "Open", "Medium", fatima, dana, "", 3, "2025-02-10",
         "Refunds above 200 euros need approval from Dana Whitfield.", ["Password reset emails delayed"]),
    ]
    made: dict[str, str] = {}
    for name, status, severity, reporter, approver, macro, reopened, opened, body, related in rows:
        values = {
            "Status": _opt(status), "Severity": _opt(severity),
            "Reporter": [_user_value(reporter, full=False)], "Approver": [_user_value(approver)],
            "Escalated via": _opt("Kestrel", "purple"), "Macro": rich(macro) if macro else [],
            "Reopened": reopened, "Escalate to lead": {"type": "boolean", "boolean": reopened >= 3},
            "Opened": {"start": opened, "end": None, "time_zone": None},
            "Customers": [_opt("Enterprise"), _opt("Standard")],
            "Related": [{"id": made[r]} for r in related],
        }
        page = b.row(ds, name, values, [p(body)], key=f"support/row/{name}", author=reporter.id)
        made[name] = page.id


def _experiments(b: Builder, root: str, owner: Person) -> None:
    gustav, hana, ivan = (person("research", i) for i in range(3))
    schema = _schema(
        Run=_prop("title", "title"),
        Owner=_prop("own", "people"),
        Cluster=_prop("clu", "select", {"options": [_opt("Halcyon", "blue")]}),
        GPUs=_prop("gpu", "number"),
        Hours=_prop("hrs", "number"),
        GPU_hours=_prop("gph", "formula", {"expression": "prop(\"GPUs\") * prop(\"Hours\")"}),
        Needs_reservation=_prop("nre", "formula", {"expression": "prop(\"Hours\") > 48"}),
        Seed=_prop("see", "number"),
        Tracker=_prop("tra", "url"),
        Dataset=_prop("dat", "rich_text"),
        Dates=_prop("dts", "date"),
        Reviewed_by=_prop("rvb", "people"),
        Eval_freeze=_prop("efz", "formula", {"expression": "dateStart(prop(\"Dates\"))"}),
        Baseline=_prop("bas", "relation", {"data_source_id": stable_id("research/experiments/data_source"),
                                           "type": "single_property", "single_property": {}}),
        Baseline_GPUs=_prop("bgp", "rollup", {"function": "sum", "relation_property_name": "Baseline",
                                              "rollup_property_name": "GPUs"}),
    )
    ds = b.database(root, "Experiments", schema, key="research/experiments", author=owner.id)
    rows = [
        ("baseline-1729", hana, 64, 36, None, "Baseline run on Halcyon with seed 1729, tracked in Lodestar."),
        ("long-context-sweep", ivan, 64, 72, "baseline-1729", "Runs longer than 48 hours, so it was reserved."),
    ]
    made: dict[str, str] = {}
    for name, who, gpus, hours, baseline, body in rows:
        values = {
            "Owner": [_user_value(who)], "Cluster": _opt("Halcyon", "blue"), "GPUs": gpus, "Hours": hours,
            "GPU hours": {"type": "number", "number": gpus * hours},
            "Needs reservation": {"type": "boolean", "boolean": hours > 48},
            "Seed": 1729, "Tracker": f"https://lodestar.{DOMAIN}/runs/{name}",
            "Dataset": rich("quarry://datasets/processed/web-2024"),
            "Dates": {"start": "2025-04-01", "end": "2025-04-03", "time_zone": None},
            "Reviewed by": [_user_value(gustav)],
            "Eval freeze": {"type": "date", "date": {"start": "2025-04-01", "end": None, "time_zone": None}},
            "Baseline": [{"id": made[baseline]}] if baseline else [],
            "Baseline GPUs": {"type": "number", "number": 64 if baseline else 0, "function": "sum"},
        }
        page = b.row(ds, name, values, [p(body)], key=f"research/row/{name}", author=who.id)
        made[name] = page.id


# --------------------------------------------------------------------------- build
def build_workspace(*, extra_pages: int = 0, now: Callable[[], datetime] | None = None) -> Workspace:
    """The sample company's workspace; `extra_pages` adds filler pages spread over the teams."""
    ws = Workspace(name=COMPANY) if now is None else Workspace(name=COMPANY, clock=now)
    b = Builder(ws)
    for who in PEOPLE:
        b.user(who.id, who.name, who.email)
    b.user(ws.bot_id, "Tacit", bot=True)

    topic_specs = {"platform": _platform_topics, "support": _support_topics, "research": _research_topics}
    data_sources = {"platform": _services, "support": _known_issues, "research": _experiments}
    for team in TEAMS:
        lead = team.people[0]
        root_blocks: list[Spec] = [
            callout("👋", team.description),
            p(f"Welcome to the {team.title} teamspace. Ask ", _u(lead), " if something here is out of date."),
        ]
        if team.name == "platform":
            root_blocks += [
                h2("Escalation contacts"),
                synced_original("platform/synced/contacts", [
                    p("Primary escalation: ", _u(person("platform", 2)), "."),
                    p("Secondary escalation: ", _u(person("platform", 0)), "."),
                ]),
                raw("ai_block", {"prompt": "Summarise this page"}),
                divider(),
            ]
        if team.name == "support":
            # A copy of platform's contacts, and two synced blocks that reference each other.
            root_blocks += [
                h2("Platform escalation contacts"),
                synced_copy("platform/synced/contacts"),
                synced_original("support/synced/loop-a", [p("Shift notes (part A)."),
                                                          synced_copy("support/synced/loop-b")]),
                synced_original("support/synced/loop-b", [p("Shift notes (part B)."),
                                                          synced_copy("support/synced/loop-a")]),
            ]
        root = b.page({"type": "workspace", "workspace": True}, team.title, root_blocks,
                      key=f"{team.name}/root", author=lead.id, icon="🏠")
        ids = dict(ws.keys)
        topics = topic_specs[team.name]
        for topic in dict.fromkeys(f.topic for f in facts_for(team.name)):
            key = f"{team.name}/{topic}"
            ws.keys[key] = stable_id(key)  # pages may mention each other
        for topic, blocks in topics(b, {**ids, **ws.keys}).items():
            page = b.page({"type": "page_id", "page_id": root.id}, topic, blocks, key=f"{team.name}/{topic}",
                          author=lead.id)
            root.children.append(page.id)
            ws.blocks[page.id] = _child_block(ws, page.id, topic, root.id)
        data_sources[team.name](b, root.id, lead)
        if team.name == "platform":
            index = [h1("Runbook index"), p("Every runbook, in the order we wrote them.")]
            index += [number(f"Runbook {n:03d}: restart step {n} of the Skylark deploy agents") for n in range(1, 131)]
            page = b.page({"type": "page_id", "page_id": root.id}, "Runbook index", index,
                          key="platform/runbook-index", author=lead.id)
            root.children.append(page.id)
            ws.blocks[page.id] = _child_block(ws, page.id, "Runbook index", root.id)
        _discussions(b, ws, team.name)
    b.resolve_synced()
    _filler(b, ws, extra_pages)
    return ws


def _child_block(ws: Workspace, page_id: str, title: str, parent: str):  # type: ignore[no-untyped-def]
    from connectors.sandbox.notion.model import Block

    page = ws.pages[page_id]
    return Block(id=page_id, type="child_page", payload={"title": title}, parent={"type": "page_id", "page_id": parent},
                 created=page.created, edited=page.edited, author=page.author,
                 has_children_override=bool(page.children))


def _discussions(b: Builder, ws: Workspace, team: str) -> None:
    """The few discussed facts asked on their topic pages, answered by a teammate."""
    for i, fact in ((i, f) for i, f in enumerate(facts_for(team)) if f.discussed):
        asker, answerer = person(team, i + 1), person(team, i)
        page = ws.keys[f"{team}/{fact.topic}"]
        b.discussion(page, [
            (asker.id, rich(fact.question)),
            (answerer.id, rich(f"{fact.answer[0].upper()}{fact.answer[1:]}. {fact.statement}")),
        ], key=f"{team}/discussion/{i}")
    # One discussion on a block (the page's first topic heading), not on the page.
    first = facts_for(team)[0]
    page = ws.pages[ws.keys[f"{team}/{first.topic}"]]
    heading = next(bid for bid in page.children if ws.blocks[bid].type == "heading_1")
    b.discussion(heading, [
        (person(team, 2).id, rich("Is this still current?")),
        (person(team, 0).id, rich("Yes, we went through it again this quarter.")),
    ], key=f"{team}/block-discussion", block=True)
    # A single comment with no reply.
    b.discussion(ws.keys[f"{team}/root"], [(person(team, 1).id, rich("Thanks for keeping this page tidy!"))],
                 key=f"{team}/comment")


def _filler(b: Builder, ws: Workspace, count: int) -> None:
    """Archive pages: realistic but fact-free, so a benchmark can scale the workspace."""
    if count <= 0:
        return
    for n in range(count):
        team = TEAMS[n % len(TEAMS)]
        who = team.people[n % len(team.people)]
        root = ws.keys[f"{team.name}/root"]
        page = b.page({"type": "page_id", "page_id": root}, f"Meeting notes {n:05d}", [
            h2("Agenda"),
            bullet(f"Status of item {n}"),
            bullet("Open questions"),
            h2("Notes"),
            p(f"{who.name} summarised week {n % 52 + 1}. Nothing here changes a policy."),
        ], key=f"filler/{n}", author=who.id)
        ws.pages[root].children.append(page.id)
        ws.blocks[page.id] = _child_block(ws, page.id, page.title, root)
        if n % 10 == 0:
            b.discussion(page.id, [(who.id, rich(f"Follow-up for meeting {n}?")),
                                   (team.people[0].id, rich("Tracked in the next agenda."))],
                         key=f"filler/{n}/discussion")


__all__ = ["TEAMSPACES", "build_workspace"]
