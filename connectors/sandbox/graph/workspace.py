"""The sample company (Lumen Labs) as a Microsoft 365 tenant, and a bulk builder for benchmarks.

Per team: a SharePoint site whose document library holds real .docx/.pptx/.xlsx/.pdf/.html/
.md/.txt files with the team's wiki prose (facts inside paragraphs) written inside; a shared
help mailbox (`platform-help@lumenlabs.example`) where colleagues ask about the few `discussed`
facts and the team answers (HTML, Outlook- and Gmail-style quoted history), plus a long handbook
digest; a Microsoft Teams team whose "Help" channel holds the same few questions and answers as
threads. The platform site also holds a
truncated .docx and a password-protected PDF (each must become one Failure), the support
site a PNG (skipped and counted), Ada has a OneDrive, and the research team has a channel
on which Graph answers no delta (the connector falls back to `lastModifiedDateTime`).

`build_company(sandbox)` returns a `Workspace` that tells tests and the demo what a
full sync must produce (`expected_ids(team)`) and where each team's content lives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from connectors.msgraph import ids
from connectors.sandbox.company import (
    DOMAIN,
    FACTS,
    PEOPLE,
    TEAMS,
    Person,
    discussed,
    facts_for,
    person,
    wiki_sections,
)
from connectors.sandbox.graph import files
from connectors.sandbox.graph.state import Identity, SandboxState, user_id

HOST = "lumenlabs.sharepoint.com"
FORMATS = [".docx", ".pptx", ".xlsx", ".pdf"]


def ident(p: Person) -> Identity:
    return Identity(p.name, p.email, user_id(p.email))


def mailbox_address(team: str) -> str:
    return f"{team}-help@{DOMAIN}"


@dataclass
class TeamSpace:
    name: str
    site_ref: str  # host:/sites/name, as a source's `sites` setting names it
    site_id: str
    drive_id: str
    mailbox: str
    team_id: str
    channels: dict[str, str] = field(default_factory=dict)  # name -> id
    documents: set[str] = field(default_factory=set)  # external ids a sync must write
    long_mail: set[str] = field(default_factory=set)  # documents only when mail_as_documents is on
    threads: set[str] = field(default_factory=set)  # interactions
    failing: set[str] = field(default_factory=set)  # corrupt or encrypted: one Failure each
    skipped: set[str] = field(default_factory=set)  # unsupported types
    items: dict[str, str] = field(default_factory=dict)  # path -> item id


@dataclass
class Workspace:
    teams: dict[str, TeamSpace] = field(default_factory=dict)
    onedrive_user: str = ""
    onedrive_documents: set[str] = field(default_factory=set)

    def fact_file(self, team: str, topic: str) -> str:
        """The item id of the handbook file that holds a topic's facts."""
        space = self.teams[team]
        return next(item for path, item in space.items.items()
                    if path.startswith("Handbook/") and path[len("Handbook/"):].rsplit(".", 1)[0] == topic)

    def expected_ids(self, team: str, *, mail_as_documents: bool = True, onedrive: bool = False) -> set[str]:
        space = self.teams[team]
        out = space.documents | space.threads | (space.long_mail if mail_as_documents else set())
        return out | (self.onedrive_documents if onedrive else set())


def _permissions(team_name: str, title: str, extra: list[dict] | None = None) -> list[dict]:
    group = {"id": f"perm-owners-{team_name}", "roles": ["owner"], "grantedToV2": {"group": {
        "id": user_id(f"{team_name}@{DOMAIN}"), "displayName": f"{title} Owners", "email": f"{team_name}@{DOMAIN}"}}}
    members = [{"id": f"perm-{p.id[-4:]}", "roles": ["write"], "grantedToV2": ident(p).as_user()}
               for p in PEOPLE if p.team == team_name]
    return [group, *members, *(extra or [])]


def _outlook_quote(sender: Identity, to: str, sent: str, subject: str, original_html: str) -> str:
    return ('<hr style="display:inline-block;width:98%" tabindex="-1"><div id="divRplyFwdMsg" dir="ltr">'
            f'<font face="Calibri, sans-serif" style="font-size:11pt"><b>From:</b> {escape(sender.name)} '
            f'&lt;{sender.email}&gt;<br><b>Sent:</b> {sent}<br><b>To:</b> {to}<br><b>Subject:</b> '
            f'{escape(subject)}</font><div>&nbsp;</div></div><div>{original_html}</div>')


def _gmail_quote(sender: Identity, sent: str, original_html: str) -> str:
    return (f'<div class="gmail_quote"><div dir="ltr" class="gmail_attr">On {sent}, {escape(sender.name)} '
            f'&lt;{sender.email}&gt; wrote:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px '
            f'0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex">{original_html}</blockquote></div>')


