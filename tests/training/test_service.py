"""A team's refresh end to end on tiny-random: policy, lineage, gate, continuation, clean retrain,
interrupted runs, the per-team lock, the registry's promote/rollback/export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sqlalchemy import select

from db import models
from db.base import utcnow
from tacit.errors import AdapterStateError, NoAdapter
from tests.training.helpers import (
    NEW_QA,
    PLATFORM_QA,
    SUPPORT_QA,
    add_document,
    add_example,
    add_qa,
    body,
)
from training import registry, service
from training.base_models import TINY, BaseModelError, load_model
from training.policy import team_lock
from training.recipe import LoRARecipe


@pytest.fixture
def sctx(make_ctx, sqlite_url, tmp_path):  # type: ignore[no-untyped-def]
    return make_ctx(sqlite_url, body=body(tmp_path))


def lineage(ctx, version: int) -> dict[int, bool]:  # type: ignore[no-untyped-def]
    with ctx.session() as session:
        row = session.scalar(select(models.Adapter).where(models.Adapter.version == version))
        return {lin.example_id: lin.replay for lin in
                session.scalars(select(models.AdapterLineage).where(models.AdapterLineage.adapter_id == row.id))}


def test_refresh_promotes_then_continues_then_has_nothing_new(sctx) -> None:  # type: ignore[no-untyped-def]
    first_ids = add_qa(sctx, "platform", PLATFORM_QA)
    add_example(sctx, "platform", "cpt", {"text": "The primary Postgres cluster is called Basalt."})
    add_qa(sctx, "support", SUPPORT_QA)

    v1 = service.refresh_adapter(sctx, "platform")
    assert v1["status"] == "promoted", v1["reason"]
    assert (v1["version"], v1["parent_version"], v1["continued_from"], v1["clean_retrain"]) == (1, None, None, False)
    assert v1["examples"]["new"] == 5 and v1["examples"]["replayed"] == 0
    m = v1["metrics"]
    assert m["eval_source"] == "eval_set" and m["qa_n"] == 6
    assert m["qa_logprob_after"] > m["qa_logprob_before"]
    assert set(m["leakage"]) == {"support"}
    assert v1["train"]["padding_waste_pct"] == 0.0
    assert v1["train"]["steps"] == 12

    new_ids = add_qa(sctx, "platform", NEW_QA)
    v2 = service.refresh_adapter(sctx, "platform")
    assert v2["version"] == 2 and v2["continued_from"] == 1 and v2["clean_retrain"] is False, v2
    seen = lineage(sctx, 2)
    assert [i for i, replay in seen.items() if not replay] == new_ids
    replayed = [i for i, replay in seen.items() if replay]
    assert len(replayed) == 5 and set(replayed) == set(first_ids + [first_ids[-1] + 1])  # all 5 (floor of 8)
    assert v2["status"] == "promoted", v2["reason"]

    again = service.refresh_adapter(sctx, "platform")
    assert again == {"team": "platform", "status": "skipped", "active_version": 2,
                     "reason": "nothing to train on: no live examples since version 2"}

    rows = registry.list_versions(sctx, "platform")
    assert [(r["version"], r["status"], r["parent_version"]) for r in rows] == [(1, "retired", None), (2, "active", 1)]
    shown = registry.show_version(sctx, "platform")
    assert shown["version"] == 2
    assert shown["lineage"]["new"] == 2 and shown["lineage"]["replayed"] == 5
    assert shown["lineage"]["in_weights"] == 7 and shown["lineage"]["versions_in_weights"] == [2, 1]
    assert shown["deleted_documents"] == {"trained_without_deleted_documents": True, "flagged": [], "excluded": []}


def test_gate_rejects_when_team_qa_does_not_improve(make_ctx, sqlite_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(sqlite_url, body=body(tmp_path, lr=1e-9, max_steps=2))
    add_qa(ctx, "platform", PLATFORM_QA)
    result = service.refresh_adapter(ctx, "platform")
    assert result["status"] == "rejected"
    assert result["reason"].startswith("team QA did not improve over the base model")
    assert result["active_version"] is None
    (row,) = registry.list_versions(ctx, "platform")
    assert row["status"] == "rejected" and row["reason"] == result["reason"]
    # The same examples are not tried again until something new arrives (or --force).
    skipped = service.refresh_adapter(ctx, "platform")
    assert skipped["status"] == "skipped" and "already tried by a rejected version" in skipped["reason"]
    forced = service.refresh_adapter(ctx, "platform", force=True)
    assert forced["version"] == 2 and forced["status"] == "rejected"


def test_policy_waits_for_enough_new_tokens(make_ctx, sqlite_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(sqlite_url, body=body(tmp_path, min_new_tokens=100000))
    assert service.refresh_adapter(ctx, "platform")["reason"] == "nothing to train on: no live examples yet"
    add_qa(ctx, "platform", PLATFORM_QA)
    first = service.refresh_adapter(ctx, "platform")  # no adapter yet: any new knowledge is worth a first version
    assert first["why"].startswith("first version: ") and first["status"] == "promoted"
    add_qa(ctx, "platform", NEW_QA[:1])
    result = service.refresh_adapter(ctx, "platform")
    assert result["status"] == "skipped" and result["active_version"] == 1
    assert result["reason"].startswith("not due: ") and result["reason"].endswith(
        "new tokens since version 1, fewer than min_new_tokens=100000")
    assert [r["version"] for r in registry.list_versions(ctx, "platform")] == [1]


def test_clean_retrain_when_a_learned_document_is_deleted(sctx) -> None:  # type: ignore[no-untyped-def]
    doc = add_document(sctx, "platform", "assistant", "runbook", "Backups are kept for 35 days.")
    from_doc = add_example(sctx, "platform", "cpt", {"text": "Backups are kept for 35 days."}, document_id=doc)
    kept = add_qa(sctx, "platform", PLATFORM_QA)
    assert service.refresh_adapter(sctx, "platform")["status"] == "promoted"
    with sctx.session() as session:
        session.get(models.Document, doc).deleted_at = utcnow()
        session.get(models.Example, from_doc).retired_at = utcnow()
    v1 = registry.show_version(sctx, "platform", 1)
    assert v1["deleted_documents"]["trained_without_deleted_documents"] is False
    assert [d["external_id"] for d in v1["deleted_documents"]["flagged"]] == ["runbook"]

    result = service.refresh_adapter(sctx, "platform")
    assert result["clean_retrain"] is True and result["continued_from"] is None
    assert result["why"] == "clean retrain: a document it learned from was deleted at the source (runbook)"
    assert sorted(lineage(sctx, 2)) == kept  # every live example, and not the deleted document's
    v2 = registry.show_version(sctx, "platform", 2)
    assert v2["deleted_documents"]["trained_without_deleted_documents"] is True
    assert [d["external_id"] for d in v2["deleted_documents"]["excluded"]] == ["runbook"]


def test_clean_retrain_when_flagged(sctx) -> None:  # type: ignore[no-untyped-def]
    add_qa(sctx, "platform", PLATFORM_QA)
    assert service.refresh_adapter(sctx, "platform")["status"] == "promoted"
    with sctx.session() as session:
        row = session.scalar(select(models.Adapter).where(models.Adapter.version == 1))
        row.needs_clean_retrain, row.flag_reason = True, "an example was retired"
    result = service.refresh_adapter(sctx, "platform")
    assert result["clean_retrain"] is True and result["continued_from"] is None and result["parent_version"] == 1
    assert result["why"] == "clean retrain: version 1 is flagged: an example was retired"


def test_interrupted_refresh_resumes_from_its_checkpoint(sctx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    add_qa(sctx, "platform", PLATFORM_QA)
    original = LoRARecipe._run_step

    def crash_at_step_11(self, seqs):  # type: ignore[no-untyped-def]
        if self.step == 10:
            raise KeyboardInterrupt
        return original(self, seqs)

    monkeypatch.setattr(LoRARecipe, "_run_step", crash_at_step_11)
    with pytest.raises(KeyboardInterrupt):
        service.refresh_adapter(sctx, "platform")
    (row,) = registry.list_versions(sctx, "platform")
    assert row["status"] == "training" and row["reason"] == "interrupted"
    assert (Path(row["path"]) / "checkpoint.pt").exists()
    monkeypatch.setattr(LoRARecipe, "_run_step", original)
    result = service.refresh_adapter(sctx, "platform")
    assert result["version"] == 1 and result["why"] == "resuming interrupted version 1"
    assert result["train"]["resumed_from_step"] == 10 and result["train"]["steps"] == 12
    assert not (Path(row["path"]) / "checkpoint.pt").exists()


def test_second_request_is_coalesced_by_the_team_lock(ctx) -> None:  # type: ignore[no-untyped-def]
    held = team_lock(ctx, "platform")
    assert held.acquire()
    try:
        result = service.refresh_adapter(ctx, "platform")
        assert result["status"] == "already training"
        assert service.refresh_adapter(ctx, "support")["status"] == "skipped"  # other teams are not blocked
    finally:
        held.release()
    assert service.refresh_adapter(ctx, "platform")["status"] == "skipped"


def test_team_lock_in_redis_is_shared_by_workers(make_ctx, sqlite_url, redis_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(sqlite_url, body=body(tmp_path), broker_url=redis_url)
    other_worker = team_lock(ctx, "platform")
    assert other_worker.acquire()
    try:
        assert service.refresh_adapter(ctx, "platform")["status"] == "already training"
        assert not team_lock(ctx, "platform").acquire()
    finally:
        other_worker.release()
    again = team_lock(ctx, "platform")
    assert again.acquire()
    again.release()


def test_missing_base_model_is_a_clear_error(make_ctx, sqlite_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(sqlite_url, body=body(tmp_path, base_model="no-such-model"))
    add_qa(ctx, "platform", PLATFORM_QA)
    with pytest.raises(BaseModelError, match="unknown base model 'no-such-model'"):
        service.refresh_adapter(ctx, "platform")
    assert registry.list_versions(ctx, "platform") == []


def _fake_version(ctx, team: str, version: int, status: str, path: Path) -> None:  # type: ignore[no-untyped-def]
    with ctx.session() as session:
        team_row = ctx.team_row(session, team)
        session.add(models.Adapter(team_id=team_row.id, version=version, status=status, base_model=TINY,
                                   path=str(path), promoted_at=utcnow() if status in ("active", "retired") else None))


def test_promote_and_rollback(ctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from peft import get_peft_model

    from training.recipe import lora_config

    adapter = tmp_path / "peft"
    get_peft_model(load_model(TINY), lora_config(16, 32)).save_pretrained(str(adapter))
    _fake_version(ctx, "platform", 1, "active", adapter)
    _fake_version(ctx, "platform", 2, "candidate", adapter)
    with pytest.raises(AdapterStateError, match="first active version"):
        registry.rollback(ctx, "platform")
    assert registry.promote(ctx, "platform", 2, "promoted by hand") == "platform: version 2 is active (was 1)"
    assert registry.promote(ctx, "platform", 2, "again") == "platform: version 2 is already active"
    with pytest.raises(NoAdapter, match="no adapter version 9"):
        registry.promote(ctx, "platform", 9, "x")
    assert registry.rollback(ctx, "platform") == "platform: rolled back from version 2 to version 1"
    statuses = {r["version"]: (r["status"], r["reason"]) for r in registry.list_versions(ctx, "platform")}
    assert statuses == {1: ("active", "restored by rollback from version 2"), 2: ("rejected", "rolled back to version 1")}
    with pytest.raises(AdapterStateError, match="nothing to roll back to"):
        registry.rollback(ctx, "platform")
    assert registry.show_version(ctx, "platform")["version"] == 1


def test_export_is_a_servable_peft_directory(sctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from peft import PeftModel

    add_qa(sctx, "platform", PLATFORM_QA)
    assert service.refresh_adapter(sctx, "platform")["status"] == "promoted"
    dest = registry.export(sctx, "platform", tmp_path / "export")
    assert sorted(p.name for p in dest.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors", "tacit.json"]
    config = json.loads((dest / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 16 and config["lora_alpha"] == 32
    assert not config.get("modules_to_save") and config["use_dora"] is False and config["use_rslora"] is False
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    info = json.loads((dest / "tacit.json").read_text())
    assert (info["team"], info["version"], info["base_model"]) == ("platform", 1, TINY)

    # PEFT loads the exported folder as it is, with the trained weights.
    active = Path(registry.show_version(sctx, "platform")["path"])
    reloaded = PeftModel.from_pretrained(load_model(TINY), str(dest))
    original = PeftModel.from_pretrained(load_model(TINY), str(active))
    ids = torch.tensor([[1, 9690, 198, 2683, 359, 253]])
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, original(input_ids=ids).logits)
        with reloaded.disable_adapter():
            assert not torch.equal(reloaded(input_ids=ids).logits, original(input_ids=ids).logits)

    with pytest.raises(registry.ExportError, match="not an empty folder"):
        registry.export(sctx, "platform", dest)
    for change, message in [({"modules_to_save": ["lm_head"]}, "modules_to_save"), ({"use_dora": True}, "DoRA"),
                            ({"r": 12}, "rank 12")]:
        bad = tmp_path / f"bad-{message.split()[0]}"
        bad.mkdir()
        (bad / "adapter_model.safetensors").write_bytes((dest / "adapter_model.safetensors").read_bytes())
        (bad / "adapter_config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(registry.ExportError, match=message):
            registry.check_adapter_dir(bad)


def test_a_broken_eval_set_is_a_clear_error_and_writes_nothing(make_ctx, sqlite_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from training.evaluate import EvalSetError

    ctx = make_ctx(sqlite_url, body=body(tmp_path))
    (tmp_path / "platform-eval.jsonl").write_text('{"question": "no answer"}\n')
    add_qa(ctx, "platform", PLATFORM_QA)
    with pytest.raises(EvalSetError, match=r"platform-eval.jsonl:1: not a"):
        service.refresh_adapter(ctx, "platform")
    assert registry.list_versions(ctx, "platform") == []
