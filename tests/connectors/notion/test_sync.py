"""The Notion connector against the sandbox over real HTTP, through the official SDK (no database)."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.base import AuthError, CheckpointMark, Document, Failure, Interaction, Tombstone, drive
from connectors.http import HttpBudget
from connectors.notion import NotionCheckpoint, NotionConnector
from connectors.sandbox.company import FACTS, TEAMS, discussed_for, person
from connectors.sandbox.notion import TEAMSPACES, NotionSandbox, build_workspace
from tacit.config import SourceConfig

_keys = itertools.count()


def make(sb: NotionSandbox, team: str = "platform", **settings: Any) -> NotionConnector:
    settings.setdefault("teamspaces", TEAMSPACES)
    source = SourceConfig(name="notion", kind="notion", team=team, token=sb.token, base_url=sb.url, **settings)
    return NotionConnector(source, HttpBudget(f"notion-test-{next(_keys)}", rate=settings.get("rate_limit")))


def by_type(items: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for item in items:
        out.setdefault(type(item).__name__, []).append(item)
    return out


def docs_of(items: list[Any]) -> dict[str, Document]:
    return {i.external_id: i for i in items if isinstance(i, Document)}


def block_reads(sb: NotionSandbox) -> set[str]:
    """Ids whose children were listed."""
    return {p.split("/")[3] for m, p in sb.requests if p.startswith("/v1/blocks/") and p.endswith("/children")}


# --------------------------------------------------------------------------- full sync
def test_full_sync_reads_every_page_row_and_discussion(sandbox: NotionSandbox) -> None:
    items, checkpoint = drive(make(sandbox, comments="blocks").sync(None))
    kinds = by_type(items)
    assert "Failure" not in kinds and "Tombstone" not in kinds
    ids = {i.external_id for i in items if isinstance(i, Document | Interaction)}
    assert ids == sandbox.expected_ids("blocks")
    assert len(kinds["Document"]) == len(sandbox.workspace.listed_pages()) == 27
    assert len(kinds["Interaction"]) == 13  # 6 facts asked + 3 block discussions + 3 comments + 1 on a row
    assert isinstance(checkpoint, NotionCheckpoint) and checkpoint.pages == 27
    docs = docs_of(items)
    key = sandbox.page_id

    assert docs[key("platform/On-call")].text == """# On-call

The rotation changes weekly; the schedule lives in the table below.

## Handoff

The outgoing engineer writes a short summary of open incidents and noisy alerts before the week ends. The on-call handoff happens every Monday at 09:30 in the #pager-handoff channel. The incoming engineer reads the summary, asks questions there and only then takes the pager.

## Response times

Pages are graded by severity, and the clock starts when the alert fires, not when someone notices it. A SEV1 incident must be acknowledged within 5 minutes. Lower severities can wait for working hours unless a customer is blocked.

## Rotation

| Week | Primary | Secondary |
|---|---|---|
| 1 | Ada Moreau | Bram Okafor |
| 2 | Bram Okafor | Chen Liu |
| 3 | Chen Liu | Ada Moreau |

> 🚨 SEV1: acknowledge within 5 minutes, then open an incident channel.

### Escalation contacts

Primary escalation: @Chen Liu.

Secondary escalation: @Ada Moreau."""

    skylark = docs[key("platform/row/Skylark")]
    assert skylark.text == """# Skylark

- **Dependency count**: 2
- **Dependency names**: Nimbus, Atlas
- **Depends on**: Nimbus, Atlas
- **ID**: SVC-4
- **Last review**: 2025-04-15
- **Owner**: Bram Okafor
- **Paged**: Yes
- **Quota vCPUs**: 4
- **Region**: eu-west-3
- **Runbook**: https://runbooks.lumenlabs.example/skylark
- **Status**: Live
- **Tags**: deploy
- **Tier**: Tier 1

