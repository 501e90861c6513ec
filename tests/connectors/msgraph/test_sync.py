"""The Graph connector against the fake Graph: content, deltas, deletions, throttling, $batch, errors, fetch."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from connectors.base import (
    AuthError,
    CheckpointMark,
    ConfigError,
    Document,
    Failure,
    Interaction,
    Tombstone,
)
from connectors.msgraph import ids
from connectors.sandbox.company import FACTS, discussed_for, facts_for
from connectors.sandbox.graph import GraphSandbox, files
from connectors.sandbox.graph.workspace import Workspace, add_bulk_files
from tests.connectors.harness_msgraph import connector, records, run


def test_full_sync_brings_files_mail_and_teams_with_the_right_text(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    c = connector(sb, ws, static=False)
    items, cp = run(c)
    got = records(items)
    assert {k for k, r in got.items() if not isinstance(r, Tombstone)} == ws.expected_ids("platform")
    space = ws.teams["platform"]
    docs = {r.metadata.get("path"): r for r in got.values() if isinstance(r, Document) and "path" in r.metadata}
    # every format carries the facts written inside it
    for path, fact in [("/Handbook/Deploy policy.docx", FACTS[0]), ("/Handbook/On-call.pptx", FACTS[2]),
                       ("/Handbook/Databases.xlsx", FACTS[4]), ("/Handbook/Internal cloud.pdf", FACTS[6])]:
        assert fact.statement in " ".join(docs[path].text.split()), path  # a PDF wraps long lines
    assert f"## Deploy policy\n\n- {FACTS[0].paragraph}" in \
        docs["/Team overview.html"].text
    assert "tracking" not in docs["/Team overview.html"].text  # <script> dropped
    assert docs["/README.md"].text.startswith("# Platform Engineering\n")
    assert "Reminder: The weekly deploy freeze" in docs["/Notes/Meeting notes.txt"].text
    deploy = docs["/Handbook/Deploy policy.docx"]
    assert deploy.metadata["site"] == "Platform Engineering" and deploy.metadata["drive"] == "Documents"
    assert deploy.metadata["folder"] == "/Handbook" and deploy.metadata["file_type"] == "docx"
    assert deploy.acl == ["group:platform@lumenlabs.example", "user:ada@lumenlabs.example",
                          "user:bram@lumenlabs.example", "user:chen@lumenlabs.example"]
    assert "public" in docs["/Team overview.html"].acl and "group:everyone" in docs["/README.md"].acl
    assert deploy.authors == ["ada@lumenlabs.example"]
    # exactly the corrupt .docx and the encrypted .pdf fail, each alone
    failures = [r for r in items if isinstance(r, Failure)]
    assert {f.external_id for f in failures} == space.failing
    assert sorted(f.message.split(": ", 1)[1] for f in failures) == [
        "cannot read Budget 2025.docx as .docx: corrupt or truncated file (BadZipFile)",
        "the PDF is encrypted (password protected)"]
    # a mail conversation: question, answer (quoted history stripped), thanks (Gmail quote stripped)
    fact = facts_for("platform")[0]
    thread = next(r for r in got.values() if isinstance(r, Interaction) and r.metadata.get("source") == "mail"
                  and r.metadata["subject"] == "Question about deploy policy")
    assert [(m.role, m.author) for m in thread.messages] == [
        ("user", "dana@lumenlabs.example"), ("assistant", "ada@lumenlabs.example"), ("user", "dana@lumenlabs.example")]
    assert thread.messages[0].text == f"Hi Platform Engineering team,\n\n{fact.question}\n\nThanks,\nDana"
    assert thread.messages[1].text == f"Hi Dana,\n\n{fact.statement}\n\nBest,\nAda Moreau"
    assert thread.messages[2].text == "Thanks, that helps!"
    assert thread.kind == "thread" and thread.acl == ["group:platform-help@lumenlabs.example"]
    digest = next(r for r in got.values() if isinstance(r, Document) and r.metadata.get("source") == "mail")
    assert digest.title == "Platform Engineering handbook digest"
    assert all(f.statement in digest.text for f in facts_for("platform"))
    # a Teams thread, linked to its channel
    teams_threads = [r for r in got.values() if isinstance(r, Interaction) and r.metadata.get("source") == "teams"]
    assert len(teams_threads) == len(discussed_for("platform")) < len(facts_for("platform"))
    first = next(t for t in teams_threads if t.messages[0].text == facts_for("platform")[0].question)
    assert [m.text for m in first.messages] == [fact.question, fact.statement, "Great, thank you!"]
    assert [m.role for m in first.messages] == ["user", "assistant", "user"]
    assert first.metadata["channel"] == "Help" and first.metadata["team"] == "Platform Engineering"
    assert first.metadata["channel_id"] == space.channels["Help"]
    # checkpoint: one delta link per drive, mail folder and channel; nothing pending
    assert sorted(k.split(":")[0] for k in cp.delta) == ["channel", "drive", "mail", "mail"]
    assert cp.pending == {} and cp.watermarks == {}
    assert sb.counts["token"] == 1  # one token for check() and sync()
    assert c.sync_stats["batches"] >= 2 and c.sync_stats["unreadable"] == 2


def test_unsupported_files_are_skipped_and_counted(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    c = connector(sb, ws, "support")
    items, _ = run(c)
    assert c.sync_stats["skipped"] == {"unsupported type .png": 1}
    (logo,) = ws.teams["support"].skipped
    assert records(items)[logo] == Tombstone(external_id=logo, reason="skipped: unsupported type .png")
    assert sb.counts["download"] == len(ws.teams["support"].documents)  # the PNG is never downloaded


def test_size_cap_skips_large_files(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    c = connector(sb, ws, max_file_bytes=4000)
    items, _ = run(c)
    docs = [r for r in items if isinstance(r, Document) and r.metadata.get("source") == "drive"]
    assert {d.metadata["file_type"] for d in docs} == {"html", "md", "txt", "pdf"}  # small files only
    assert c.sync_stats["skipped"]["larger than max_file_bytes"] == 4  # docx, pptx, xlsx and the corrupt docx


def test_incremental_sync_reads_only_what_changed(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    st, space = sb.state, ws.teams["platform"]
    c = connector(sb, ws)
    _, cp = run(c)
    before = sb.requests_served()
    again, cp = run(c, cp)
    assert [r for r in again if not isinstance(r, CheckpointMark)] == []
    # check(): site, its drives, the team's drive; sync(): drive delta, inbox and sent items delta,
    # team, channels, channel delta — one request per scope when nothing changed — and one $batch
    # re-reading the replies of the channel's known threads (a reply does not bring its root back)
    assert sb.requests_served() - before == 10
    # edit a file, delete another, answer in mail, reply in Teams, delete a Teams thread
    readme = space.items["README.md"]
    st.edit_file(readme, files.md_bytes("Platform Engineering", [("About", ["Deploys now run on Tuesdays."])]))
    st.delete_item(space.items["Notes/Meeting notes.txt"])
    box = space.mailbox
    conv = next(m for m in st.mails.values() if m.mailbox == box and m.subject == "Question about databases")
    ada = next(p for p in st.mails.values() if p.sender.email == "ada@lumenlabs.example").sender
    st.add_mail(box, "sentitems", subject="RE: Question about databases", sender=ada, to=[conv.sender],
                conversation_id=conv.conversation_id, html="<p>Also: backups are tested monthly.</p>")
    roots = [m for m in st.messages.values() if m.team_id == space.team_id and m.reply_to is None]
    st.post_message(space.team_id, roots[0].channel_id, "<p>Follow-up: see the runbook.</p>",
                    author=roots[0].author, reply_to=roots[0].id)
    st.delete_message(roots[1].id)
    changed, cp = run(c, cp)
    got = records(changed)
    drive_id = space.drive_id
    assert set(got) == {ids.drive_item(drive_id, readme), ids.drive_item(drive_id, space.items["Notes/Meeting notes.txt"]),
                        ids.conversation(box, conv.conversation_id),
                        ids.channel_thread(space.team_id, roots[0].channel_id, roots[0].id),
                        ids.channel_thread(space.team_id, roots[1].channel_id, roots[1].id)}
    assert "Deploys now run on Tuesdays." in got[ids.drive_item(drive_id, readme)].text
    assert isinstance(got[ids.drive_item(drive_id, space.items["Notes/Meeting notes.txt"])], Tombstone)
    assert got[ids.conversation(box, conv.conversation_id)].messages[-1].text == "Also: backups are tested monthly."
    reply_thread = got[ids.channel_thread(space.team_id, roots[0].channel_id, roots[0].id)]
    assert reply_thread.messages[-1].text == "Follow-up: see the runbook."
    assert isinstance(got[ids.channel_thread(space.team_id, roots[1].channel_id, roots[1].id)], Tombstone)


def test_expired_delta_token_restarts_that_drive_from_scratch(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    c = connector(sb, ws, mailboxes=[], teams=[])
    _, cp = run(c)
    sb.expire_delta_tokens()
    items, cp2 = run(c, cp)
    assert c.sync_stats["delta_restarts"] == 1
    assert {r.external_id for r in items if isinstance(r, Document)} == ws.teams["platform"].documents
    assert cp2.delta != cp.delta


def test_cursors_of_another_server_are_dropped(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    c = connector(sb, ws, mailboxes=[], teams=[])
    _, cp = run(c)
    moved = cp.model_copy(deep=True)
    moved.delta = {k: v.replace(sb.url, "http://127.0.0.1:9") for k, v in moved.delta.items()}
    items, cp2 = run(c, moved)
    assert c.sync_stats["foreign_cursors_dropped"] == 1
    assert {r.external_id for r in items if isinstance(r, Document)} == ws.teams["platform"].documents
    assert all(v.startswith(sb.url) for v in cp2.delta.values())


def test_channel_without_delta_falls_back_to_last_modified(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    space = ws.teams["research"]
    reading = space.channels["Reading group"]
    sb.state.clock += timedelta(hours=1)
    newer = sb.state.post_message(space.team_id, reading, "<p>Who presents next week?</p>",
                                  author=sb.state.messages[next(iter(sb.state.messages))].author)
    space.threads.add(ids.channel_thread(space.team_id, reading, newer.id))
    c = connector(sb, ws, "research", sites=[], mailboxes=[])
    items, cp = run(c)
    key = f"channel:{space.team_id}:{reading}"
    assert c.sync_stats["channels_without_delta"] == 1 and key in cp.watermarks and key not in cp.delta
    threads = [r for r in items if isinstance(r, Interaction)]
    assert {t.metadata["channel"] for t in threads} == {"Help", "Reading group"}
    assert {t.external_id for t in threads} == {t for t in space.threads if t.startswith("teams:")}
    again, cp = run(c, cp)
    # Only the chains inside the overlap window before the watermark are read again, unchanged.
    st = sb.state
    roots = [m for m in st.messages.values() if m.channel_id == reading and m.reply_to is None]
    newest = max(st.chain_modified(m) for m in roots)
    in_overlap = {ids.channel_thread(space.team_id, reading, m.id) for m in roots
                  if st.chain_modified(m) > newest - timedelta(minutes=5)}
    replayed = {r.external_id: r for r in again if not isinstance(r, CheckpointMark)}
    assert set(replayed) == in_overlap and len(in_overlap) < len(roots)
    first = records(items)
    assert all(r.content_hash() == first[k].content_hash() for k, r in replayed.items())
    root = next(m for m in sb.state.messages.values() if m.channel_id == reading and m.reply_to is None)
    sb.state.clock += timedelta(hours=1)  # past the overlap
    sb.state.post_message(space.team_id, reading, "<p>Added to the reading list.</p>", author=root.author,
                          reply_to=root.id)
    changed, _ = run(c, cp)
    threads = {r.external_id: r for r in changed if isinstance(r, Interaction)}
    root_id = ids.channel_thread(space.team_id, reading, root.id)
    # the changed chain, and the one inside the overlap before the old watermark
    assert set(threads) == {root_id, ids.channel_thread(space.team_id, reading, newer.id)}
    assert threads[root_id].messages[-1].text == "Added to the reading list."


def test_throttling_everywhere_still_brings_everything(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    sb.throttle_every(4, retry_after=0.01)  # every 4th request, $batch inner requests too: 429, 503, 504
    c = connector(sb, ws, static=False)
    items, _ = run(c)
    assert {k for k, r in records(items).items() if not isinstance(r, Tombstone)} == ws.expected_ids("platform")
    assert len([r for r in items if isinstance(r, Failure)]) == 2  # only the corrupt and encrypted files
    assert c.http.stats.retries == sb.counts["throttled"] > 10  # each throttled answer retried once, no more
    assert c.http.stats.by_status.get(503, 0) > 0 and c.http.stats.by_status.get(504, 0) > 0


def test_permissions_go_through_batches_of_at_most_twenty(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    sb.page_size = 200
    space = ws.teams["platform"]
    add_bulk_files(sb, space.drive_id, 45, docx_every=0)
    c = connector(sb, ws, mailboxes=[], teams=[])
    items, _ = run(c)
    files_in_page = len(space.documents) + len(space.failing) + 45
    assert c.sync_stats["batched_requests"] == files_in_page
    assert c.sync_stats["batches"] == -(-files_in_page // 20) == sb.counts["batch"]
    bulk = [r for r in items if isinstance(r, Document) and r.metadata["folder"].startswith("/Bulk")]
    assert len(bulk) == 45 and all(d.acl for d in bulk)


def test_inner_429_in_a_batch_is_retried_alone(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    c = connector(sb, ws, mailboxes=[], teams=[])
    sb.rate_limit(None)
    sb.throttle_every(3, statuses=(429,), retry_after=0.01)
    items, _ = run(c)
    assert {r.external_id for r in items if isinstance(r, Document)} == ws.teams["platform"].documents
    assert all(d.acl for d in items if isinstance(d, Document))
    assert c.sync_stats["batched_requests"] > len(ws.teams["platform"].documents) + 2  # retried inner requests


def test_401_and_403_are_auth_errors_naming_the_permission(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    sb.revoke("Mail.Read")
    c = connector(sb, ws)
    with pytest.raises(AuthError, match=r"needs the Mail\.Read application permission"):
        run(c)
    sb.revoked.clear()
    sb.revoke("ChannelMessage.Read.All")
    with pytest.raises(AuthError, match=r"ChannelMessage\.Read\.All"):
        run(connector(sb, ws))
    sb.revoked.clear()
    sb.inject(401, count=5)
    with pytest.raises(AuthError, match="401 InvalidAuthenticationToken"):
        connector(sb, ws).check()
    bad = connector(sb, ws, static=False)
    bad.settings.client_secret = type(bad.settings.client_secret)("not-the-secret")  # type: ignore[misc]
    with pytest.raises(AuthError, match="AADSTS7000215") as exc:
        bad.check()
    assert "not-the-secret" not in str(exc.value)


def test_unknown_site_is_a_config_error(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    with pytest.raises(ConfigError, match="no SharePoint site 'lumenlabs.sharepoint.com:/sites/nope'"):
        connector(sb, ws, sites=["lumenlabs.sharepoint.com:/sites/nope"]).check()


def test_fetch_rereads_single_items(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    st, space = sb.state, ws.teams["platform"]
    readme = space.items["README.md"]
    st.edit_file(readme, files.md_bytes("Platform", [("About", ["Fetched again."])]))
    notes = space.items["Notes/Meeting notes.txt"]
    st.delete_item(notes)
    conv = next(iter(sorted(i for i in space.threads if i.startswith("mail:"))))
    roots = sorted(i for i in space.threads if i.startswith("teams:"))
    st.delete_message(roots[0].rsplit("/", 1)[1])
    wanted = [ids.drive_item(space.drive_id, readme), ids.drive_item(space.drive_id, notes), conv, roots[0],
              roots[1], "something-else"]
    got = list(connector(sb, ws).fetch(wanted))
    by_id = {r.external_id: r for r in got}
    assert "Fetched again." in by_id[wanted[0]].text
    assert isinstance(by_id[wanted[1]], Tombstone) and isinstance(by_id[roots[0]], Tombstone)
    assert isinstance(by_id[conv], Interaction) and isinstance(by_id[roots[1]], Interaction)
    assert isinstance(by_id["something-else"], Failure)
    # fetch writes the same record a sync writes (same hash), so a webhook adds no spurious version
    c = connector(sb, ws)
    synced = records(run(c)[0])
    assert synced[roots[1]].content_hash() == by_id[roots[1]].content_hash()
    assert synced[wanted[0]].content_hash() == by_id[wanted[0]].content_hash()


def test_resume_from_a_mid_drive_checkpoint_has_no_gap(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    c = connector(sb, ws, mailboxes=[], teams=[])
    c.check()
    gen = c.sync(None)
    seen: list[Any] = []
    for item in gen:
        if isinstance(item, CheckpointMark) and item.checkpoint.pending:  # type: ignore[attr-defined]
            mark = item.checkpoint
            break
        seen.append(item)
    gen.close()
    rest, _ = run(connector(sb, ws, mailboxes=[], teams=[]), mark)  # type: ignore[arg-type]
    first = {r.external_id for r in seen if isinstance(r, Document)}
    second = {r.external_id for r in rest if isinstance(r, Document)}
    assert first and second and not first & second
    assert first | second == ws.teams["platform"].documents


def test_secrets_never_reach_the_logs(sandbox: tuple[GraphSandbox, Workspace], caplog: pytest.LogCaptureFixture) -> None:
    sb, ws = sandbox
    caplog.set_level("DEBUG")
    c = connector(sb, ws, static=False)
    sb.inject(429, count=2, retry_after=0)
    run(c)
    text = "\n".join(r.getMessage() for r in caplog.records) + repr(c.settings) + str(c.settings.model_dump())
    issued = list(sb._issued)
    downloads = [item for item in sb.state.items.values() if not item.is_folder and item.content]
    tempauth = [sb.api.download_token(item) for item in downloads]
    assert issued and "download.aspx?UniqueId=" in text and "tempauth=********" in text  # httpx logged the hop
    for secret in [sb.client_secret, *issued, *tempauth]:
        assert secret not in text


def test_settings_are_validated_with_clear_errors() -> None:
    from pydantic import ValidationError

    from connectors.msgraph.settings import GraphSettings

    with pytest.raises(ValidationError, match="give tenant_id, client_id and client_secret, or access_token"):
        GraphSettings(sites=["x"])
    with pytest.raises(ValidationError, match="nothing to sync"):
        GraphSettings(access_token="t")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        GraphSettings(access_token="t", sites=["x"], site=["y"])  # type: ignore[call-arg]
    s = GraphSettings(access_token="t", sites=["x"], base_url="https://graph.microsoft.us/v1.0/")
    assert s.api_url == "https://graph.microsoft.us/v1.0"
    from connectors.msgraph.auth import make_auth_provider

    cred = GraphSettings(tenant_id="t", client_id="c", client_secret="s", sites=["x"],
                         base_url="https://microsoftgraph.chinacloudapi.cn")
    provider = make_auth_provider(cred, object())
    assert provider.access_token_provider._scopes == ["https://microsoftgraph.chinacloudapi.cn/.default"]
    assert provider.access_token_provider.get_allowed_hosts_validator().get_allowed_hosts() == [
        "microsoftgraph.chinacloudapi.cn"]


def test_counts_of_records_by_kind(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    items, _ = run(connector(sb, ws, "research", mail_as_documents=False))
    kinds = Counter(type(r).__name__ for r in items if not isinstance(r, CheckpointMark))
    space = ws.teams["research"]
    assert kinds == {"Document": len(space.documents), "Interaction": len(space.threads)}
