"""Where flows/retrain.py imports the run report reader from; the run report lives in
tasks.registry.run_report."""

from tasks.registry.run_report import read_markdown

__all__ = ["read_markdown"]
