"""Security: no connector secret in any log line, stored row or command output; constant-time checks.

A real sync of both sandboxes (Notion with its integration token; Microsoft Graph with client
credentials against the sandbox's token authority), signed webhook deliveries (one with a wrong
signature), retries and processing, all with every logger at DEBUG: then every captured log line
(formatted, tracebacks included), every row of every table and the output of `tacit sources
show`, `tacit status --json` and `tacit events list --json` are searched for the Notion token, the
Graph client secret, the access tokens the authority issued, and the webhook secret.

Elsewhere: secrets encrypted at rest with key rotation, and SQL through bound parameters, are
tests/reliability/test_secrets.py; the admin API refusing requests without its token (401) or
without a configured token (403) is tests/ingestion/test_api.py (test_health_admin_api_and_metrics,
test_admin_api_disabled_without_a_token); fuzzed webhook bodies and headers are
tests/ingestion/test_api_fuzz.py.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from connectors.sandbox.graph import GraphSandbox
from connectors.sandbox.graph.workspace import build_company
from connectors.sandbox.notion import NotionSandbox
from connectors.webhook.signatures import sign_headers
from db import models
from ingestion.api.app import create_app
from ingestion.corpus.events import pending_event_ids, process_event
from ingestion.corpus.runner import run_sync
from ingestion.processing.pipeline import process_team
from tacit.context import Context
from tests.connectors.harness_msgraph import source_toml

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "whsec_c2VjcmV0LWtleS1vZi10aGUtYXNzaXN0YW50LXdlYmhvb2s="
LOGGERS = ("", "httpx", "httpcore", "azure", "msal", "notion_client", "connectors", "ingestion", "tacit", "kiota_http",
           "urllib3", "celery", "kombu", "uvicorn")
PACKAGES = ("connectors", "ingestion", "tacit", "training", "db")


def dump_rows(ctx: Context) -> str:
    """Every value of every row of every table, as text."""
    out = []
    with ctx.session() as s:
        for table in models.Source.metadata.sorted_tables:
            for row in s.execute(select(table)).all():
                out.append(json.dumps([str(v) for v in row], ensure_ascii=False))
    return "\n".join(out)


def test_no_secret_in_logs_rows_or_command_output(make_ctx: Callable[..., Context], postgres_url: str,
                                                 caplog: pytest.LogCaptureFixture,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")  # every statement with its parameters
    for name in LOGGERS:  # after it: the capturing handler takes the level last set
        caplog.set_level(logging.DEBUG, logger=name)
    with NotionSandbox() as notion, GraphSandbox(page_size=10) as graph:
        workspace = build_company(graph)
        body = "".join(f'[[teams]]\nname = "{t}"\nbase_model = "tiny-random"\n\n'
                       for t in ("platform", "support", "research"))
        body += notion.source_block("wiki", "platform", rate_limit=10000, comments="pages")
        body += source_toml(graph, workspace, "m365", "platform", "platform")  # client credentials
        body += f'[[sources]]\nname = "assistant"\nkind = "webhook"\nteam = "platform"\nsecret = "{WEBHOOK_SECRET}"\n'
        ctx = make_ctx(postgres_url, body)
        notion.inject(503, count=2, retry_after=0)  # retries are logged too
        graph.inject(503, count=2, retry_after=0)
        assert run_sync(ctx, "wiki").status == "succeeded"
        assert run_sync(ctx, "m365").status == "succeeded"
        with TestClient(create_app(ctx)) as client:
            delivery = json.dumps([{"type": "document", "external_id": "pushed", "title": "Pushed",
                                    "text": "Pushed through the signed webhook."}]).encode()
            ok = client.post("/webhooks/assistant", content=delivery,
                             headers={"content-type": "application/json",
                                      **sign_headers(WEBHOOK_SECRET, "msg-1", delivery)})
            forged = client.post("/webhooks/assistant", content=delivery,
                                 headers={"content-type": "application/json",
                                          **sign_headers("whsec_" + "A" * 32, "msg-2", delivery)})
        assert (ok.status_code, forged.status_code) == (202, 401)
        for event_id in pending_event_ids(ctx):
            process_event(ctx, event_id)
        for team in ("platform", "support", "research"):
            process_team(ctx, team)
        issued = set(graph._issued)
        secrets = {"Notion integration token": notion.token, "Graph client secret": graph.client_secret,
                   "webhook secret": WEBHOOK_SECRET, "webhook key": WEBHOOK_SECRET.removeprefix("whsec_"),
                   **{f"Graph access token {i}": t for i, t in enumerate(issued)}}

    from tacit.cli import main

    capsys.readouterr()
    outputs = []
    for argv in (["sources", "show", "wiki"], ["sources", "show", "m365"], ["sources", "show", "assistant"],
                 ["status", "--json"], ["events", "list", "--json"]):
        with pytest.raises(SystemExit) as done:
            main(["--config", str(ctx.config.path), *argv])
        assert done.value.code == 0
        captured = capsys.readouterr()
        outputs.append(captured.out + captured.err)

    logs = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    rows = dump_rows(ctx)
    # What was searched is real: DEBUG lines of the HTTP clients, the synced corpus, the commands' answers.
    assert len(caplog.records) > 200 and any(r.levelno == logging.DEBUG and r.name.startswith("httpcore")
                                             for r in caplog.records)
    assert any(r.name.startswith("sqlalchemy.engine") for r in caplog.records)
    assert "retrying" in logs and issued and "Pushed through the signed webhook." in rows
    assert '"kind": "notion"' in outputs[0] or "notion" in outputs[0]
    found = {what: where for what, value in secrets.items()
             for where, text in (("logs", logs), ("rows", rows), ("commands", "\n".join(outputs)))
             if value in text}
    assert found == {}


# ------------------------------------------------------------------------------ constant time
SECRETISH = re.compile(r"sig|digest|hmac|token(?!_id\b|izer)|secret|client_?state|password|credential|expected|given|sent|want",
                       re.I)
VERIFIERS = ("connectors/webhook/signatures.py", "connectors/notion/webhooks.py", "connectors/msgraph/webhooks.py",
             "ingestion/api/web.py")


def secret_equalities(source: str) -> list[str]:
    """`==`/`!=` comparisons that involve a secret-looking name: they must be hmac.compare_digest."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            names = [n.id if isinstance(n, ast.Name) else n.attr for side in (node.left, *node.comparators)
                     for n in ast.walk(side) if isinstance(n, ast.Name | ast.Attribute)]
            if any(SECRETISH.search(name) for name in names):
                hits.append(f"line {node.lineno}: {ast.unparse(node)}")
    return hits


def test_secrets_are_compared_in_constant_time() -> None:
    # The guard finds what it guards against (the sandboxes compare tokens plainly, as test servers may).
    assert secret_equalities('if headers.get("authorization") != f"Bearer {sandbox.token}": pass')
    assert secret_equalities("ok = given_signature == expected")
    assert not secret_equalities("done = ids[-1] == tokenizer.eos_token_id")  # a vocabulary id, no secret
    offenders = {}
    for path in sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT)
        if "sandbox" in rel.parts:
            continue
        hits = secret_equalities(path.read_text(encoding="utf-8"))
        if hits:
            offenders[str(rel)] = hits
    assert offenders == {}
    for rel in VERIFIERS:
        assert "hmac.compare_digest(" in (ROOT / rel).read_text(encoding="utf-8"), rel
