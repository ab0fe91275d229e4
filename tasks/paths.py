"""Where each pipeline step reads and writes, relative to the repository root.

Every path here is also named in dvc.yaml; keeping them in one module means a stage's
code and its DVC declaration cannot drift apart silently (tests/test_dvc_yaml.py checks it).
"""

from pathlib import Path

MODEL_NAMES: tuple[str, ...] = ("cnn", "rnn", "gan")
CLASSIFIERS: tuple[str, ...] = ("cnn", "rnn")

PARAMS_FILE = Path("params.yaml")
DATA_DIR = Path("data")
DATA_DVC_FILE = Path("data.dvc")
MANIFEST_NAME = "manifest.json"

PREPARED_DIR = Path("artifacts/prepared")
SPLITS_FILE = PREPARED_DIR / "splits.npz"
PREPARED_META_FILE = PREPARED_DIR / "meta.json"

VALIDATION_METRICS = Path("metrics/validation.json")
DATA_DOCS_DIR = Path("reports/validation")

MODELS_DIR = Path("artifacts/models")
METRICS_DIR = Path("metrics")
PLOTS_DIR = Path("plots")
REPORTS_DIR = Path("reports")
REGISTRY_REPORT = REPORTS_DIR / "registry.json"


def model_dir(model: str, root: Path = Path(".")) -> Path:
    """Directory holding one trained model and its training record."""
    return root / MODELS_DIR / model


def model_metrics_file(model: str, root: Path = Path(".")) -> Path:
    return root / METRICS_DIR / f"{model}.json"


def history_plot_file(model: str, root: Path = Path(".")) -> Path:
    return root / PLOTS_DIR / "history" / f"{model}.csv"
