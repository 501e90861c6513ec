"""`tacit export`: the corpus and examples as record-format JSON, one object per line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from sqlalchemy import select

from db import models
from tacit.cli.shared import DeprecatedTeamOption, TeamOrOption, context, pick_team
from tacit.context import Context

PAGE = 500


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def export_rows(ctx: Context, what: str, team: str, *, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
    with ctx.session() as session:
        team_row = ctx.team_row(session, team)
        sources = dict(session.execute(select(models.Source.id, models.Source.name)).all())
        model = {"documents": models.Document, "interactions": models.Interaction,
                 "chunks": models.Chunk, "examples": models.Example}[what]
        stmt = select(model).where(model.team_id == team_row.id).order_by(model.id)
        if what in ("documents", "interactions") and not include_deleted:
            stmt = stmt.where(model.deleted_at.is_(None))
        if what in ("chunks", "examples"):
            stmt = stmt.where(model.retired_at.is_(None))
        last_id = 0
        while True:
            rows = list(session.scalars(stmt.where(model.id > last_id).limit(PAGE)))
            if not rows:
                return
            for row in rows:
                yield _render(what, row, team, sources)
            last_id = rows[-1].id


def _record(row: Any, team: str, sources: dict[int, str], fields: dict[str, Any]) -> dict[str, Any]:
    """A corpus row (document or interaction) as its record's `fields`, then what every corpus row
    has: acl, metadata, where it came from, its id and version, and when it was ingested (and deleted)."""
    data = {**fields, "acl": row.acl, "metadata": row.meta, "source": sources.get(row.source_id), "team": team,
            "id": row.id, "version": row.version, "ingested_at": _iso(row.ingested_at)}
    if row.deleted_at is not None:
        data["deleted_at"] = _iso(row.deleted_at)
    return data


def _render(what: str, row: Any, team: str, sources: dict[int, str]) -> dict[str, Any]:
    if what == "documents":
        return _record(row, team, sources, {
            "type": "document", "external_id": row.external_id, "title": row.title, "text": row.text,
            "url": row.url, "authors": row.authors, "created_at": _iso(row.source_created_at),
            "updated_at": _iso(row.source_updated_at), "parent_external_id": row.parent_external_id})
    if what == "interactions":
        return _record(row, team, sources, {
            "type": "interaction", "external_id": row.external_id, "kind": row.kind,
            "document_external_id": row.document_external_id, "rating": row.rating,
            "correction": row.correction, "messages": row.messages})
    if what == "chunks":
        return {"id": row.id, "team": team, "document_id": row.document_id, "document_version": row.document_version,
                "ordinal": row.ordinal, "heading_path": row.heading_path, "token_count": row.token_count,
                "text": row.text}
    return {
        "id": row.id, "team": team, "kind": row.kind, "origin": row.origin, "payload": row.payload,
        "token_count": row.token_count,
        "provenance": {"chunk_id": row.chunk_id, "document_id": row.document_id,
                       "interaction_id": row.interaction_id},
        "created_at": _iso(row.created_at),
    }


# ---------------------------------------------------------------------------- commands
export_app = typer.Typer(no_args_is_help=True, help="Export the corpus and examples as JSONL on stdout.")


def _export(what: str, team: str | None, team_option: str | None, include_deleted: bool = False) -> None:
    team = pick_team(team, team_option, f"export {what}")
    assert team is not None
    ctx = context()
    ctx.config.team(team)
    for row in export_rows(ctx, what, team, include_deleted=include_deleted):
        sys.stdout.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")


IncludeDeleted = Annotated[bool, typer.Option("--include-deleted", help="Also records deleted at their source.")]


@export_app.command("documents")
def export_documents(team: TeamOrOption = None, team_option: DeprecatedTeamOption = None,
                     include_deleted: IncludeDeleted = False) -> None:
    """Live documents (add tombstoned ones with --include-deleted)."""
    _export("documents", team, team_option, include_deleted)


@export_app.command("interactions")
def export_interactions(team: TeamOrOption = None, team_option: DeprecatedTeamOption = None,
                        include_deleted: IncludeDeleted = False) -> None:
    """Comments, threads, chats and feedback."""
    _export("interactions", team, team_option, include_deleted)


@export_app.command("chunks")
def export_chunks(team: TeamOrOption = None, team_option: DeprecatedTeamOption = None) -> None:
    """Live chunks with their heading paths."""
    _export("chunks", team, team_option)


@export_app.command("examples")
def export_examples(team: TeamOrOption = None, team_option: DeprecatedTeamOption = None) -> None:
    """Training examples: kind, payload and provenance."""
    _export("examples", team, team_option)
