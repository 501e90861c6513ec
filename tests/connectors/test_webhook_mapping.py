"""JMESPath mappings, strict JSON and all-or-nothing record validation of pushed bodies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.base import Document, Interaction, Tombstone
from connectors.webhook.connector import WebhookSettings
from connectors.webhook.mapping import JsonMapping
from connectors.webhook.payload import PayloadError, parse_json, records_from_body
from tacit.config import ConfigError, load_config

FEEDBACK = {
    "type": "'interaction'", "external_id": "id", "kind": "'feedback'",
    "messages": "[{role: 'user', text: question, author: user.email}, {role: 'assistant', text: answer}]",
    "rating": "score", "correction": "fix", "document_external_id": "doc",
}


def test_mapping_turns_a_vendor_body_into_feedback() -> None:
    body = {"id": 991, "question": "How do I deploy?", "answer": "make deploy", "score": -1,
            "fix": "Use the release pipeline.", "user": {"email": "ada@example.com"}, "doc": None}
    [record] = records_from_body(body, JsonMapping(FEEDBACK))
    assert isinstance(record, Interaction)
    assert record.external_id == "991"  # a numeric id becomes a string
    assert record.kind == "feedback" and record.rating == -1.0 and record.correction == "Use the release pipeline."
    assert [(m.role, m.text, m.author) for m in record.messages] == [
        ("user", "How do I deploy?", "ada@example.com"), ("assistant", "make deploy", "")]
    assert record.document_external_id is None  # null leaves the field out


def test_items_expression_splits_and_filters() -> None:
    spec = {"items": "events[?kind=='page']", "type": "'document'", "external_id": "key",
            "title": "name", "text": "join('\n', lines)"}
    body = {"events": [{"kind": "page", "key": "a", "name": "A", "lines": ["x", "y"]},
                       {"kind": "ping"},
                       {"kind": "page", "key": "b", "name": "B", "lines": []}]}
    docs = records_from_body(body, JsonMapping(spec))
    assert [(d.external_id, d.title, d.text) for d in docs] == [("a", "A", "x\ny"), ("b", "B", "")]
    assert records_from_body({"events": None}, JsonMapping(spec)) == []
    # Without `items`, a list body maps each element.
    no_items = {k: v for k, v in spec.items() if k != "items"}
    assert len(records_from_body(body["events"][::2], JsonMapping(no_items))) == 2


def test_a_failing_mapping_is_refused_with_the_reason() -> None:
    mapping = JsonMapping(FEEDBACK)
    with pytest.raises(PayloadError, match="mapping.external_id yields null"):
        records_from_body({"question": "q", "answer": "a"}, mapping)
    with pytest.raises(PayloadError, match="messages"):
        records_from_body({"id": 1, "question": 3, "answer": "a"}, mapping)  # text must be a string
    with pytest.raises(PayloadError, match="mapping.title failed"):
        records_from_body({"k": 1}, JsonMapping({"type": "'document'", "external_id": "'x'", "title": "length(k)"}))


@pytest.mark.parametrize("spec, message", [
    ({"type": "'document'"}, "needs external_id"),
    ({"type": "'document'", "external_id": "id", "colour": "c"}, "unknown mapping field"),
    ({"type": "'document'", "external_id": "id["}, "invalid JMESPath"),
])
def test_bad_mappings_are_configuration_errors(spec: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        JsonMapping(spec)
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in spec.items())
    (tmp_path / "tacit.toml").write_text(
        '[[teams]]\nname = "t"\n[[sources]]\nname = "s"\nkind = "webhook"\nteam = "t"\n'
        f"[sources.mapping]\n{lines}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as err:
        load_config(tmp_path / "tacit.toml")
    assert "\n" not in str(err.value)


def test_settings_secret_list_and_mapping_from_toml(tmp_path: Path) -> None:
    (tmp_path / "tacit.toml").write_text(
        '[[teams]]\nname = "t"\n[[sources]]\nname = "s"\nkind = "webhook"\nteam = "t"\n'
        'secret = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_YW5vdGhlci1zZWNyZXQtb2YtMzItYnl0ZXMtbG9uZyE="]\n'
        '[sources.mapping]\ntype = "\'tombstone\'"\nexternal_id = "id"\n', encoding="utf-8")
    settings = WebhookSettings.model_validate(load_config(tmp_path / "tacit.toml").source("s").settings)
    assert len(settings.signing_keys) == 2 and settings.signed
    assert records_from_body({"id": "x"}, settings.compiled_mapping) == [Tombstone(external_id="x")]
    with pytest.raises(ValueError, match="whsec_"):
        WebhookSettings(secret="not base64 !")


def test_record_format_all_or_nothing_and_last_wins() -> None:
    ok = {"type": "document", "external_id": "a", "title": "A"}
    records = records_from_body([ok, {"type": "tombstone", "external_id": "b"},
                                 {**ok, "title": "A2"}])
    assert [type(r).__name__ for r in records] == ["Tombstone", "Document"]
    assert isinstance(records[1], Document) and records[1].title == "A2"
    with pytest.raises(PayloadError) as err:
        records_from_body([ok, {"type": "document"}, {"type": "mystery", "external_id": "x"}])
    assert "item 1: external_id: Field required" in str(err.value)
    assert "item 2: unknown record type 'mystery'" in str(err.value)
    with pytest.raises(PayloadError, match="body: a record must be a JSON object"):
        records_from_body("just text")
    assert records_from_body([]) == []


@pytest.mark.parametrize("raw, message", [
    (b"{", "malformed JSON"),
    (b'{"a": NaN}', "NaN is not JSON"),
    (b'{"a": 1e999}', "out of range"),
    (b"[" * 5000 + b"]" * 5000, "nested deeper"),
    (b"9" * 5000, "malformed JSON"),
    (b'{"a": "\xff"}', "not valid UTF-8 at byte 7"),
])
def test_strict_json(raw: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message) as err:
        parse_json(raw)
    assert err.value.reason == "malformed"


def test_strings_are_made_storable() -> None:
    body = parse_json(b'\xef\xbb\xbf{"type": "document", "external_id": "a\\u0000b", "title": "x\\ud800y",'
                      b' "metadata": {"k\\u0000": "\\udc00"}}')
    [doc] = records_from_body(body)
    assert isinstance(doc, Document)
    assert doc.external_id == "ab" and doc.title == "x\ufffdy" and doc.metadata == {"k": "\ufffd"}


def test_ids_and_times_must_fit_the_database() -> None:
    with pytest.raises(PayloadError, match="longer than 1024 bytes"):
        records_from_body({"type": "tombstone", "external_id": "\U0001f600" * 300})
    assert records_from_body({"type": "tombstone", "external_id": "a" * 1024})
    with pytest.raises(PayloadError, match="created_at: out of range"):
        records_from_body({"type": "document", "external_id": "a", "created_at": "0001-01-01T00:00:00+05:00"})
    with pytest.raises(PayloadError, match="messages.0.at: out of range"):
        records_from_body({"type": "interaction", "external_id": "i", "kind": "chat",
                           "messages": [{"text": "t", "at": "9999-12-31T23:00:00-05:00"}]})
