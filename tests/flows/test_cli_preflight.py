"""`imgflow preflight`: one line per configured service, exit 1 when any fails."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flows.cli import main
from flows.serve import free_port

SERVICE_VARIABLES = ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "IMGFLOW_S3_ENDPOINT")


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git checkout with DVC config and no remote, as the working directory; no service set."""
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    analytics = false\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    for name in SERVICE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_embedded_setup_has_nothing_to_check(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["preflight"]) == 0
    assert capsys.readouterr().out.startswith("nothing to check: embedded setup")


def test_each_failing_service_is_one_failed_line_and_exit_1(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mlflow, prefect = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow)
    monkeypatch.setenv("PREFECT_API_URL", prefect)
    assert main(["preflight"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        f"FAILED MLflow at {mlflow} is unreachable",
        f"FAILED Prefect API at {prefect} is unreachable",
    ]