def _asker(team: str, index: int) -> Person:
    others = [p for p in PEOPLE if p.team != team]
    return others[index % len(others)]


def build_company(sb: object) -> Workspace:
    """Fill a `GraphSandbox` (or its `SandboxState`) with the sample company; returns what it holds."""
    st: SandboxState = getattr(sb, "state", sb)  # type: ignore[assignment]
    ws = Workspace()
    for team in TEAMS:
        site = st.add_site(HOST, f"/sites/{team.name}", team.title)
        drive = st.add_drive("Documents", site=site)
        box = st.add_mailbox(mailbox_address(team.name), f"{team.title} Help")
        teams_team = st.add_team(team.title, team.description, f"{team.name}@{DOMAIN}", drive_id=drive.id)
        space = TeamSpace(team.name, f"{HOST}:/sites/{team.name}", site.id, drive.id, box.address, teams_team.id)
        ws.teams[team.name] = space
        facts = facts_for(team.name)
        topics: dict[str, list[str]] = {}
        for fact in facts:
            topics.setdefault(fact.topic, []).append(fact.statement)

        def add(path: str, content: bytes, author: Person, extra: list[dict] | None = None, *, kind: str = "ok",
                space: TeamSpace = space, drive_id: str = drive.id, team_name: str = team.name,
                title: str = team.title) -> None:
            item = st.add_file(drive_id, path, content, author=ident(author),
                               permissions=_permissions(team_name, title, extra))
            space.items[path] = item.id
            target = {"ok": space.documents, "fail": space.failing, "skip": space.skipped}[kind]
            target.add(ids.drive_item(drive_id, item.id))

        for i, topic in enumerate(topics):
            ext = FORMATS[i % len(FORMATS)]
            add(f"Handbook/{topic}{ext}", files.file_bytes(ext, topic, wiki_sections(team.name, topic)),
                person(team.name, i))
        overview = list(topics.items())
        add("Team overview.html", files.html_bytes(f"{team.title} overview", [(team.title, [team.description]),
                                                                             *overview]),
            person(team.name, 0), [{"id": "perm-anon", "roles": ["read"], "link": {"scope": "anonymous",
                                                                                  "type": "view"}}])
        add("README.md", files.md_bytes(team.title, [("About", [team.description, f"Questions go to "
                                                                 f"{mailbox_address(team.name)}."])]),
            person(team.name, 1), [{"id": "perm-org", "roles": ["read"], "link": {"scope": "organization",
                                                                                 "type": "view"}}])
        first = facts[0]
        add("Notes/Meeting notes.txt", files.txt_bytes("Meeting notes", [("Weekly sync", [
            f"Reminder: {first.statement}", "Action items are tracked in the team board."])]), person(team.name, 2))
        if team.name == "platform":
            add("Finance/Budget 2025.docx", files.corrupt_docx(), person(team.name, 0), kind="fail")
            add("Finance/Salaries.pdf", files.encrypted_pdf("Salaries", [("Confidential", ["Not for the corpus."])]),
                person(team.name, 0), kind="fail")
        if team.name == "support":
            add("Brand/logo.png", files.png_bytes(), person(team.name, 0), kind="skip")

        _mail(st, space, team.name, team.title, discussed(team.name), list(topics))
        _channels(st, space, team.name, teams_team.id, discussed(team.name))

    ada = next(p for p in PEOPLE if p.name.startswith("Ada"))
    onedrive = st.add_drive("OneDrive", user_id=user_id(ada.email))
    item = st.add_file(onedrive.id, "Runbook notes.md", files.md_bytes("Runbook notes", [(
        "On-call", [f.statement for f in FACTS if f.topic == "On-call"])]), author=ident(ada),
        permissions=[{"id": "perm-ada", "roles": ["owner"], "grantedToV2": ident(ada).as_user()}])
    ws.onedrive_user = ada.email
    ws.onedrive_documents.add(ids.drive_item(onedrive.id, item.id))
    return ws


