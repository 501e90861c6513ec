"""Migrations go up and down on both dialects, and the models match what they create."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import db.models  # noqa: F401
from db.base import Base
from db.session import downgrade, get_engine, migrate

TABLES = {
    "teams", "sources", "sync_runs", "item_failures", "documents", "interactions", "chunks", "examples",
    "webhook_events", "adapters", "adapter_lineage", "api_keys", "completions",
}
BEFORE_SERVING = TABLES - {"api_keys", "completions"}


def _tables(url: str) -> set[str]:
    return set(inspect(get_engine(url)).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    migrate(db_url)
    assert _tables(db_url) == TABLES
    downgrade(db_url, "base")
    assert _tables(db_url) == set()
    migrate(db_url)
    assert _tables(db_url) == TABLES


def test_serving_revision_down_and_up(db_url: str) -> None:
    """0002 (API keys, completions) goes down to 0001 alone and back up."""
    migrate(db_url)
    downgrade(db_url, "0001")
    assert _tables(db_url) == BEFORE_SERVING
    migrate(db_url)
    assert _tables(db_url) == TABLES


def test_models_match_migrations(db_url: str) -> None:
    migrate(db_url)
    with get_engine(db_url).connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_constraints_are_named_by_convention(db_url: str) -> None:
    migrate(db_url)
    insp = inspect(get_engine(db_url))
    uniques = {u["name"] for u in insp.get_unique_constraints("documents")}
    assert "uq_documents_source_id_external_id" in uniques
    fks = {fk["name"] for fk in insp.get_foreign_keys("documents")}
    assert "fk_documents_source_id_sources" in fks
