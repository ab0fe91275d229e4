from tasks.validation.report import VALIDATION_TABLE_HEADER, validation_rows  # noqa: F401  # moved; tasks/run_report.py still imports from here
