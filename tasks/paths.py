"""Where each pipeline step reads and writes, relative to the repository root, and the names of
the things those files hold (models, splits, image types).

Every stage builds its paths from here, never by hand: a stage's code and its dvc.yaml
declaration cannot drift apart silently (tests/test_dvc_yaml.py checks the outputs).
"""

from pathlib import Path

MODEL_NAMES: tuple[str, ...] = ("cnn", "rnn", "gan")
CLASSIFIERS: tuple[str, ...] = ("cnn", "rnn")
JUDGE_MODEL = "cnn"  # the classifier that scores the GAN's samples
SPLITS: tuple[str, ...] = ("train", "val", "test")  # the arrays in splits.npz, in this order
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg"})  # files read as images

PARAMS_FILE = Path("params.yaml")
DATA_DIR = Path("data")
DATA_DVC_FILE = Path("data.dvc")
MANIFEST_NAME = "manifest.json"

PREPARED_DIR = Path("artifacts/prepared")
SPLITS_FILE = PREPARED_DIR / "splits.npz"
PREPARED_META_FILE = PREPARED_DIR / "meta.json"
PROFILE_FILE = PREPARED_DIR / "profile.parquet"

VALIDATION_METRICS = Path("metrics/validation.json")
DATA_DOCS_DIR = Path("reports/validation")
# Summary of the last accepted data version: the drift baseline, tracked by git.
ACCEPTED_SUMMARY = Path("artifacts/accepted_data.json")

MODELS_DIR = Path("artifacts/models")
CHECKPOINTS_DIR = Path("artifacts/checkpoints")
METRICS_DIR = Path("metrics")
PLOTS_DIR = Path("plots")
REPORTS_DIR = Path("reports")
REGISTRY_REPORT = REPORTS_DIR / "registry.json"
RUN_REPORT_MARKDOWN = REPORTS_DIR / "run_report.md"
RUN_REPORT_HTML = REPORTS_DIR / "run_report.html"

# Files inside a model's folder (artifacts/models/<model>/).
CLASSIFIER_FILE = "model.keras"
GENERATOR_FILE = "generator.keras"
DISCRIMINATOR_FILE = "discriminator.keras"
TRAINING_RECORD = "train.json"
SAMPLES_DIR = "samples"  # the GAN's per-epoch sample grids


def model_dir(model: str, root: Path = Path(".")) -> Path:
    """Directory holding one trained model and its training record."""
    return root / MODELS_DIR / model


def model_file(model: str, root: Path = Path(".")) -> Path:
    """The Keras file that serves a model: the classifier, or the GAN's generator."""
    return model_dir(model, root) / (GENERATOR_FILE if model == "gan" else CLASSIFIER_FILE)


def checkpoint_root(model: str, root: Path = Path(".")) -> Path:
    """Per-epoch checkpoints of one model's training (not a DVC output)."""
    return root / CHECKPOINTS_DIR / model


def model_metrics_file(model: str, root: Path = Path(".")) -> Path:
    return root / METRICS_DIR / f"{model}.json"


def history_plot_file(model: str, root: Path = Path(".")) -> Path:
    return root / PLOTS_DIR / "history" / f"{model}.csv"


def confusion_plot_file(model: str, root: Path = Path(".")) -> Path:
    return root / PLOTS_DIR / "confusion" / f"{model}.csv"


def images_dir(model: str, root: Path = Path(".")) -> Path:
    """PNG figures of one model's evaluation."""
    return root / PLOTS_DIR / "images" / model
