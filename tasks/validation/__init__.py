"""Data validation, one declaration per check: the Great Expectations suite and the report
(metrics/validation.json, its markdown table) are both derived from `checks.CHECKS`.

Kept light on purpose: importing `tasks.validation.report` must not import Great Expectations
or pandas (the register stage and the flow read reports without them).
"""
