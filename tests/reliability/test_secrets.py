"""Secrets: encrypted at rest, rotatable, never in logs or stored rows in clear text."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from db import models
from tacit.config import load_config
from tacit.context import Context
from tacit.secrets import SecretBox

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TEAMS = '[[teams]]\nname = "platform"\nbase_model = "tiny-random"\n'
SOURCE = f'[[sources]]\nname = "assistant"\nkind = "webhook"\nteam = "platform"\nsecret = "{SECRET}"\n'


def _all_rows_text(ctx: Context) -> str:
    dump = []
    with ctx.session() as session:
        for table in models.Source.metadata.sorted_tables:
            for row in session.execute(select(table)).all():
                dump.append(json.dumps([str(v) for v in row]))
    return "\n".join(dump)


def test_secret_is_encrypted_in_the_database_and_masked_in_logs(write_config: Callable[..., Path], db_url: str, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    ctx = Context(load_config(write_config(tmp_path, db_url, TEAMS + SOURCE)))
    assert SECRET not in _all_rows_text(ctx)
    with ctx.session() as session:
        stored = ctx.source_row(session, "assistant").config["secret"]
    assert stored.startswith("fernet:") and ctx.secrets.decrypt(stored) == SECRET
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("connectors.webhook").warning("could not verify with secret %s", SECRET)
        logging.getLogger("x").info(f"inline {SECRET}")
    text_logged = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in text_logged and text_logged.count("********") == 2


def test_key_rotation(write_config: Callable[..., Path], sqlite_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("TACIT_SECRET_KEY", old)
    path = write_config(tmp_path, sqlite_url, TEAMS + SOURCE)
    Context(load_config(path))
    # Add the new key in front; the old one still decrypts until everything is rotated.
    monkeypatch.setenv("TACIT_SECRET_KEY", f"{new},{old}")
    from tacit.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--config", str(path), "sources", "rotate-key"])
    assert done.value.code == 0
    monkeypatch.setenv("TACIT_SECRET_KEY", new)  # the old key is gone now
    ctx = Context(load_config(path))
    with ctx.session() as session:
        stored = ctx.source_row(session, "assistant").config["secret"]
    assert SecretBox([new.encode()]).decrypt(stored) == SECRET
    with pytest.raises(ValueError, match="cannot be decrypted"):
        SecretBox([old.encode()]).decrypt(stored)


def test_sql_goes_through_bound_parameters(ctx: Context) -> None:
    hostile = "x'); DROP TABLE documents; --"
    from connectors.base import Document
    from ingestion.corpus.runner import ingest_records

    ingest_records(ctx, "assistant", [Document(external_id=hostile, title=hostile, text=hostile)])
    with ctx.session() as session:
        assert session.scalar(select(models.Document.external_id)) == hostile
        assert session.execute(text("select count(*) from documents")).scalar() == 1
