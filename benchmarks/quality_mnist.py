"""Quality run: train and evaluate all three models at full params.yaml settings on a dataset.

Issue 4's protocol: ../shared/datasets/mnist-10k ingested through the `idx` source, the
pipeline's stratified 80/10/10 split (seed 42), metrics on the held-out test split. The stages run
as their CLIs in a temporary copy of the repository (never in the working tree), one after the
other, so each training's wall time is its own:

    .venv/bin/python benchmarks/quality_mnist.py                  # MNIST-10k
    .venv/bin/python benchmarks/quality_mnist.py --source digits  # the bundled default
    .venv/bin/python benchmarks/quality_mnist.py --models gan --keep /tmp/q  # reuse a copy

Prints each stage's wall time and the headline metrics next to the issues' targets; for the GAN
also every fidelity/diversity figure of issue 13, overall and per class, with real images' values
in parentheses.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO_ROOT.parent / "shared" / "datasets" / "mnist-10k"
COPIED = ("flows", "tasks", "models", "params.yaml", "dvc.yaml", "pyproject.toml")
TARGETS = {  # CNN and RNN: test accuracy (issue 4); GAN: recognisable share (issue 13)
    "mnist": {"cnn": 0.988, "rnn": 0.975, "gan": 0.85},
    "digits": {"cnn": 0.97, "rnn": 0.95, "gan": 0.80},
}
GAN_TARGETS = {  # issue 13: diversity and Frechet distance, on both datasets
    "coverage": 0.5,
    "min_class_coverage": 0.3,
    "recall": 0.5,
    "min_class_recall": 0.3,
    "frechet_ratio": 5.0,  # a maximum
}


def run(command: list[str], cwd: Path) -> tuple[float, float]:
    """Run one stage CLI; return its wall time and peak RSS (MiB); fail loudly with its output."""
    env = os.environ | {"PYTHONPATH": str(cwd), "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=output, stderr=output, text=True
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        output.seek(0)
        text = output.read()
    if status:
        raise SystemExit(f"{' '.join(command)} failed:\n{text}")
    rss = usage.ru_maxrss / 1024  # KiB on Linux
    last = [line for line in text.splitlines() if line.startswith(("trained", "evaluated"))][-1:]
    print(
        f"  {' '.join(command[2:]):<18} {seconds:6.1f} s  peak RSS {rss:5.0f} MiB  "
        f"{last[0] if last else ''}",
        flush=True,
    )
    return seconds, rss


def prepare_copy(repo: Path, source: str) -> None:
    """Copy the pipeline code and params into `repo`, ingest the data, split and validate it."""
    from tasks.ingest import ingest

    repo.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        source_path = REPO_ROOT / name
        if source_path.is_dir():
            shutil.copytree(
                source_path,
                repo / name,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        else:
            shutil.copy2(source_path, repo / name)
    ingest(source, MNIST_DIR if source == "idx" else None, repo / "data")
    for stage in ("prepare", "validate"):
        run([sys.executable, "-m", f"tasks.{stage}"], repo)


def _verdict(name: str, value: float) -> str:
    target = GAN_TARGETS.get(name)
    if target is None:
        return ""
    if name == "frechet_ratio":
        return f" (target <= {target:g}: {'met' if value <= target else 'NOT met'})"
    return f" (target >= {target:g}: {'met' if value >= target else 'NOT met'})"


def print_gan_diversity(metrics: dict) -> None:
    """Issue 13's figures: fidelity and diversity overall and per class, next to real images'."""
    print("  gan diversity (judge CNN embedding; real = train images, same class counts):")
    for name in ("diversity_score", "precision", "recall", "density", "coverage"):
        ceiling = metrics.get(f"{name}_ceiling")
        real = "" if ceiling is None else f"  real {ceiling:.3f}"
        print(f"    {name:<18} {metrics[name]:.3f}{real}{_verdict(name, metrics[name])}")
    for name in ("min_class_coverage", "min_class_recall", "frechet_ratio"):
        print(f"    {name:<18} {metrics[name]:.3f}{_verdict(name, metrics[name])}")
    header = ("recognisable", "coverage (real)", "recall (real)", "Frechet/floor")
    print(f"    {'class':<6} " + " ".join(f"{name:>15}" for name in header))
    for name, scores in metrics["per_class"].items():
        recognisable = metrics["per_class_recognisable"][name]
        print(
            f"    {name:<6} {recognisable:15.3f} "
            f"{scores['coverage']:7.3f} ({scores['coverage_ceiling']:.3f}) "
            f"{scores['recall']:7.3f} ({scores['recall_ceiling']:.3f}) "
            f"{scores['frechet_distance']:6.1f}/{scores['frechet_floor']:.1f}"
            f"={scores['frechet_ratio']:.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("idx", "digits"), default="idx")
    parser.add_argument("--models", nargs="+", default=["cnn", "rnn", "gan"])
    parser.add_argument("--keep", type=Path, help="repo copy to create or reuse (kept afterwards)")
    args = parser.parse_args(argv)
    if args.source == "idx" and not MNIST_DIR.is_dir():
        print(f"skipped: {MNIST_DIR} not found", file=sys.stderr)
        return 0
    sys.path.insert(0, str(REPO_ROOT))
    repo = args.keep or Path(tempfile.mkdtemp(prefix="imgflow-quality-")) / "repo"
    if not (repo / "artifacts/prepared/splits.npz").is_file():
        prepare_copy(repo, args.source)
    else:  # reuse the data and splits, but train the current code and params
        for name in ("tasks", "models", "params.yaml"):
            source_path = REPO_ROOT / name
            if source_path.is_dir():
                shutil.copytree(source_path, repo / name, dirs_exist_ok=True)
            else:
                shutil.copy2(source_path, repo / name)
    print(f"repo copy: {repo}")

    wall, rss = {}, {}
    for model in args.models:
        wall[model], rss[model] = run([sys.executable, "-m", "tasks.train", model], repo)
    for model in args.models:
        if model == "gan" and not (repo / "artifacts/models/cnn/model.keras").is_file():
            continue
        run([sys.executable, "-m", "tasks.evaluate", model], repo)

    dataset = "mnist" if args.source == "idx" else "digits"
    print(f"\nquality on {dataset} (test split), targets from issues 4 and 13:")
    for model in args.models:
        metrics_file = repo / "metrics" / f"{model}.json"
        if not metrics_file.is_file():
            continue
        metrics = json.loads(metrics_file.read_text())
        trained = json.loads((repo / "artifacts/models" / model / "train.json").read_text())
        target = TARGETS[dataset][model]
        if model == "gan":
            value = metrics["recognisable_share"]
            figure = (
                f"recognisable {value:.3f} (target >= {target}), classes "
                f"{metrics['classes_covered']}/{metrics['classes_total']}, Frechet "
                f"{metrics['frechet_distance']:.2f} (floor {metrics['frechet_floor']:.2f})"
            )
            print_gan_diversity(metrics)
        else:
            value = metrics["test_accuracy"]
            figure = f"test accuracy {value:.4f} (target >= {target})"
        verdict = "met" if value >= target else "NOT met"
        print(
            f"  {model}: {figure} {verdict}; {trained['epochs_run']} epochs (best "
            f"{trained['best_epoch']}), train wall {wall[model]:.0f} s, "
            f"{trained['images_per_second']:.0f} img/s, peak RSS {rss[model]:.0f} MiB"
        )
    print(f"  all trainings: {sum(wall.values()):.0f} s wall on {os.cpu_count()} cores")
    if args.keep is None:
        shutil.rmtree(repo.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
