"""Function length and cyclomatic complexity of the product code (flows/, tasks/, models/).

Run: `uv run python .ci/code_shape.py` (a report) or with `--fail` (exit 1 when any function is
over the limits; `make lint` does this). Lengths come from the AST (from `def`, decorators
excluded, to the last line); complexity from ruff's McCabe rule (C901).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

PACKAGES = ("flows", "tasks", "models")


def function_lengths(root: Path) -> list[tuple[int, str]]:
    """(lines, 'path:name') for every function and method in the product packages."""
    lengths = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    span = (node.end_lineno or node.lineno) - node.lineno + 1
                    lengths.append((span, f"{path.relative_to(root)}:{node.name}"))
    return sorted(lengths, reverse=True)


def complexities(root: Path, threshold: int) -> list[tuple[int, str]]:
    """(complexity, 'path:name') for every function whose McCabe complexity exceeds threshold."""
    command = [
        sys.executable, "-m", "ruff", "check", "--isolated", "--select", "C901",
        "--config", f"lint.mccabe.max-complexity = {threshold}",
        "--output-format", "json", *PACKAGES,
    ]  # fmt: skip
    output = subprocess.run(command, cwd=root, capture_output=True, text=True).stdout
    found = []
    for item in json.loads(output or "[]"):
        match = re.search(r"`(.+?)` is too complex \((\d+) > \d+\)", item["message"])
        if match:
            name = f"{Path(item['filename']).relative_to(root.resolve())}:{match.group(1)}"
            found.append((int(match.group(2)), name))
    return sorted(found, reverse=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--max-lines", type=int, default=60)
    parser.add_argument("--max-complexity", type=int, default=12)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--fail", action="store_true", help="exit 1 when a limit is exceeded")
    args = parser.parse_args()
    lengths = function_lengths(args.root)
    long = [item for item in lengths if item[0] > args.max_lines]
    complex_ = complexities(args.root, args.max_complexity)
    print(f"functions: {len(lengths)}; longest {lengths[0][0]} lines ({lengths[0][1]})")
    print(f"functions over {args.max_lines} lines: {len(long)}")
    for span, name in long[: args.top]:
        print(f"  {span:4d}  {name}")
    print(f"functions over complexity {args.max_complexity}: {len(complex_)}")
    for value, name in complex_[: args.top]:
        print(f"  {value:4d}  {name}")
    return 1 if args.fail and (long or complex_) else 0


if __name__ == "__main__":
    raise SystemExit(main())