def _mail(st: SandboxState, space: TeamSpace, team: str, title: str, facts: list,  # type: ignore[type-arg]
          topics: list[str]) -> None:
    box = space.mailbox
    shared = Identity(f"{title} Help", box, user_id(box))
    for j, fact in enumerate(facts):
        asker, answerer = ident(_asker(team, j)), ident(person(team, j))
        subject = f"Question about {fact.topic.lower()}"
        first = st.add_mail(box, "inbox", subject=subject, sender=asker, to=[shared], key=f"{team}-{j}-q",
                            html=f"<html><body><p>Hi {escape(title)} team,</p><p>{escape(fact.question)}</p>"
                                 f"<p>Thanks,<br>{escape(asker.name.split()[0])}</p></body></html>")
        answer_html = (f"<p>Hi {escape(asker.name.split()[0])},</p><p>{escape(fact.statement)}</p>"
                       f"<p>Best,<br>{escape(answerer.name)}</p>")
        reply = st.add_mail(box, "sentitems", subject=f"RE: {subject}", sender=answerer, to=[asker],
                            conversation_id=first.conversation_id, key=f"{team}-{j}-a",
                            html=f"<html><body><div>{answer_html}</div>"
                                 + _outlook_quote(asker, box, first.sent.strftime("%A, %B %d, %Y %H:%M"), subject,
                                                  first.html) + "</body></html>")
        if j % 3 == 0:
            st.add_mail(box, "inbox", subject=f"RE: {subject}", sender=asker, to=[answerer, shared],
                        conversation_id=first.conversation_id, key=f"{team}-{j}-t",
                        html="<div dir=\"ltr\">Thanks, that helps!</div><br>"
                             + _gmail_quote(answerer, reply.sent.strftime("%a, %b %d, %Y at %H:%M"), answer_html))
        space.threads.add(ids.conversation(box, first.conversation_id))
    lead = ident(person(team, 0))
    # The digest points at the handbook rather than repeating it: its facts live in the wiki.
    paragraphs = "".join(f"<p>We went through the {escape(topic)} page this quarter. If something there no "
                         f"longer matches how you work, edit the page or tell {escape(lead.name)}, so that "
                         f"newcomers do not learn an outdated habit.</p>" for topic in topics)
    digest = st.add_mail(box, "inbox", subject=f"{title} handbook digest", sender=lead, to=[shared],
                         key=f"{team}-digest",
                         html=f"<html><body><h2>{escape(title)} handbook digest</h2><p>Hello everyone,</p>"
                              f"<p>Here is the summary of how we work, collected from our handbook.</p>{paragraphs}"
                              f"<p>Regards,<br>{escape(lead.name)}</p></body></html>")
    space.threads.add(ids.conversation(box, digest.conversation_id))
    space.long_mail.add(ids.mail_message(box, digest.id))


def _channels(st: SandboxState, space: TeamSpace, team: str, team_id: str, facts: list) -> None:  # type: ignore[type-arg]
    help_channel = st.add_channel(team_id, "Help", "Ask the team anything")
    space.channels["Help"] = help_channel.id
    papers = None
    if team == "research":
        papers = st.add_channel(team_id, "Reading group", "Paper reviews", delta_supported=False)
        space.channels["Reading group"] = papers.id
    for j, fact in enumerate(facts):
        channel = papers if papers is not None and fact.topic == "Papers" else help_channel
        asker, answerer = ident(_asker(team, j + 1)), ident(person(team, j + 1))
        root = st.post_message(team_id, channel.id, f"<p>{escape(fact.question)}</p>", author=asker,
                               subject=fact.topic)
        st.post_message(team_id, channel.id, f"<div><p>{escape(fact.statement)}</p></div>", author=answerer,
                        reply_to=root.id)
        if j % 2 == 0:
            st.post_message(team_id, channel.id, "<p>Great, thank you!</p>", author=asker, reply_to=root.id)
        space.threads.add(ids.channel_thread(team_id, channel.id, root.id))


def add_bulk_files(sb: object, drive_id: str, count: int, *, docx_every: int = 10, prefix: str = "Bulk") -> list[str]:
    """Add `count` files (Markdown and text, every `docx_every`-th a real .docx); returns their item ids."""
    st: SandboxState = getattr(sb, "state", sb)  # type: ignore[assignment]
    author = ident(PEOPLE[0])
    perms = _permissions("platform", "Platform Engineering")
    out = []
    for k in range(count):
        fact = FACTS[k % len(FACTS)]
        sections = [(f"Note {k}", [fact.statement, f"Entry {k} of the {prefix.lower()} archive."])]
        if docx_every and k % docx_every == 0:
            name, content = f"note-{k:05d}.docx", files.docx_bytes(f"Note {k}", sections)
        elif k % 2:
            name, content = f"note-{k:05d}.md", files.md_bytes(f"Note {k}", sections)
        else:
            name, content = f"note-{k:05d}.txt", files.txt_bytes(f"Note {k}", sections)
        out.append(st.add_file(drive_id, f"{prefix}/{k // 100:03d}/{name}", content, author=author,
                               permissions=perms).id)
    return out
