"""The promotion gate on real data: two `dvc repro` runs on digits in a temporary repo copy.

Run 1 trains with the repository's params.yaml and (thresholds permitting) promotes each model to
`champion`; run 2 weakens the training params (fewer epochs, smaller networks), so its
challengers must be rejected against the champions re-scored on the same test split. Prints the
gate decisions, an excerpt of the run report and the lineage of the champion.

    .venv/bin/python -m benchmarks.gate_demo [--keep DIR]

The copy is made from `git archive HEAD` (committed code only), never touches this checkout.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WEAKENED = {
    "cnn": {"epochs": 1, "filters": [4], "dense_units": 8},
    "rnn": {"epochs": 1, "lstm_units": [8]},
    "gan": {"epochs": 2, "base_filters": 8},
}


def _run(command: list[str], repo: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done.stdout + done.stderr


def make_copy(repo: Path) -> None:
    archive = subprocess.run(
        ["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(repo, filter="data")
    sys.path.insert(0, str(repo))
    from tasks.ingest import ingest

    ingest("digits", None, repo / "data")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "demo"]):
        subprocess.run(
            ["git", "-c", "user.email=demo@example.com", "-c", "user.name=demo", *args],
            cwd=repo,
            check=True,
            capture_output=True,
        )


def section_of_report(text: str, start: str = "## Gate decisions") -> str:
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    end = next((i for i in range(first + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[first:end])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="use (and keep) this folder instead of a temp")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="imgflow-gate-demo-"))
    repo = base / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    make_copy(repo)
    env = dict(os.environ)
    env |= {
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
        "PYTHONPATH": str(repo),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]]),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "IMGFLOW_USER": "gate-demo",
    }
    dvc = [sys.executable, "-m", "dvc"]
    for run, weaken in ((1, False), (2, True)):
        if weaken:
            params = yaml.safe_load((repo / "params.yaml").read_text())
            for model, changes in WEAKENED.items():
                params["train"][model].update(changes)
            (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            _run(["git", "-c", "user.email=d@e", "-c", "user.name=d", "commit", "-qam",
                  "weaken"], repo, env)  # fmt: skip
            print(f"run 2: weakened train params {WEAKENED}")
        started = time.perf_counter()
        output = _run([*dvc, "repro"], repo, env)
        seconds = time.perf_counter() - started
        print(f"\n=== run {run}: dvc repro ({seconds:.0f} s) ===")
        print("\n".join(line for line in output.splitlines() if "digits-" in line))
        report = (repo / "reports/run_report.md").read_text()
        print(f"\n--- reports/run_report.md (run {run}), excerpt ---")
        print(section_of_report(report))
        shutil.copy(repo / "reports/run_report.md", base / f"run_report_{run}.md")
        shutil.copy(repo / "reports/run_report.html", base / f"run_report_{run}.html")
    print("\n=== imgflow lineage digits-cnn @champion ===")
    lineage = [sys.executable, "-m", "flows.cli", "lineage", "digits-cnn", "@champion"]
    print(_run(lineage, repo, env))
    print(f"reports kept in {base}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
