"""The protocol's JSON Schemas are generated from the message models and committed without drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kubesaga.cli import app
from kubesaga.models import Command, Result
from kubesaga.schema import SCHEMA_DIR, message_schema, message_schema_files

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_both_messages_have_a_schema_file() -> None:
    assert set(message_schema_files()) == {"command.schema.json", "result.schema.json"}


@pytest.mark.parametrize("name", ["command.schema.json", "result.schema.json"])
def test_committed_schema_matches_the_models(name: str) -> None:
    path = REPO_ROOT / SCHEMA_DIR / name
    assert path.exists(), f"{path} is missing; run `kubesaga schemas --output-dir {SCHEMA_DIR}`"
    if path.read_text(encoding="utf-8") != message_schema_files()[name]:
        pytest.fail(
            f"{SCHEMA_DIR}/{name} is out of date with the models; run "
            f"`kubesaga schemas --output-dir {SCHEMA_DIR}` and commit the result",
            pytrace=False,
        )


def test_schemas_are_json_schema_2020_12_with_camel_case_names() -> None:
    schema = message_schema(Command)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"dispatchId", "saga", "step", "kind", "attempt", "action"} <= set(schema["required"])
    assert "dispatch_id" not in schema["properties"]
    assert schema["properties"]["version"]["const"] == 1


def test_command_kinds_and_result_statuses_are_enumerated() -> None:
    command = message_schema(Command)
    result = message_schema(Result)
    assert command["$defs"]["CommandKind"]["enum"] == ["execute", "compensate"]
    assert result["$defs"]["ResultStatus"]["enum"] == ["succeeded", "failed"]


def test_schema_fields_match_the_wire_form_of_a_message() -> None:
    command = Command.model_validate(
        {
            "dispatchId": "uid.step.execute.1.abc",
            "saga": {"namespace": "default", "name": "order", "uid": "uid"},
            "step": "create_order",
            "kind": "execute",
            "action": "orders.create",
            "attempt": 1,
        }
    )
    properties = message_schema(Command)["properties"]
    assert set(command.to_wire()) <= set(properties)


def test_files_are_stable_json() -> None:
    for name, text in message_schema_files().items():
        assert text.endswith("\n"), name
        assert json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n" == text


def test_cli_writes_the_schemas(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["schemas", "--output-dir", str(tmp_path / "schemas")])
    assert result.exit_code == 0, result.output
    written = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "schemas").iterdir()}
    assert written == message_schema_files()
