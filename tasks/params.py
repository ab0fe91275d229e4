"""Loading params.yaml: the one place every step's hyperparameters and thresholds live."""

from pathlib import Path
from typing import Any

import yaml

from tasks.paths import PARAMS_FILE


class ParamsError(ValueError):
    """A params.yaml value is missing or invalid; the message names the key."""


def load_params(path: Path | str = PARAMS_FILE) -> dict[str, Any]:
    """Read the whole params file; raises ParamsError when it is missing or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found: run from the repository root or pass --params")
    with path.open() as handle:
        params = yaml.safe_load(handle)
    if not isinstance(params, dict):
        raise ParamsError(f"{path} must hold a mapping of stage sections, got {type(params)}")
    return params


def section(params: dict[str, Any], dotted_key: str) -> Any:
    """Return params[a][b] for "a.b", raising ParamsError that names the missing key."""
    value: Any = params
    walked: list[str] = []
    for part in dotted_key.split("."):
        walked.append(part)
        if not isinstance(value, dict) or part not in value:
            raise ParamsError(f"params.yaml: missing key '{'.'.join(walked)}'")
        value = value[part]
    return value
