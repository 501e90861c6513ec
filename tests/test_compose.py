"""docker-compose.yml cannot run here (no Docker engine); it is parsed and checked instead."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.main import get_command

from tacit.cli import app

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {"postgres", "redis", "api", "worker", "trainer", "beat", "flower", "inference"}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_production_service_is_there_with_a_health_check() -> None:
    services = _compose()["services"]
    assert REQUIRED <= set(services)
    for name in REQUIRED:
        assert "healthcheck" in services[name], name


def test_every_tacit_service_runs_a_real_cli_command() -> None:
    services = _compose()["services"]
    cli = get_command(app)
    checked = 0
    for name, service in services.items():
        if service.get("image", "").startswith(("postgres", "redis", "vllm/")):
            continue
        command = service["command"]
        entry = service.get("entrypoint", ["tacit"])
        if entry == ["celery"]:
            assert command[:2] == ["-A", "ingestion.worker.celery_app"], name
            continue
        ctx = cli.make_context("tacit", list(command), resilient_parsing=False)
        sub = cli.get_command(ctx, command[0])
        assert sub is not None, f"{name}: tacit {command[0]} is not a command"
        sub.make_context(command[0], list(command[1:]))  # raises on an unknown option
        checked += 1
    assert checked >= 4


def test_trainer_reserves_a_gpu_and_adapters_share_a_volume() -> None:
    services = _compose()["services"]
    devices = services["trainer"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    for name in ("api", "worker", "trainer", "beat"):
        assert "tacit-data:/data" in services[name]["volumes"], name
    queues = {services[n]["command"][services[n]["command"].index("--queues") + 1] for n in ("worker", "trainer")}
    assert queues == {"sync,process", "train"}


def test_inference_serves_loras_loaded_at_runtime_from_the_adapters_volume() -> None:
    """vLLM with LoRA on, runtime loading allowed (https://docs.vllm.ai/en/latest/features/lora/),
    reading the same volume the trainers write adapters to, and ranks up to Tacit's largest default."""
    inference = _compose()["services"]["inference"]
    assert inference["image"].startswith("vllm/vllm-openai:")
    assert inference["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    command = inference["command"]
    assert "--enable-lora" in command and int(command[command.index("--max-lora-rank") + 1]) >= 16
    assert "tacit-data:/data:ro" in inference["volumes"]
    assert inference["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
