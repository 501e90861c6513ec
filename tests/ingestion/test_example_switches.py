"""`[teams.examples]` and the distillation fields of `[teams.training]`: validated, and the
example kinds they switch off are not built."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.base import parse_record
from ingestion.corpus.runner import ingest_records
from ingestion.processing.pipeline import process_team
from tacit.cli.export import export_rows
from tacit.config import ConfigError, TeamConfig, parse_config
from tacit.context import Context

PAGE = {"type": "document", "external_id": "p", "title": "Basalt",
        "text": "# Basalt\n\n## Retention\n\nBackups are kept for 35 days in the Oslo region.\n\n"
                "| Service | Owner |\n|---|---|\n| Basalt | Ada Lovelace |\n"}


@pytest.fixture
def with_switches(default_teams: str, default_sources: str) -> Callable[[str], str]:
    """The default config body with `table` added to the platform team."""

    def body(table: str) -> str:
        return default_teams.replace('name = "platform"\nbase_model = "tiny-random"',
                                     f'name = "platform"\nbase_model = "tiny-random"\n{table}') + default_sources

    return body


def test_defaults_build_every_kind_and_distillation_has_a_weight() -> None:
    team = TeamConfig(name="t")
    assert (team.examples.cpt, team.examples.structure_qa, team.examples.study) == (True, True, True)
    assert team.training.distill_weight > 0


@pytest.mark.parametrize(("table", "message"), [
    ("[teams.examples]\nstudy = \"maybe\"", "teams.0.examples.study: Input should be a valid boolean"),
    ("[teams.examples]\nfaq = true", "teams.0.examples.faq: Extra inputs are not permitted"),
    ("[teams.training]\ndistill_weight = -1", "teams.0.training.distill_weight: Input should be greater than or equal to 0"),
])
def test_bad_switches_are_one_line_configuration_errors(table: str, message: str,
                                                        with_switches: Callable[[str], str]) -> None:
    import tomllib

    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_config(tomllib.loads(with_switches(table)))


def _kinds(make_ctx: Callable[..., Context], url: str, body: str) -> set[tuple[str, str]]:
    ctx = make_ctx(url, body=body)
    summary = ingest_records(ctx, "assistant", [parse_record(PAGE)])
    assert summary.failures == 0
    process_team(ctx, "platform")
    return {(r["kind"], r["origin"]) for r in export_rows(ctx, "examples", "platform")}


def test_switching_off_raw_text_and_structure(make_ctx: Callable[..., Context], tmp_path: Path,
                                               with_switches: Callable[[str], str]) -> None:
    everything = _kinds(make_ctx, f"sqlite:///{tmp_path / 'a.db'}", with_switches(""))
    assert ("cpt", "chunk") in everything and ("qa", "structure") in everything
    kinds = _kinds(make_ctx, f"sqlite:///{tmp_path / 'b.db'}",
                   with_switches("[teams.examples]\ncpt = false\nstructure_qa = false\nstudy = false"))
    assert kinds == set()
