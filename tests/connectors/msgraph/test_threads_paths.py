"""Teams replies and drive folder paths as Graph documents them; the one delta loop and its restart rule.

The sandbox answers channel-message delta without replies and drive delta without
`parentReference.path`, as Microsoft's reference says; the connector reads replies per root and
builds folder paths from the folder items, by id, across incremental syncs and folder renames.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from connectors.base import CheckpointExpired, CheckpointMark, Document, Failure, Interaction, Tombstone
from connectors.msgraph import ids
from connectors.msgraph.settings import GraphCheckpoint
from connectors.sandbox.graph import GraphSandbox, files
from connectors.sandbox.graph.workspace import Workspace
from tests.connectors.harness_msgraph import connector, records, run


def get(sb: GraphSandbox, url: str) -> dict:
    url = url if url.startswith("http") else f"{sb.url}/v1.0/{url}"
    answer = httpx.get(url, headers={"Authorization": f"Bearer {sb.static_token}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


# --------------------------------------------------------------------------- the sandbox follows the reference
def test_sandbox_channel_delta_carries_no_replies_even_when_asked(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    space = ws.teams["platform"]
    channel = space.channels["Help"]
    page = get(sb, f"teams/{space.team_id}/channels/{channel}/messages/delta?$expand=replies")
    roots = page["value"]
    assert roots and all(m["replyToId"] is None for m in roots)
    assert all("replies" not in m for m in roots)
    with_replies = [m for m in roots if sb.state.replies(m["id"])]
    assert with_replies  # the channel has threads with replies; list replies returns them
    replies = get(sb, f"teams/{space.team_id}/channels/{channel}/messages/{with_replies[0]['id']}/replies")
    assert [r["id"] for r in replies["value"]] == [r.id for r in sb.state.replies(with_replies[0]["id"])]


def test_sandbox_drive_delta_items_carry_no_path_but_item_reads_do(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    drive_id = ws.teams["platform"].drive_id
    items = get(sb, f"drives/{drive_id}/root/delta?$top=999")["value"]
    nested = [i for i in items if "file" in i and i["parentReference"].get("id")]
    assert nested and all("path" not in i["parentReference"] for i in items)
    item_id = ws.teams["platform"].items["Handbook/Deploy policy.docx"]
    one = get(sb, f"drives/{drive_id}/items/{item_id}")
    assert one["parentReference"]["path"] == f"/drives/{drive_id}/root:/Handbook"
    folder = one["parentReference"]["id"]
    kids = get(sb, f"drives/{drive_id}/items/{folder}/children")["value"]
    assert item_id in {k["id"] for k in kids}
    assert all(k["parentReference"]["path"] == f"/drives/{drive_id}/root:/Handbook" for k in kids)


# --------------------------------------------------------------------------- Teams replies
def test_threads_hold_their_replies_and_gain_a_new_reply_incrementally(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    space, st = ws.teams["platform"], sb.state
    c = connector(sb, ws, sites=[], users=[], mailboxes=[])
    items, cp = run(c)
    threads = {r.external_id: r for r in items if isinstance(r, Interaction)}
    roots = [m for m in st.messages.values() if m.team_id == space.team_id and m.reply_to is None
             and not m.deleted and m.message_type == "message"]
    assert len(threads) == len(roots) and len(roots) >= 2
    for root in roots:  # a root and every reply: one interaction
        thread = threads[ids.channel_thread(space.team_id, root.channel_id, root.id)]
        assert len(thread.messages) == 1 + len([r for r in st.replies(root.id) if not r.deleted])
    assert c.sync_stats["replies_read"] == len(roots)

    old = roots[0]
    st.post_message(space.team_id, old.channel_id, "<p>Update: the runbook moved to the wiki.</p>",
                    author=old.author, reply_to=old.id)
    assert not get(sb, cp.delta[f"channel:{space.team_id}:{old.channel_id}"])["value"]  # the root is not back
    before = sb.requests_served()
    again, cp = run(c, cp)
    changed = records(again)
    key = ids.channel_thread(space.team_id, old.channel_id, old.id)
    assert set(changed) == {key}
    assert changed[key].messages[-1].text == "Update: the runbook moved to the wiki."
    assert len(changed[key].messages) == len(threads[key].messages) + 1
    # check(): the team's drive; sync(): its delta, team, channels, one delta page per channel, one
    # $batch re-reading the known threads' replies, one $batch reading the changed thread's root
    channels = len(st.teams[space.team_id].channels)
    assert sb.requests_served() - before == 2 + 2 + channels + 1 + 1

    st.edit_message(st.replies(old.id)[0].id, "<p>Edited answer.</p>")
    edited, cp = run(c, cp)
    assert records(edited)[key].messages[1].text == "Edited answer."
    quiet, _ = run(c, cp)
    assert not records(quiet)


def test_a_root_whose_replies_are_expanded_is_not_read_again(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    space = ws.teams["platform"]
    root = next(m for m in sb.state.messages.values() if m.team_id == space.team_id and m.reply_to is None
                and sb.state.replies(m.id))
    c = connector(sb, ws, sites=[], users=[], mailboxes=[])
    # a single message read honours $expand=replies in the sandbox: the answer proves it, no list replies call
    got = list(c.fetch([ids.channel_thread(space.team_id, root.channel_id, root.id)]))
    assert len(got) == 1 and isinstance(got[0], Interaction)
    assert len(got[0].messages) == 1 + len(sb.state.replies(root.id))
    assert c.sync_stats.get("replies_expanded") == 1 and not c.sync_stats.get("replies_read")


# --------------------------------------------------------------------------- drive folder paths
def test_drive_documents_carry_site_drive_and_folder_and_follow_a_rename(sandbox: tuple[GraphSandbox, Workspace]
                                                                         ) -> None:
    sb, ws = sandbox
    space, st = ws.teams["platform"], sb.state
    c = connector(sb, ws, mailboxes=[], teams=[], users=[])
    items, cp = run(c)
    docs = {r.metadata["path"]: r for r in items if isinstance(r, Document)}
    deploy = docs["/Handbook/Deploy policy.docx"]
    assert deploy.metadata["folder"] == "/Handbook"
    assert deploy.metadata["site"] == "Platform Engineering" and deploy.metadata["drive"] == "Documents"
    assert deploy.metadata["site_id"] and deploy.metadata["drive_id"] == space.drive_id
    assert "Location: Platform Engineering / Documents / Handbook / Deploy policy.docx" in deploy.text
    assert docs["/README.md"].metadata["folder"] == "/"
    assert all({"site", "drive", "folder", "path"} <= set(d.metadata) for d in docs.values())
    assert space.drive_id and cp.folders[f"drive:{space.drive_id}"]

    # a nested folder below Handbook, synced incrementally: its path comes from the folders kept by id
    nested = st.add_file(space.drive_id, "Handbook/2024/Freeze.md",
                         files.md_bytes("Freeze", [("When", ["Thursdays from 16:00 UTC."])]),
                         author=st.items[space.items["README.md"]].author)
    more, cp = run(c, cp)
    assert records(more)[ids.drive_item(space.drive_id, nested.id)].metadata["folder"] == "/Handbook/2024"

    # rename Handbook: only the folder comes back in the delta; every file under it is re-written
    handbook = st.items[space.items["Handbook/Deploy policy.docx"]].parent_id
    assert handbook is not None
    st.rename_item(handbook, "Guides")
    renamed, cp = run(c, cp)
    got = {r.metadata["path"]: r for r in renamed if isinstance(r, Document)}
    under = {i.id for i in st.items.values() if not i.is_folder and not i.deleted
             and i.drive_id == space.drive_id and st.folder_path(i).split("root:")[1].startswith("/Guides")}
    expected = {ids.drive_item(space.drive_id, i) for i in under} - {
        r.external_id for r in items if isinstance(r, Failure | Tombstone)}  # files that fail or are skipped stay so
    assert {r.external_id for r in got.values()} == expected
    assert got["/Guides/2024/Freeze.md"].metadata["folder"] == "/Guides/2024"
    assert got["/Guides/Deploy policy.docx"].metadata["folder"] == "/Guides"
    assert "Location: Platform Engineering / Documents / Guides / Deploy policy.docx" in \
        got["/Guides/Deploy policy.docx"].text
    assert c.sync_stats["folders_moved"] == 1
    quiet, _ = run(c, cp)
    assert not records(quiet)


def test_a_version_1_checkpoint_starts_drives_and_channels_over() -> None:
    old = GraphCheckpoint.model_validate({"version": 1, "delta": {"drive:b!x": "u1", "mail:a:inbox": "u2",
                                                                 "channel:t:c": "u3"}})
    assert old.version == 2 and old.delta == {"mail:a:inbox": "u2"} and old.folders == {}


# --------------------------------------------------------------------------- one delta loop, one restart rule
@pytest.mark.parametrize("scope", ["drives", "mail", "teams"])
def test_every_delta_restarts_once_after_410_then_gives_up(sandbox: tuple[GraphSandbox, Workspace],
                                                           scope: str) -> None:
    sb, ws = sandbox
    only = {"drives": {"mailboxes": [], "teams": [], "users": []},
            "mail": {"sites": [], "teams": [], "mail_folders": ["inbox"]},
            "teams": {"sites": [], "mailboxes": []}}[scope]
    c = connector(sb, ws, **only)
    _, cp = run(c)
    sb.expire_delta_tokens()
    _, cp = run(c, cp)
    kinds = {"drives": ("drive:",), "mail": ("mail:",), "teams": ("channel:", "drive:")}[scope]  # a team has a drive
    assert {k.split(":")[0] + ":" for k in cp.delta} == set(kinds)
    assert c.sync_stats["delta_restarts"] == len(cp.delta)  # one round from scratch per scope
    if scope == "teams":  # a 410 injected now would hit the team and channels reads before any delta
        return
    c.check()
    sb.inject(410, count=2)  # the stored token, then the fresh one: a server that keeps refusing
    with pytest.raises(CheckpointExpired):
        list(c.sync(cp))
    assert c.sync_stats["delta_restarts"] == 1


def test_a_teams_sync_resumed_from_any_mark_loses_no_thread(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    space, st = ws.teams["platform"], sb.state
    channel = space.channels["Help"]
    author = next(m for m in st.messages.values() if m.team_id == space.team_id).author
    for n in range(75):  # two delta pages of at most 50 roots; replies read twenty threads a $batch
        root = st.post_message(space.team_id, channel, f"<p>Question {n}?</p>", author=author)
        st.post_message(space.team_id, channel, f"<p>Answer {n}.</p>", author=author, reply_to=root.id)
    c = connector(sb, ws, sites=[], users=[], mailboxes=[])
    c.check()
    stream = list(c.sync(None))
    every = {r.external_id for r in stream if isinstance(r, Interaction)}
    marks = [n for n, r in enumerate(stream) if isinstance(r, CheckpointMark)]
    assert len(every) >= 75 and len(marks) >= 2
    for n in marks:
        before = {r.external_id for r in stream[:n] if isinstance(r, Interaction)}
        c.check()
        after, _ = run(c, stream[n].checkpoint)  # type: ignore[union-attr]
        resumed = {r.external_id for r in after if isinstance(r, Interaction)}
        assert before | resumed == every, n
        assert all(len(r.messages) == 2 for r in after if isinstance(r, Interaction)
                   and r.messages[0].text.startswith("Question"))


# --------------------------------------------------------------------------- other reference behaviours of the sandbox
def test_sandbox_batch_wants_relative_urls_and_may_answer_out_of_order(sandbox: tuple[GraphSandbox, Workspace]
                                                                       ) -> None:
    sb, ws = sandbox
    drive_id = ws.teams["platform"].drive_id
    requests = [{"id": str(n), "method": "GET", "url": f"/drives/{drive_id}/items/{i}/permissions"}
                for n, i in enumerate(list(ws.teams["platform"].items.values())[:3])]
    requests.append({"id": "abs", "method": "GET", "url": f"{sb.url}/v1.0/drives/{drive_id}"})
    answer = httpx.post(f"{sb.url}/v1.0/$batch", json={"requests": requests},
                        headers={"Authorization": f"Bearer {sb.static_token}"}).json()["responses"]
    assert [r["id"] for r in answer] != [r["id"] for r in requests]  # order is not promised
    by_id = {r["id"]: r for r in answer}
    assert {by_id[str(n)]["status"] for n in range(3)} == {200} and by_id["abs"]["status"] == 400
    too_many = [{"id": str(n), "method": "GET", "url": f"/drives/{drive_id}"} for n in range(21)]
    assert httpx.post(f"{sb.url}/v1.0/$batch", json={"requests": too_many},
                      headers={"Authorization": f"Bearer {sb.static_token}"}).status_code == 400


def test_sandbox_mail_delta_answers_only_the_selected_properties(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    box = ws.teams["platform"].mailbox
    page = get(sb, f"users/{box}/mailFolders/inbox/messages/delta?$select=conversationId")
    assert page["value"] and all(set(m) <= {"id", "@odata.type", "conversationId"} for m in page["value"])
    following = get(sb, page.get("@odata.nextLink") or page["@odata.deltaLink"])  # the options travel in the link
    assert all("body" not in m for m in following["value"])


def test_sandbox_subscriptions_follow_the_resource_rules(sandbox: tuple[GraphSandbox, Workspace]) -> None:
    sb, ws = sandbox
    space = ws.teams["platform"]
    soon = (sb.now() + timedelta(minutes=50)).strftime("%Y-%m-%dT%H:%M:%SZ")
    later = (sb.now() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def create(resource: str, change: str, expires: str) -> httpx.Response:
        return httpx.post(f"{sb.url}/v1.0/subscriptions", headers={"Authorization": f"Bearer {sb.static_token}"},
                          json={"resource": resource, "changeType": change, "expirationDateTime": expires,
                                "notificationUrl": "http://127.0.0.1:9/none"})

    drive = create(f"drives/{space.drive_id}/root", "created,updated", soon)
    assert drive.status_code == 400 and "updated" in drive.json()["error"]["message"]
    channel = next(iter(space.channels.values()))
    teams = create(f"teams/{space.team_id}/channels/{channel}/messages", "created", later)
    assert teams.status_code == 400 and "lifecycleNotificationUrl" in teams.json()["error"]["message"]
