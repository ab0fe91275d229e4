"""The stage graph (pure): topological order, cycles, readiness, and the walk that starts each
stage as soon as its upstream stages are done, run on real threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import pytest

from tasks.dag import CyclicStagesError, Stage, StageGraph, graph_from_edges, topological, walk

# The shape of dvc.yaml: the GAN's evaluation also waits for the CNN (its judge).
PIPELINE_EDGES = [
    ("validate", "prepare"),
    *((f"train@{m}", "validate") for m in ("cnn", "rnn", "gan")),
    ("evaluate@cnn", "train@cnn"),
    ("evaluate@rnn", "train@rnn"),
    ("evaluate@gan", "train@gan"),
    ("evaluate@gan", "train@cnn"),
    *(("register", f"evaluate@{m}") for m in ("cnn", "rnn", "gan")),
]
# Listed out of order on purpose: the order must come from the edges.
NAMES = [
    "register",
    "evaluate@cnn",
    "evaluate@rnn",
    "evaluate@gan",
    "train@cnn",
    "train@rnn",
    "train@gan",
    "validate",
    "prepare",
]

DVC_YAML_ORDER = [
    "prepare",
    "validate",
    "train@cnn",
    "train@rnn",
    "train@gan",
    "evaluate@cnn",
    "evaluate@rnn",
    "evaluate@gan",
    "register",
]


def pipeline() -> StageGraph:
    return graph_from_edges(PIPELINE_EDGES, NAMES)


def test_topological_order_puts_upstream_first_and_keeps_given_order_otherwise() -> None:
    # Each step takes the first stage in the given order whose upstream stages are placed.
    assert pipeline().names == [
        "prepare",
        "validate",
        "train@cnn",
        "evaluate@cnn",
        "train@rnn",
        "evaluate@rnn",
        "train@gan",
        "evaluate@gan",
        "register",
    ]
    in_dvc_yaml_order = graph_from_edges(PIPELINE_EDGES, sorted(NAMES, key=DVC_YAML_ORDER.index))
    assert in_dvc_yaml_order.names == DVC_YAML_ORDER


def test_cycle_is_refused_naming_its_stages() -> None:
    stages = [Stage("a", frozenset({"b"})), Stage("b", frozenset({"a"})), Stage("c", frozenset())]
    with pytest.raises(CyclicStagesError, match=r"\['a', 'b'\]"):
        topological(stages)


def test_unknown_upstream_stage_is_refused() -> None:
    with pytest.raises(ValueError, match="ghost"):
        topological([Stage("a", frozenset({"ghost"}))])


def test_kind_and_item_split_foreach_names() -> None:
    assert (Stage("train@cnn", frozenset()).kind, Stage("train@cnn", frozenset()).item) == (
        "train",
        "cnn",
    )
    assert (Stage("register", frozenset()).kind, Stage("register", frozenset()).item) == (
        "register",
        None,
    )


def test_ready_needs_every_upstream_done_and_skips_started() -> None:
    graph = pipeline()
    done = {"prepare", "validate", "train@gan"}
    ready = [stage.name for stage in graph.ready(done, started={"train@rnn"})]
    # evaluate@gan also waits for train@cnn.
    assert ready == ["train@cnn"]


def first_done(futures: list[Future[str]]) -> Future[str]:
    return next(iter(wait(futures, return_when=FIRST_COMPLETED).done))


def run_walk(
    body: Callable[[str], str], finished: Callable[[Stage, Future[str]], object] | None = None
) -> tuple[dict[str, str], list[str]]:
    """Walk the pipeline on a thread pool; each stage runs body(name). Returns (results,
    submission order)."""
    submitted: list[str] = []
    with ThreadPoolExecutor(max_workers=3) as pool:

        def submit(stage: Stage) -> Future[str]:
            submitted.append(stage.name)
            return pool.submit(body, stage.name)

        results = walk(pipeline(), submit, first_done, finished or (lambda stage, future: None))
    return results, submitted


def test_walk_starts_a_stage_as_soon_as_its_upstream_is_done() -> None:
    evaluated_cnn = threading.Event()

    def body(name: str) -> str:
        if name == "evaluate@cnn":
            evaluated_cnn.set()
        # The RNN only finishes once evaluate@cnn ran: if the walk waited for every training
        # before evaluating, this times out.
        if name == "train@rnn" and not evaluated_cnn.wait(timeout=20):
            raise TimeoutError("evaluate@cnn did not run while the RNN trained")
        return f"ran {name}"

    results, submitted = run_walk(body)
    assert submitted.index("evaluate@cnn") < submitted.index("evaluate@rnn")
    assert list(results) == pipeline().names  # results come back in topological order
    assert results["register"] == "ran register"


def test_walk_submits_each_stage_once_after_all_its_upstream_stages() -> None:
    finished_order: list[str] = []
    lock = threading.Lock()

    def body(name: str) -> str:
        with lock:
            finished_order.append(name)
        return name

    _, submitted = run_walk(body)
    assert sorted(submitted) == sorted(NAMES)
    upstream = pipeline().upstream()
    for name in submitted:
        assert all(finished_order.index(up) < finished_order.index(name) for up in upstream[name])


def test_failed_stage_is_raised_after_its_finished_hook_and_nothing_after_it_starts() -> None:
    hooked: list[tuple[str, bool]] = []

    def body(name: str) -> str:
        if name == "validate":
            raise RuntimeError("DVC stage 'validate' failed")
        return name

    def finished(stage: Stage, future: Future[str]) -> None:
        hooked.append((stage.name, future.exception() is None))

    with pytest.raises(RuntimeError, match="'validate' failed"):
        run_walk(body, finished)
    assert hooked == [("prepare", True), ("validate", False)]