The pipeline every production deploy goes through."""
    assert skylark.metadata == {"object": "row", "blocks": 1, "teamspace": "Platform Engineering",
                                "data_source": "Services", "data_source_id": key("platform/services")}
    assert skylark.parent_external_id == key("platform/root")  # the page that holds the database

    # Formulas, rollups, people given only by id (resolved by name), relations by title, date ranges.
    issue = docs[key("support/row/Refund above the agent limit")].text
    assert "- **Reporter**: Fatima Rahimi" in issue and "- **Related**: Password reset emails delayed" in issue
    assert "- **Escalate to lead**: Yes" in issue
    sweep = docs[key("research/row/long-context-sweep")].text
    assert "- **GPU hours**: 4608" in sweep and "- **Dates**: 2025-04-01 → 2025-04-03" in sweep
    assert "- **Baseline GPUs**: 64" in sweep and "- **Baseline**: baseline-1729" in sweep

    # More than 100 children, at the top of a page and inside a toggle.
    runbook = docs[key("platform/runbook-index")].text
    assert "\n1. Runbook 001: restart step 1 of the Skylark deploy agents\n" in runbook
    assert runbook.endswith("\n130. Runbook 130: restart step 130 of the Skylark deploy agents")
    papers = docs[key("research/Papers")].text
    assert "- Review log\n  - Review 1: draft 1 discussed, 2 action items\n" in papers
    assert papers.endswith("  - Review 105: draft 105 discussed, 1 action items")
    assert "#### Reviewer guidelines\n\nRead the draft before the meeting and leave comments inline." in papers
    assert "Next review: 2025-06-04, led by @Gustav Lindqvist." in papers

    data = docs[key("research/Data")].text
    assert "- datasets/\n  - raw/\n    - web-2024/\n    - code-2024/\n  - processed/\n- evals/" in data
    assert "![Quarry bucket layout](https://assets.lumenlabs.example/quarry-layout.png)" in data
    assert "[Data retention policy](https://files.lumenlabs.example/data-policy.pdf)" in data
    cloud = docs[key("platform/Internal cloud")].text
    assert "$$\nq_{\\text{default}} = 8\\ \\text{vCPUs}\n$$" in cloud
    assert "A service with $n$ replicas may request up to $8n$ vCPUs." in cloud
    assert "see Deploy policy for how services reach production" in cloud  # a page mention
    assert "[Nimbus status board](https://status.lumenlabs.example/nimbus)" in cloud
    deploy = docs[key("platform/Deploy policy")].text
    assert "```bash\nskylark deploy --service api --env production\n```\nDeploying the API with Skylark" in deploy
    assert "- [x] Change reviewed by a second engineer\n- [x] Feature flag created for risky changes\n" \
           "- [ ] Rollback plan written down" in deploy
    assert "Maintained by @Bram Okafor." in deploy
    tools = docs[key("support/Tools")].text
    assert "Harbor's changelog: [Harbor changelog](https://harbor.example/changelog)." in tools
    databases = docs[key("platform/Databases")].text
    assert "- Connection details\n  Use the read replica for analytics.\n\n  ```shell\n" in databases
    assert "2. Restore into a scratch cluster.\n   1. Check row counts against the primary." in databases

    # Child pages are documents of their own, linked to their parent (through a toggle, too).
    assert docs[key("platform/failover-drill")].parent_external_id == key("platform/Databases")
    assert docs[key("platform/drill-timeline")].parent_external_id == key("platform/failover-drill")
    assert docs[key("support/escalation-template")].parent_external_id == key("support/Escalation")
    assert f"[Basalt failover drill](https://www.notion.so/{key('platform/failover-drill').replace('-', '')})" \
        in databases
    for team in TEAMS:
        assert docs[key(f"{team.name}/root")].parent_external_id is None

    # Synced blocks: a copy shows its original; two copies of each other do not loop.
    support = docs[key("support/root")].text
    assert "### Platform escalation contacts\n\nPrimary escalation: @Chen Liu." in support
    assert "Shift notes (part A).\n\nShift notes (part B).\n\nShift notes (part B).\n\nShift notes (part A)." \
        in support
    assert docs[key("support/root")].metadata["skipped_blocks"] == {"synced_block_cycle": 2}
    # An unknown block type is skipped and counted.
    assert docs[key("platform/root")].metadata["skipped_blocks"] == {"ai_block": 1}


def test_permissions_follow_the_teamspace(sandbox: NotionSandbox) -> None:
    items, _ = drive(make(sandbox).sync(None))
    docs = docs_of(items)
    for doc in docs.values():
        team = next(t.name for t in TEAMS if t.title == doc.metadata["teamspace"])
        assert doc.acl == [f"team:{team}"], doc.title
    for item in items:
        if isinstance(item, Interaction):
            assert item.acl == docs[item.document_external_id].acl
    # Without a mapping every top-level page belongs to the source's own team; published pages are public.
    sandbox.workspace.pages[sandbox.page_id("research/Cluster")].public = True
    items, _ = drive(make(sandbox, team="support", teamspaces={}).sync(None))
    acls = {d.title: d.acl for d in docs_of(items).values()}
    assert acls["Cluster"] == ["team:support", "public"]
    assert {tuple(a) for t, a in acls.items() if t != "Cluster"} == {("team:support",)}


def test_discussions_ask_the_discussed_facts_and_reply_with_the_answers(sandbox: NotionSandbox) -> None:
    items, _ = drive(make(sandbox).sync(None))
    threads = [i for i in items if isinstance(i, Interaction)]
    assert {t.metadata["on"] for t in threads} == {"page"}  # page-level only by default
    by_question = {t.messages[0].text: t for t in threads}
    assert not any(f.question in by_question for f in FACTS if not f.discussed)
    for team in TEAMS:
        for i, fact in enumerate(discussed_for(team.name)):
            thread = by_question[fact.question]
            assert thread.kind == "thread"
            assert thread.document_external_id == sandbox.page_id(f"{team.name}/{fact.topic}")
            asker, answerer = thread.messages
            assert (asker.author, asker.role) == (person(team.name, i + 1).name, "user")
            assert (answerer.author, answerer.role) == (person(team.name, i).name, "assistant")
            assert fact.answer.lower() in answerer.text.lower() and fact.statement in answerer.text
    single = by_question["Thanks for keeping this page tidy!"]
    assert single.kind == "comment" and len(single.messages) == 1


def test_full_sync_costs_the_minimum_the_api_allows(sandbox: NotionSandbox) -> None:
    connector = make(sandbox)
    drive(connector.sync(None))
    minimum = sandbox.minimum_requests("pages")
    # The minimum, plus one query per data source (rows search has not indexed yet are not missed).
    assert sandbox.request_count == minimum["total"] + len(sandbox.workspace.data_sources)
    assert connector.http.stats.requests == sandbox.request_count
    assert sandbox.count("/v1/users", "GET") == 1  # names come from one read of the directory
    # A synced original shown on three pages is read once.
    original = sandbox.page_id("platform/synced/contacts")
    assert sandbox.count(f"/v1/blocks/{original}/children") == 1


# --------------------------------------------------------------------------- incremental
def test_unchanged_pages_cost_no_request_and_an_edit_reads_only_that_page(sandbox: NotionSandbox) -> None:
    connector = make(sandbox)
    _, checkpoint = drive(connector.sync(None))
    sandbox.reset_counts()
    items, checkpoint = drive(connector.sync(checkpoint))
    assert items == []
    assert sandbox.request_count == 1 + 3  # one search page, one query per data source

    page = sandbox.page_id("support/SLAs")
    sandbox.edit_page(page, "Holidays do not count as business days.", at=datetime.now(UTC) - timedelta(minutes=30))
    sandbox.reset_counts()
    items, checkpoint = drive(connector.sync(checkpoint))
    docs = docs_of(items)
    assert list(docs) == [page]
    assert docs[page].text.endswith("Holidays do not count as business days.")
    table = next(b for b in sandbox.workspace.pages[page].children if sandbox.workspace.blocks[b].type == "table")
    assert block_reads(sandbox) == {page, table}
    assert sandbox.request_count == 4 + 2 + 1 + 1  # listing, its blocks (and its table's), comments, users

    sandbox.reset_counts()
    assert drive(connector.sync(checkpoint))[0] == []  # settled: not read again
    assert block_reads(sandbox) == set()


def test_a_page_edited_in_the_current_minute_is_read_once_more(sandbox: NotionSandbox) -> None:
    """`last_edited_time` is rounded to the minute: a second edit in that minute would look unchanged."""
    connector = make(sandbox, overlap_minutes=5)
    _, checkpoint = drive(connector.sync(None))
    page = sandbox.page_id("research/Data")
    sandbox.edit_page(page, "First edit.")
    _, checkpoint = drive(connector.sync(checkpoint))
    sandbox.edit_page(page, "Second edit, same minute.")  # last_edited_time does not change
    items, _ = drive(connector.sync(checkpoint))
    assert docs_of(items)[page].text.endswith("First edit.\n\nSecond edit, same minute.")


def test_trashed_and_unshared_pages_become_tombstones_with_their_discussions(sandbox: NotionSandbox) -> None:
    connector = make(sandbox)
    _, checkpoint = drive(connector.sync(None))
    gone = sandbox.delete_page(sandbox.page_id("platform/Databases"))
    gone += sandbox.unshare_page(sandbox.page_id("support/Tools"))
    assert len(gone) == 4  # Databases, its drill page and the drill's timeline; Tools
    discussions = {c.discussion_id for c in sandbox.workspace.comments if c.parent.get("page_id") in gone}
    assert len(discussions) == 1  # the one on Databases (Basalt); nobody discussed Tools
    sandbox.reset_counts()
    items, checkpoint = drive(connector.sync(checkpoint))
    assert {i.external_id for i in items if isinstance(i, Tombstone)} == set(gone) | discussions
    assert not [i for i in items if isinstance(i, Document | Interaction)]
    assert sandbox.request_count == 4 + len(gone)  # the listing, and one check of each missing page
    assert checkpoint.pages == 27 - 4

    sandbox.restore_page(sandbox.page_id("platform/Databases"))
    items, _ = drive(connector.sync(checkpoint))
    back = {sandbox.page_id(k) for k in ("platform/Databases", "platform/failover-drill", "platform/drill-timeline")}
    assert set(docs_of(items)) == back


def test_a_page_moved_to_another_teamspace_takes_its_subtree_with_it(sandbox: NotionSandbox) -> None:
    connector = make(sandbox)
    _, checkpoint = drive(connector.sync(None))
    page = sandbox.page_id("platform/Databases")
    below = {sandbox.page_id("platform/failover-drill"), sandbox.page_id("platform/drill-timeline")}
    sandbox.move_page(page, sandbox.page_id("research/root"))  # no edit time changes anywhere
    items, checkpoint = drive(connector.sync(checkpoint))
    docs = docs_of(items)
    assert set(docs) == {page} | below
    assert all(d.acl == ["team:research"] and d.metadata["teamspace"] == "Research" for d in docs.values())
    assert docs[page].parent_external_id == sandbox.page_id("research/root")
    threads = [i for i in items if isinstance(i, Interaction)]
    assert threads and all(t.acl == ["team:research"] for t in threads)
    assert drive(connector.sync(checkpoint))[0] == []


def test_early_stopping_listing_and_a_complete_one_every_n_syncs() -> None:
    with NotionSandbox(build_workspace(extra_pages=250)) as sb:
        connector = make(sb, tombstone_scan_every=2)
        _, checkpoint = drive(connector.sync(None))
        page = sb.page_id("platform/Deploy policy")
        sb.edit_page(page, "Freeze exceptions need a director.")
        trashed = sb.page_id("filler/7")
        sb.delete_page(trashed)
        sb.reset_counts()
        items, checkpoint = drive(connector.sync(checkpoint))  # partial: stops at the last sync's newest edit
        assert set(docs_of(items)) == {page} and not any(isinstance(i, Tombstone) for i in items)
        assert sb.count("/v1/search") == 1  # of the 3 pages of results
        assert checkpoint.partial_listings == 1
        items, checkpoint = drive(connector.sync(checkpoint))  # complete: finds the deletion
        assert trashed in {i.external_id for i in items if isinstance(i, Tombstone)}
        assert checkpoint.partial_listings == 0


def test_checkpoint_marks_let_a_sync_resume_without_gap_or_repeat(sandbox: NotionSandbox) -> None:
    connector = make(sandbox)
    gen = connector.sync(None)
    first: list[Any] = []
    for item in gen:
        if isinstance(item, CheckpointMark):
            mark = item.checkpoint
            break
        first.append(item)
    gen.close()
    assert len(docs_of(first)) == NotionConnector.MARK_EVERY
    rest, _ = drive(make(sandbox).sync(mark))
    assert set(docs_of(first)).isdisjoint(docs_of(rest))
    assert set(docs_of(first)) | set(docs_of(rest)) == {p.id for p in sandbox.workspace.listed_pages()}


# --------------------------------------------------------------------------- bad input, errors
def test_a_bad_page_is_a_failure_and_the_rest_completes(sandbox: NotionSandbox) -> None:
    papers = sandbox.page_id("research/Papers")
    sandbox.corrupt_page(papers)
    connector = make(sandbox)
    items, checkpoint = drive(connector.sync(None))
    failures = [i for i in items if isinstance(i, Failure)]
    assert len(failures) == 1 and failures[0].external_id == papers and not failures[0].retryable
    assert "'Papers'" in failures[0].message and "rich text should be a list" in failures[0].message
    papers_threads = {c.discussion_id for c in sandbox.workspace.comments if c.parent.get("page_id") == papers}
    ids = {i.external_id for i in items if isinstance(i, Document | Interaction)}
    assert ids == sandbox.expected_ids("pages") - {papers} - papers_threads
    # Not remembered as read: the next sync tries it again.
    items, _ = drive(connector.sync(checkpoint))
    assert [i.external_id for i in items] == [papers]


def test_401_is_an_auth_error_and_the_token_is_never_logged(sandbox: NotionSandbox,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    connector = make(sandbox)
    sandbox.inject(401, count=3)
    with pytest.raises(AuthError) as info:
        connector.check()
    assert "401 unauthorized" in str(info.value) and sandbox.token not in str(info.value)
    with pytest.raises(AuthError):
        drive(connector.sync(None))
    assert sandbox.token not in caplog.text
    wrong = make(sandbox)
    wrong.settings.token = type(wrong.settings.token)("ntn_wrong")
    with pytest.raises(AuthError):
        wrong.check()


def test_the_budget_keeps_under_the_sandbox_rate_limit() -> None:
    with NotionSandbox(rate_limit=100, burst=3) as sb:
        connector = make(sb, rate_limit=100)
        items, _ = drive(connector.sync(None))
        assert {i.external_id for i in items if isinstance(i, Document | Interaction)} == sb.expected_ids("pages")
        assert sb.by_status[429] == 0 and connector.http.stats.throttled == 0


def test_the_sandbox_answers_429_with_an_integer_retry_after() -> None:
    with NotionSandbox(rate_limit=1, burst=1) as sb:
        headers = {"Authorization": f"Bearer {sb.token}", "Notion-Version": "2025-09-03"}
        with httpx.Client(base_url=sb.url, headers=headers) as client:
            assert client.get("/v1/users/me").status_code == 200
            answer = client.get("/v1/users/me")
        assert answer.status_code == 429
        assert answer.json()["code"] == "rate_limited" and answer.headers["Retry-After"] == "1"
        # Through the budget, a throttled request waits and succeeds.
        connector = make(sb)
        connector.check()
        assert connector.http.stats.throttled >= 1 and connector.http.stats.by_status[200] == 1


def test_transient_errors_are_retried_by_the_http_layer(sandbox: NotionSandbox) -> None:
    sandbox.inject(502, count=1)  # an HTML gateway page, which the SDK does not retry on POST
    sandbox.inject(529, count=1, retry_after=0)
    sandbox.inject(500, count=1)
    connector = make(sandbox)
    connector.http.policy.backoff_base = 0.01
    items, _ = drive(connector.sync(None))
    assert {i.external_id for i in items if isinstance(i, Document | Interaction)} == sandbox.expected_ids("pages")
    assert connector.http.stats.retries == 3


def test_sandbox_rejects_what_notion_rejects(sandbox: NotionSandbox) -> None:
    headers = {"Authorization": f"Bearer {sandbox.token}", "Notion-Version": "2025-09-03"}
    with httpx.Client(base_url=sandbox.url, headers=headers) as client:
        assert client.post("/v1/search", json={"page_size": 101}).json()["code"] == "validation_error"
        assert client.get("/v1/pages/00000000-0000-4000-8000-0000000000ff").json()["code"] == "object_not_found"
        assert client.get("/v1/users/me", headers={"Notion-Version": "2022-06-28"}).status_code == 400
        assert client.get("/v1/users/me", headers={"Authorization": "Bearer nope"}).json()["code"] == "unauthorized"
        first = client.post("/v1/search", json={"page_size": 10}).json()
        assert first["has_more"] and len(first["results"]) == 10 and first["type"] == "page_or_data_source"
        second = client.post("/v1/search", json={"page_size": 10, "start_cursor": first["next_cursor"]}).json()
        assert {r["id"] for r in first["results"]}.isdisjoint(r["id"] for r in second["results"])


# --------------------------------------------------------------------------- targeted reads
def test_fetch_rereads_only_what_it_is_given(sandbox: NotionSandbox) -> None:
    connector = make(sandbox)
    page = sandbox.page_id("platform/Deploy policy")
    items = list(connector.fetch([page.replace("-", "")]))
    kinds = Counter(type(i).__name__ for i in items)
    assert kinds == {"Document": 1, "Interaction": 1}  # the page and its discussion of the deploy freeze
    assert sandbox.count("/v1/search") == 0
    doc = next(i for i in items if isinstance(i, Document))
    assert doc.external_id == page and doc.acl == ["team:platform"]
    assert doc.parent_external_id == sandbox.page_id("platform/root")

    gone = sandbox.page_id("platform/Databases")
    sandbox.delete_page(gone)
    assert [(type(i).__name__, i.external_id) for i in connector.fetch([gone])] == [("Tombstone", gone)]
    missing = "00000000-0000-4000-8000-0000000000ff"
    assert [type(i).__name__ for i in connector.fetch([missing])] == ["Tombstone"]

    rows = list(connector.fetch([f"data_source:{sandbox.page_id('research/experiments')}"]))
    assert {d.title for d in rows if isinstance(d, Document)} == {"baseline-1729", "long-context-sweep"}

    heading = next(c.parent["block_id"] for c in sandbox.workspace.comments if c.parent["type"] == "block_id")
    owner = sandbox.workspace.block_page(heading)
    [thread] = connector.fetch([f"discussions:{owner}/{heading}"])
    assert isinstance(thread, Interaction) and thread.metadata == {
        "discussion_id": thread.external_id, "on": "block", "block_id": heading}
    assert thread.document_external_id == owner


def test_fetch_turns_a_bad_page_into_a_failure(sandbox: NotionSandbox) -> None:
    page = sandbox.page_id("support/SLAs")
    sandbox.corrupt_page(page)
    items = list(make(sandbox).fetch([page, sandbox.page_id("support/Refunds")]))
    assert [type(i).__name__ for i in items][:2] == ["Failure", "Document"]


def test_workers_sharing_a_redis_budget_stay_within_the_integration_rate(redis_url: str) -> None:
    """Two syncs of one integration at once (two workers) draw from one budget in Redis."""
    import threading
    import uuid

    key = f"notion-shared-{uuid.uuid4().hex[:8]}"
    with NotionSandbox(rate_limit=80, burst=4) as sb:
        def worker(results: list[Any]) -> None:
            source = SourceConfig(name="notion", kind="notion", team="platform", token=sb.token, base_url=sb.url,
                                  teamspaces=TEAMSPACES)
            connector = NotionConnector(source, HttpBudget(key, rate=80, burst=3, redis_url=redis_url))
            results.append(drive(connector.sync(None))[0])

        results: list[Any] = []
        threads = [threading.Thread(target=worker, args=(results,)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 2
        for items in results:
            assert {i.external_id for i in items if isinstance(i, Document | Interaction)} == sb.expected_ids("pages")
        assert sb.by_status[429] == 0  # one shared bucket: together they never outran the sandbox's limit


def test_an_integration_without_comment_or_user_capabilities_still_syncs_pages(sandbox: NotionSandbox) -> None:
    connector = make(sandbox)
    _, checkpoint = drive(connector.sync(None))
    sandbox.forbidden |= {"/v1/comments", "/v1/users"}
    page = sandbox.page_id("support/Escalation")
    sandbox.edit_page(page, "Kestrel is down on Sundays.", at=datetime.now(UTC) - timedelta(minutes=30))
    sandbox.reset_counts()
    items, checkpoint = drive(connector.sync(checkpoint))
    assert [type(i).__name__ for i in items] == ["Document"]  # no failure, no tombstone for its discussions
    assert sandbox.count("/v1/comments") == 1  # tried once, then not again in this sync
    doc = items[0]
    assert doc.text.endswith("Kestrel is down on Sundays.") and doc.authors == []  # names unknown without users
    sandbox.forbidden.clear()
    assert checkpoint.known_pages()[page].discussions  # kept for when comments are readable again
