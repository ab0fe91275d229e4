"""`make clean` in a scratch git repository: untracked pipeline outputs go, git-tracked files
in the same folders (the committed metrics, curves and drift baseline) and data/ stay."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TRACKED = (
    "metrics/cnn.json",
    "plots/history/cnn.csv",
    "artifacts/accepted_data.json",
    "artifacts/.gitignore",
)
UNTRACKED_OUTPUTS = (
    "artifacts/prepared/splits.npz",
    "artifacts/models/cnn/model.keras",
    "artifacts/checkpoints/cnn/epoch-1.keras",
    "plots/images/cnn/grid.png",
    "reports/registry.json",
)
KEPT_UNTRACKED = ("data/0/0000.png", "mlflow.db", "reports/run_report.md")


def git(repo: Path, *args: str) -> None:
    identity = ["-c", "user.email=test@example.com", "-c", "user.name=test"]
    subprocess.run(["git", *identity, *args], cwd=repo, check=True, capture_output=True)


def test_make_clean_removes_only_untracked_outputs(tmp_path: Path) -> None:
    shutil.copy2(REPO_ROOT / "Makefile", tmp_path / "Makefile")
    for name in (*TRACKED, *UNTRACKED_OUTPUTS, *KEPT_UNTRACKED):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / "artifacts/.gitignore").write_text("/prepared\n/models\n/checkpoints\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", *TRACKED)
    git(tmp_path, "commit", "-q", "-m", "tracked outputs")
    (tmp_path / "metrics/cnn.json").write_text("edited, not committed")

    subprocess.run(["make", "clean"], cwd=tmp_path, check=True, capture_output=True)

    assert [name for name in UNTRACKED_OUTPUTS if (tmp_path / name).exists()] == []
    assert all((tmp_path / name).is_file() for name in (*TRACKED, *KEPT_UNTRACKED))
    assert (tmp_path / "metrics/cnn.json").read_text() == "edited, not committed"
