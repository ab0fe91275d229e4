"""Fail when a function in the product code (flows/, tasks/, models/) is longer than the limit.

Run by `make lint`: `python .ci/function_length.py [--max-lines 60]`. A function's length is
its span in the source, from `def` (decorators excluded) to its last line. Complexity is
ruff's job (C901, max-complexity in pyproject.toml).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGES = ("flows", "tasks", "models")


def long_functions(root: Path, max_lines: int) -> list[tuple[int, str]]:
    """(lines, 'path:line name') for every function or method longer than max_lines."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    span = (node.end_lineno or node.lineno) - node.lineno + 1
                    if span > max_lines:
                        where = f"{path.relative_to(root)}:{node.lineno} {node.name}"
                        found.append((span, where))
    return sorted(found, reverse=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--max-lines", type=int, default=60)
    args = parser.parse_args()
    found = long_functions(args.root, args.max_lines)
    for span, where in found:
        print(f"{where}: {span} lines (limit {args.max_lines})")
    if found:
        print(f"{len(found)} function(s) over {args.max_lines} lines", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
