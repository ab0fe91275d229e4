"""The run report renders exactly what the pre-Jinja2 renderer wrote for the same inputs
(golden/ holds that renderer's output), and the markdown links plots relative to reports/."""

from __future__ import annotations

from pathlib import Path

from tasks.registry.run_report import build_report, read_markdown, render_html, write_report
from tasks.registry.versions import RegisteredModel

GOLDEN = Path(__file__).parent / "golden"


def _inputs(root: Path) -> tuple[list[RegisteredModel], dict]:
    for path, data in (
        ("plots/images/gan/samples.png", b"\x89PNG\r\n\x1a\nAAA"),
        ("plots/images/gan/interp.png", b"\x89PNG\r\n\x1a\nBBB"),
        ("plots/images/cnn/confusion.png", b"\x89PNG\r\n\x1a\nCCC"),
    ):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    cnn_metrics = {"test_accuracy": 0.97, "macro_f1": 0.96, "test_loss": 0.1,
                   "expected_calibration_error": 0.02}  # fmt: skip
    gan_metrics = {"recognisable_share": 0.8, "classes_covered": 10.0, "frechet_distance": 12.3,
                   "frechet_floor": 3.0}  # fmt: skip
    gan_champion = {"recognisable_share": 0.85, "classes_covered": 9.0, "frechet_distance": 11.0,
                    "frechet_floor": 3.0}  # fmt: skip
    entries = [
        RegisteredModel("cnn", "digits-cnn", "2", "abc", "test_accuracy", 0.97, False,
                        "promoted", "all <ok> | `x` & y", "1", 0.95, cnn_metrics,
                        {"test_accuracy": 0.95, "macro_f1": 0.94, "test_loss": 0.2}),
        RegisteredModel("rnn", "digits-rnn", "1", "def", "test_accuracy", 0.9, True,
                        metrics={"test_accuracy": 0.9}),
        RegisteredModel("gan", "digits-gan", "3", "ghi", "recognisable_share", 0.8, False,
                        "rejected", "worse", "2", 0.85, gan_metrics, gan_champion,
                        judge="digits-cnn v1 (champion)"),
    ]  # fmt: skip
    checks = [
        {"name": "decodes", "severity": "error", "success": True, "observed": {"bad": 0},
         "expected": "0"},
        {"name": "drift", "severity": "warning", "success": False, "observed": [1, 2],
         "expected": "<0.1 | x"},
    ]  # fmt: skip
    validation = {
        "success": True,
        "warnings": [{"message": "imbalance <1.6>"}, "plain & warn"],
        "apply_class_weights": True,
        "checks": checks,
    }
    return entries, validation


def test_report_matches_the_previous_renderer_byte_for_byte(tmp_path: Path) -> None:
    entries, validation = _inputs(tmp_path)
    report = build_report(tmp_path, entries, validation, data_version="md5x",
                          git_commit="abc-dirty", mlflow_run_id="run123",
                          tracking_uri="sqlite:///m.db")  # fmt: skip
    markdown, html = write_report(tmp_path, report)
    assert markdown.read_text() == (GOLDEN / "run_report.md").read_text()
    assert html.read_text() == (GOLDEN / "run_report.html").read_text()
    assert read_markdown(tmp_path) == markdown.read_text()
    assert sorted(path.name for path in markdown.parent.iterdir()) == [
        "run_report.html",
        "run_report.md",
    ]


def test_report_without_models_or_run(tmp_path: Path) -> None:
    report = build_report(tmp_path, [], {"success": False}, data_version="m",
                          git_commit="unknown", mlflow_run_id=None, tracking_uri="u")  # fmt: skip
    html = render_html(report)
    assert "<title>Pipeline run report: ?</title>" in html
    assert "MLflow run: none (no model changed" in html
    assert "<li>result: FAILED</li>" in html
    assert read_markdown(tmp_path / "elsewhere") is None


def test_gan_section_shows_diversity_per_class_and_the_nearest_real_figure(tmp_path: Path) -> None:
    figure = tmp_path / "plots/images/gan/nearest_real.png"
    figure.parent.mkdir(parents=True)
    figure.write_bytes(b"\x89PNG\r\n\x1a\nNNN")
    scores = {"coverage": 0.6, "coverage_ceiling": 0.9, "recall": 0.5, "recall_ceiling": 0.95,
              "frechet_distance": 40.0, "frechet_floor": 10.0, "frechet_ratio": 4.0}  # fmt: skip
    metrics = {"diversity_score": 0.7, "recognisable_share": 0.9, "coverage": 0.65,
               "coverage_ceiling": 0.93, "frechet_ratio": 4.5, "per_class": {"7": scores},
               "per_class_recognisable": {"7": 0.95}}  # fmt: skip
    entry = RegisteredModel("gan", "digits-gan", "4", "r", "diversity_score", 0.7, False,
                            "promoted", "ok", None, None, metrics)  # fmt: skip
    report = build_report(tmp_path, [entry], {"success": True}, data_version="m",
                          git_commit="c", mlflow_run_id="r", tracking_uri="u")  # fmt: skip
    markdown = write_report(tmp_path, report)[0].read_text()
    assert "| gan | digits-gan v4 | diversity_score | 0.7000 | none |" in markdown
    assert "| diversity_score | 0.7000 | - | - | higher |" in markdown
    assert "| coverage_ceiling | 0.9300 | - | - | reference |" in markdown
    assert "| frechet_ratio | 4.5000 | - | - | lower |" in markdown
    assert "| 7 | 0.9500 | 0.6000 | 0.9000 | 0.5000 | 0.9500 | 40.0000 | 10.0000 | 4.0000 |" in (
        markdown
    )
    assert "![gan nearest_real](../plots/images/gan/nearest_real.png)" in markdown
    assert 'alt="gan nearest_real"' in render_html(report)
