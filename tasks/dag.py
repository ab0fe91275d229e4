"""The stage graph of dvc.yaml, read from DVC itself, and a walk that starts each stage as soon
as the stages it depends on are done.

dvc.yaml is the only place the pipeline's order is written: an orchestrator asks this module
which stages exist, which ones each waits for and in what order to report them, so a stage
added to or rewired in dvc.yaml is run by the flow without touching the flow.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tasks.stages import open_dvc_repo


class CyclicStagesError(ValueError):
    """The stages' dependencies form a cycle (DVC refuses such a dvc.yaml too)."""


class Outcome(Protocol):
    """What `walk` needs of a submitted stage: a Prefect or concurrent.futures future."""

    def result(self) -> Any: ...


F = TypeVar("F", bound=Outcome)


@dataclass(frozen=True)
class Stage:
    """One dvc.yaml stage as DVC resolves it (foreach/matrix expanded)."""

    name: str  # e.g. "train@cnn"
    upstream: frozenset[str]  # the pipeline stages whose outputs this one reads
    cmd: str = ""
    deps: tuple[str, ...] = ()  # dependency paths as written in dvc.yaml (params excluded)

    @property
    def kind(self) -> str:
        """The dvc.yaml entry this stage comes from: "train" for "train@cnn"."""
        return self.name.split("@", 1)[0]

    @property
    def item(self) -> str | None:
        """The foreach item: "cnn" for "train@cnn", None for a plain stage."""
        return self.name.split("@", 1)[1] if "@" in self.name else None


@dataclass(frozen=True)
class StageGraph:
    """Pipeline stages in a topological order (dvc.yaml order among independent stages)."""

    stages: tuple[Stage, ...]

    @property
    def names(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def upstream(self) -> dict[str, frozenset[str]]:
        """Stage name -> names of the stages it waits for."""
        return {stage.name: stage.upstream for stage in self.stages}

    def ready(self, done: Collection[str], started: Collection[str]) -> list[Stage]:
        """Stages not yet started whose upstream stages are all done."""
        return [
            stage
            for stage in self.stages
            if stage.name not in done
            and stage.name not in started
            and all(name in done for name in stage.upstream)
        ]


def topological(stages: Sequence[Stage]) -> StageGraph:
    """Order `stages` so each comes after its upstream stages, keeping the given order among
    stages that do not depend on each other; raises CyclicStagesError on a cycle."""
    known = {stage.name for stage in stages}
    unknown = {name for stage in stages for name in stage.upstream} - known
    if unknown:
        raise ValueError(f"stages depend on stages not in the graph: {sorted(unknown)}")
    ordered: list[Stage] = []
    placed: set[str] = set()
    while len(ordered) < len(stages):
        next_stage = next(
            (s for s in stages if s.name not in placed and s.upstream <= placed), None
        )
        if next_stage is None:
            left = sorted(known - placed)
            raise CyclicStagesError(f"stage dependencies form a cycle among {left}")
        ordered.append(next_stage)
        placed.add(next_stage.name)
    return StageGraph(tuple(ordered))


def graph_from_edges(edges: Iterable[tuple[str, str]], names: Sequence[str]) -> StageGraph:
    """A graph from (stage, upstream stage) pairs, in DVC's edge direction."""
    upstream: dict[str, set[str]] = {name: set() for name in names}
    for stage, dependency in edges:
        upstream[stage].add(dependency)
    return topological([Stage(name, frozenset(upstream[name])) for name in names])


def read_stage_graph(repo: Path = Path(".")) -> StageGraph:
    """dvc.yaml's pipeline stages and their dependencies, as DVC's own graph has them.

    Only stages with a command take part: `data.dvc` (what ingest writes) has no command and
    is not run by the pipeline, so it is left out of every stage's upstream set.
    """
    with open_dvc_repo(repo) as dvc_repo:
        graph = dvc_repo.index.graph
        pipeline = [node for node in graph.nodes if getattr(node, "cmd", None)]
        names = {node.addressing for node in pipeline}
        stages = [
            Stage(
                name=node.addressing,
                upstream=frozenset(
                    dep.addressing for dep in graph.successors(node) if dep.addressing in names
                ),
                cmd=str(node.cmd),
                deps=tuple(str(dep.def_path) for dep in node.deps if not _is_params(dep)),
            )
            for node in pipeline
        ]
    return topological(stages)


def _is_params(dependency: object) -> bool:
    from dvc.dependency import ParamsDependency

    return isinstance(dependency, ParamsDependency)


def walk(
    graph: StageGraph,
    submit: Callable[[Stage], F],
    first_done: Callable[[list[F]], F],
    finished: Callable[[Stage, F], object] = lambda stage, future: None,
) -> dict[str, Any]:
    """Submit every stage as soon as its upstream stages have succeeded and return each
    stage's result, by name in topological order.

    `first_done(futures)` blocks until one of them is done and returns it; `finished(stage,
    future)` is called for each done stage before its result is read (so it sees failures
    too). The first failed stage raises here: nothing new is submitted after it.
    """
    results: dict[str, Any] = {}
    running: dict[str, F] = {}
    while len(results) < len(graph.stages):
        for stage in graph.ready(results.keys(), running.keys()):
            running[stage.name] = submit(stage)
        done = first_done(list(running.values()))
        name = next(name for name, future in running.items() if future is done)
        del running[name]
        finished(_by_name(graph, name), done)
        results[name] = done.result()
    return {name: results[name] for name in graph.names}


def _by_name(graph: StageGraph, name: str) -> Stage:
    return next(stage for stage in graph.stages if stage.name == name)
