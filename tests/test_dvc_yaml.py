"""dvc.yaml against the code: every stage lists as deps all project modules its command runs,
and the stage graph the flow walks is the graph `dvc dag` prints.

A module a stage imports but does not list is a silent staleness bug: editing it would not
re-run the stage, and dvc.lock would pin results to code that no longer produces them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.dag import StageGraph, read_stage_graph

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("flows", "tasks", "models")


@pytest.fixture(scope="module")
def stage_graph() -> StageGraph:
    return read_stage_graph(REPO_ROOT)


def module_file(module: str) -> Path | None:
    """The repository file that defines `module` (a .py file or a package's __init__.py)."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = REPO_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def executed_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, at any depth (function-level ones included);
    `if TYPE_CHECKING:` bodies are skipped, they never run."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                yield from executed_imports(ast.Module(body=[child], type_ignores=[]))
            continue
        yield from executed_imports(node)


def imported_names(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """Dotted modules an import statement may load, relative imports resolved against
    `package` (`from a import b` may load the module a.b, or just take the name b from a)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parent = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parent, base] if base else parent)
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def with_parents(module: str) -> list[str]:
    """Importing a.b.c runs a/__init__.py and a/b/__init__.py first."""
    parts = module.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]


def project_modules(entry: str) -> set[Path]:
    """Repository files that `python -m entry` executes, following imports transitively.

    Empty package markers (0-byte __init__.py) are left out: they hold no code to change.
    """
    seen: set[Path] = set()
    pending = [entry]
    while pending:
        module = pending.pop()
        for name in with_parents(module):
            path = module_file(name)
            if path is None or path in seen:
                continue
            seen.add(path)
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in executed_imports(tree):
                pending.extend(imported_names(node, package))
    return {path for path in seen if path.stat().st_size > 0}


def command_module(cmd: str) -> str:
    """The module a stage command runs: `python -m tasks.train cnn` -> tasks.train."""
    words = cmd.split()
    if words[:2] != ["python", "-m"]:
        raise ValueError(f"stage command is not `python -m <module> ...`: {cmd!r}")
    return words[2]


def covered(path: Path, deps: tuple[str, ...]) -> bool:
    relative = path.relative_to(REPO_ROOT)
    return any(relative == Path(dep) or Path(dep) in relative.parents for dep in deps)


def test_import_follower_sees_function_level_and_package_imports() -> None:
    # tasks.train imports the model builders inside a function, through models/__init__.py,
    # which imports every model module: all of them run when train@cnn runs.
    found = {str(path.relative_to(REPO_ROOT)) for path in project_modules("tasks.train")}
    assert {"models/__init__.py", "models/cnn.py", "models/rnn.py", "models/gan.py"} <= found
    assert "tasks/__init__.py" not in found  # empty package marker
    assert not any(name.startswith("flows/") for name in found)


def test_every_stage_lists_the_project_modules_it_imports(stage_graph: StageGraph) -> None:
    missing = {}
    for stage in stage_graph.stages:
        modules = project_modules(command_module(stage.cmd))
        uncovered = sorted(
            str(path.relative_to(REPO_ROOT)) for path in modules if not covered(path, stage.deps)
        )
        if uncovered:
            missing[stage.name] = uncovered
    report = "\n".join(f"  {stage} -> {', '.join(files)}" for stage, files in missing.items())
    assert not missing, f"dvc.yaml deps miss modules their stage imports:\n{report}"


def test_no_stage_lists_project_modules_it_does_not_import(stage_graph: StageGraph) -> None:
    # A stale code dep re-runs the stage (and everything after it) for nothing.
    stale = {}
    for stage in stage_graph.stages:
        modules = {
            str(path.relative_to(REPO_ROOT)) for path in project_modules(command_module(stage.cmd))
        }
        code_deps = {dep for dep in stage.deps if dep.split("/")[0] in PACKAGES}
        if code_deps - modules:
            stale[stage.name] = sorted(code_deps - modules)
    report = "\n".join(f"  {stage} -> {', '.join(files)}" for stage, files in stale.items())
    assert not stale, f"dvc.yaml deps list modules their stage does not import:\n{report}"


def dvc_dag_edges() -> dict[str, set[str]]:
    """Stage -> upstream stages, from `dvc dag --dot` (the CLI, independently of tasks.dag)."""
    dot = subprocess.run(
        [sys.executable, "-m", "dvc", "dag", "--dot"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    upstream: dict[str, set[str]] = {}
    for line in dot.splitlines():
        names = [part.strip().strip(";").strip('"') for part in line.split("->")]
        if len(names) == 1 and line.startswith('"'):
            upstream.setdefault(names[0], set())
        elif len(names) == 2:
            upstream.setdefault(names[1], set()).add(names[0])
    return upstream


def test_flow_graph_is_dvc_dag(stage_graph: StageGraph) -> None:
    dag = dvc_dag_edges()
    commandless = {"data.dvc"}  # ingest's output, not a stage the flow runs
    expected = {
        stage: frozenset(upstream - commandless)
        for stage, upstream in dag.items()
        if stage not in commandless
    }
    assert stage_graph.upstream() == expected
    # The GAN is judged by the CNN: dvc.yaml makes evaluate@gan wait for both trainings.
    assert stage_graph.upstream()["evaluate@gan"] == {"prepare", "train@gan", "train@cnn"}
    order = stage_graph.names
    assert all(order.index(up) < order.index(name) for name, ups in expected.items() for up in ups)
