"""Registration time of one model on the embedded (sqlite) MLflow store.

Target (issue 5): registering one model takes at most 3 s. Measured: `register_models(["cnn"])`
for the repository's default CNN (params.yaml train.cnn, digits shape 8x8x1), each repeat with
changed weights so a new version is logged. Two cases, medians of --repeats:

- "register": fresh store each time (log run + model with signature and explicit pip
  requirements, register, tags, challenger alias; the gate has no champion to re-score).
  This includes creating the sqlite store's tables (~1 s), so it is the slower case;
- "register + gate": a champion exists, so the gate also loads it (safe mode) and re-scores it
  on the test split before deciding.

    .venv/bin/python -m benchmarks.bench_register [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
SHAPE = (8, 8, 1)
CLASSES = [str(digit) for digit in range(10)]
TARGET_SECONDS = 3.0


def build_root(root: Path, params: dict) -> None:
    """A repository root as evaluate@cnn leaves it, with the default CNN (untrained)."""
    from models.cnn import build_cnn

    cnn = params["train"]["cnn"]
    (root / "artifacts/prepared").mkdir(parents=True)
    (root / "artifacts/prepared/meta.json").write_text(
        json.dumps({"name": "digits", "class_names": CLASSES, "image_shape": list(SHAPE)})
    )
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", 1437), ("val", 180), ("test", 180)):
        arrays[f"x_{split}"] = rng.integers(0, 256, (count, *SHAPE)).astype(np.uint8)
        arrays[f"y_{split}"] = np.arange(count) % 10
        arrays[f"paths_{split}"] = np.array([f"{i}.png" for i in range(count)])
    np.savez(root / "artifacts/prepared/splits.npz", **arrays)
    (root / "metrics").mkdir()
    (root / "metrics/validation.json").write_text(json.dumps({"success": True, "checks": []}))
    (root / "metrics/cnn.json").write_text(
        json.dumps({"test_accuracy": 0.99, "macro_f1": 0.99, "expected_calibration_error": 0.01})
    )
    (root / "data.dvc").write_text(yaml.safe_dump({"outs": [{"md5": "0" * 32 + ".dir"}]}))
    folder = root / "artifacts/models/cnn"
    folder.mkdir(parents=True)
    model = build_cnn(SHAPE, len(CLASSES), cnn["filters"], cnn["dense_units"], cnn["dropout"])
    model.save(folder / "model.keras")
    history = {"loss": [1.0] * cnn["epochs"], "val_loss": [1.0] * cnn["epochs"]}
    (folder / "train.json").write_text(
        json.dumps({"model": "cnn", "params": cnn, "history": history, "class_weights": None})
    )


def perturb(root: Path, step: int) -> None:
    """New weights, so the model's md5 changes and a new version is registered."""
    import keras

    path = root / "artifacts/models/cnn/model.keras"
    model = keras.models.load_model(path, safe_mode=True)
    model.set_weights([w + 0.001 * (step + 1) for w in model.get_weights()])
    model.save(path)


def time_registration(root: Path, params: dict, store: Path) -> float:
    import mlflow

    from tasks.register import register_models
    from tasks.registry.stage_params import StageParams

    (root / "params.yaml").write_text(yaml.safe_dump(params))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"
    started = time.perf_counter()
    register_models(root, StageParams.load(root / "params.yaml"), models=["cnn"])
    seconds = time.perf_counter() - started
    mlflow.set_tracking_uri(None)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["register"]["thresholds"]["cnn"] = {"test_accuracy": {"min": 0.5}}
    params["register"]["experiment"] = "bench"
    with tempfile.TemporaryDirectory(prefix="bench-register-") as tmp:
        work = Path(tmp)
        root = work / "repo"
        build_root(root, params)
        os.chdir(work)
        # Warm-up: imports (TensorFlow, MLflow) and the first store creation are not the target.
        time_registration(root, params, work / "warmup.db")
        fresh, gated = [], []
        for step in range(args.repeats):
            perturb(root, step)
            fresh.append(time_registration(root, params, work / f"fresh{step}.db"))
        time_registration(root, params, work / "shared.db")
        for step in range(args.repeats):
            perturb(root, args.repeats + step)
            gated.append(time_registration(root, params, work / "shared.db"))
    for label, values in (("register", fresh), ("register + gate", gated)):
        median = statistics.median(values)
        verdict = "OK" if median <= TARGET_SECONDS else "OVER"
        print(
            f"{label:16s} median {median:.2f} s  (min {min(values):.2f}, max {max(values):.2f}, "
            f"n={len(values)})  target <= {TARGET_SECONDS:.0f} s: {verdict}"
        )
    print(f"load average during the run: {os.getloadavg()[0]:.1f} (2 cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
