"""The running platform: a validated configuration plus its database, bound together.

Every entry point (CLI, Celery task, API) builds one `Context` and passes it down; plain
functions receive it instead of reading globals, so they are tested without Celery.
"""

from __future__ import annotations

import hashlib
import logging
from contextlib import AbstractContextManager
from functools import cached_property
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.http import HttpBudget
from connectors.registry import connector_class
from db import models
from db.session import migrate, session_scope, startup_lock
from tacit.config import SourceConfig, TacitConfig, load_config
from tacit.errors import UnknownSource, UnknownTeam
from tacit.secrets import SecretBox, redact_in_logs, secret_values

log = logging.getLogger(__name__)

class Context:
    def __init__(self, config: TacitConfig, *, migrate_db: bool = True) -> None:
        self.config = config
        self.database_url = config.database_url
        self._migrated = False

        redact_in_logs(set().union(*(secret_values(s.settings) for s in config.sources)) if config.sources else set())
        if migrate_db:
            self.secrets  # noqa: B018  (a missing TACIT_SECRET_KEY is reported before any connection)
            self.ensure_database()

    @classmethod
    def load(cls, path: str | Path | None = None, **kwargs: object) -> Context:
        return cls(load_config(path), **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ database
    def session(self) -> AbstractContextManager[Session]:
        """A session that commits on success and rolls back on error."""
        return session_scope(self.database_url)

    def ensure_database(self) -> None:
        """Migrate to the newest schema and mirror the configured teams and sources."""
        if self._migrated:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with startup_lock(self.database_url):
            self._migrate_and_mirror()
        self._migrated = True

    def _migrate_and_mirror(self) -> None:
        migrate(self.database_url)
        with self.session() as session:
            teams = {t.name: t for t in session.scalars(select(models.Team))}
            for team in self.config.teams:
                row = teams.get(team.name)
                if row is None:
                    session.add(models.Team(name=team.name, base_model=team.base_model))
                elif row.base_model != team.base_model:
                    row.base_model = team.base_model
            session.flush()
            team_ids = {t.name: t.id for t in session.scalars(select(models.Team))}
            sources = {s.name: s for s in session.scalars(select(models.Source))}
            for source in self.config.sources:
                sealed = self.secrets.seal(source.settings)
                row = sources.get(source.name)
                if row is None:
                    session.add(models.Source(name=source.name, kind=source.kind, team_id=team_ids[source.team],
                                              config=sealed, state={}))
                else:
                    if row.kind != source.kind:
                        # A different kind under the same name: its checkpoint means nothing now.
                        row.checkpoint = None
                    row.kind = source.kind
                    row.team_id = team_ids[source.team]
                    if _unsealed_differs(self.secrets, row.config, source.settings):
                        row.config = sealed

    # ------------------------------------------------------------------ helpers
    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @cached_property
    def secrets(self) -> SecretBox:
        return SecretBox.from_env(self.data_dir, generate=self.embedded)

    @property
    def embedded(self) -> bool:
        """One machine, SQLite: the mode where generating a local secret key is safe."""
        return self.database_url.startswith("sqlite")

    @property
    def redis_url(self) -> str | None:
        url = self.config.queue.broker_url
        return url if url.startswith(("redis://", "rediss://")) else None

    def source_config(self, name: str) -> SourceConfig:
        return self.config.source(name)

    def source_row(self, session: Session, name: str) -> models.Source:
        row = session.scalar(select(models.Source).where(models.Source.name == name))
        if row is None:
            self.config.source(name)  # raises UnknownSource when it is not configured either
            raise UnknownSource(f"source {name!r} is not in the database")
        return row

    def team_row(self, session: Session, name: str) -> models.Team:
        row = session.scalar(select(models.Team).where(models.Team.name == name))
        if row is None:
            self.config.team(name)
            raise UnknownTeam(f"team {name!r} is not in the database")
        return row

    def http_budget(self, source: SourceConfig, **kwargs: object) -> HttpBudget:
        rate, burst = connector_class(source.kind).rate_limit
        settings = source.settings
        rate = settings.get("rate_limit", rate)
        key = _budget_key(source)
        return HttpBudget(key, rate=rate, burst=burst, redis_url=self.redis_url, **kwargs)  # type: ignore[arg-type]

    def connector(self, name: str, **http_kwargs: object):  # type: ignore[no-untyped-def]
        source = self.source_config(name)
        cls = connector_class(source.kind)
        return cls(source, self.http_budget(source, **http_kwargs))


def _budget_key(source: SourceConfig) -> str:
    """Rate limits are per integration (Notion token) or tenant (Graph), not per source."""

    settings = source.settings
    ident = settings.get("token") or settings.get("tenant_id") or settings.get("access_token") or source.name
    return f"{source.kind}:{hashlib.sha256(str(ident).encode()).hexdigest()[:16]}"


def _unsealed_differs(box: SecretBox, stored: dict, settings: dict) -> bool:  # type: ignore[type-arg]
    try:
        return _unseal(box, stored) != settings
    except ValueError:
        return True


def _unseal(box: SecretBox, value):  # type: ignore[no-untyped-def]
    if isinstance(value, dict):
        return {k: _unseal(box, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unseal(box, v) for v in value]
    if isinstance(value, str):
        return box.decrypt(value)
    return value
