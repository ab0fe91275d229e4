"""reports/registry.json and the register stage's printed table."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.registry.registry_report import format_table, write_registry_report
from tasks.registry.versions import RegisteredModel


def test_registry_json_keeps_field_order_and_table_aligns(tmp_path: Path) -> None:
    entries = [
        RegisteredModel("cnn", "digits-cnn", "2", "abc123", "test_accuracy", 0.97, False),
        RegisteredModel(
            "gan",
            "digits-gan",
            "1",
            "def456",
            "recognisable_share",
            0.8,
            True,
            decision="rejected",
            reason="worse",
            champion_version="3",
            champion_score=0.9,
            judge="digits-cnn v4 (champion)",
        ),
    ]
    path = tmp_path / "reports" / "registry.json"
    write_registry_report(entries, path)
    text = path.read_text()
    assert json.loads(text)[1] == {
        "model": "gan",
        "registered_name": "digits-gan",
        "version": "1",
        "run_id": "def456",
        "headline_metric": "recognisable_share",
        "headline_value": 0.8,
        "reused": True,
        "decision": "rejected",
        "reason": "worse",
        "champion_version": "3",
        "champion_score": 0.9,
        "metrics": {},
        "champion_metrics": {},
        "judge": "digits-cnn v4 (champion)",
    }
    # Field order, two-space indent and a trailing newline, as the DVC output always was.
    assert text.startswith('[\n  {\n    "model": "cnn",\n    "registered_name"')
    assert text.endswith("\n  }\n]\n")
    assert [item.name for item in path.parent.iterdir()] == ["registry.json"]
    lines = format_table(entries).splitlines()
    assert len(lines) == 3
    assert lines[1].split() == [
        "cnn",
        "test_accuracy",
        "0.9700",
        "abc123",
        "digits-cnn",
        "2",
        "new",
        "-",
        "-",
    ]
    assert lines[2].split()[-4:] == ["unchanged", "v3", "0.9000", "rejected"]
    assert lines[0].index("mlflow run") == lines[1].index("abc123")
