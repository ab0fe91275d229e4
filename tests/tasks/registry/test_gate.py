"""The promotion gate: the pure decision, the gate as the register stage runs it (challenger vs
the champion re-scored on this split), a champion that cannot be re-scored, a crash between
registration and gate, and concurrent promotions (threads and two OS processes).

The classifiers are exact by construction (conftest.ExactModels), so "better" and "worse" are
real re-scored facts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tasks.paths import RUN_REPORT_HTML, RUN_REPORT_MARKDOWN
from tasks.registry.champion import current_champion
from tasks.registry.gate import PromotionError, decide, gate

NAME = "digits-cnn"
THRESHOLDS = {"test_accuracy": {"min": 0.5}}
SHIPPED_PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"


def test_decide_thresholds_then_tolerance() -> None:
    kwargs = {"metric": "acc", "thresholds": {"acc": {"min": 0.8}}, "tolerance": 0.02}
    first = decide({"acc": 0.9}, None, champion_version=None, **kwargs)
    assert first.promote and "no champion yet" in first.reason
    low = decide({"acc": 0.7}, None, champion_version=None, **kwargs)
    assert not low.promote and "acc 0.7000 < min 0.8" in low.reason
    within = decide({"acc": 0.89}, {"acc": 0.905}, champion_version="3", **kwargs)
    assert within.promote and within.difference == pytest.approx(-0.015)
    worse = decide({"acc": 0.85}, {"acc": 0.9}, champion_version="3", **kwargs)
    assert not worse.promote and "worse than champion v3" in worse.reason
    assert worse.tags()["gate.champion_score"] == "0.900000"
    missing = decide(
        {"acc": 0.9},
        None,
        champion_version=None,
        metric="acc",
        thresholds={"ece": {"max": 0.1}},
        tolerance=0.0,
    )
    assert not missing.promote and "ece missing" in missing.reason
    with pytest.raises(PromotionError, match="tolerance"):
        decide({"acc": 0.9}, None, champion_version=None, **{**kwargs, "tolerance": -1})


def test_worse_challenger_is_registered_not_promoted_and_better_one_is(
    store, exact_models, register_cnn
) -> None:
    root, client = store
    exact_models.train_cnn(root, correct=10)
    first = register_cnn(root)
    assert (first.version, first.decision, first.champion_version) == ("1", "promoted", None)
    assert current_champion(client, NAME) == "1"

    exact_models.train_cnn(
        root, correct=6
    )  # 60 %: passes the 0.5 threshold, but 40 points below v1
    worse = register_cnn(root)
    assert (worse.version, worse.decision) == ("2", "rejected")
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "2"
    assert current_champion(client, NAME) == "1"
    tags = client.get_model_version(NAME, "2").tags
    assert tags["gate.champion_version"] == "1"
    # The champion was re-scored on this split: its score is measured, not copied.
    assert float(tags["gate.champion_score"]) == pytest.approx(1.0)
    assert float(tags["gate.challenger_score"]) == pytest.approx(0.6)
    assert "worse than champion v1" in tags["gate.reason"]
    assert worse.champion_metrics["macro_f1"] == pytest.approx(1.0)

    exact_models.train_cnn(root, correct=10, scale=25.0)  # as good as v1 (a different file)
    better = register_cnn(root)
    assert (better.version, better.decision) == ("3", "promoted")
    assert current_champion(client, NAME) == "3"

    report = (root / RUN_REPORT_MARKDOWN).read_text()
    assert "## Gate decisions" in report and "PROMOTED" in report
    assert "| test_accuracy | 1.0000 | 1.0000 | +0.0000 | higher |" in report
    html = (root / RUN_REPORT_HTML).read_text()
    assert "<table>" in html and "PROMOTED" in html
    parent = client.get_run(client.get_run(better.run_id).data.tags["mlflow.parentRunId"])
    logged = [item.path for item in client.list_artifacts(parent.info.run_id, "report")]
    assert logged == ["report/run_report.html", "report/run_report.md"]


def test_threshold_failure_without_champion_rejects(store, exact_models, register_cnn) -> None:
    root, client = store
    exact_models.train_cnn(root, correct=4)
    entry = register_cnn(root)
    assert entry.decision == "rejected" and "test_accuracy 0.4000 < min 0.5" in entry.reason
    assert current_champion(client, NAME) is None


def test_champion_that_cannot_be_rescored_keeps_its_alias(
    store, exact_models, register_cnn
) -> None:
    root, client = store
    exact_models.train_cnn(root, correct=10)
    register_cnn(root)
    decision = gate(
        client,
        NAME,
        "1",
        {"test_accuracy": 1.0},
        metric="test_accuracy",
        thresholds=THRESHOLDS,
        tolerance=0.0,
        score_champion=lambda version: {},
    )
    assert decision.promote  # comparing a version with itself: nothing to re-score
    exact_models.train_cnn(root, correct=10, scale=30.0)
    entry = register_cnn(root)
    assert entry.decision == "promoted"

    def broken(version: str) -> dict:
        raise OSError("artifact store unreachable")

    decision = gate(
        client,
        NAME,
        "1",
        {"test_accuracy": 1.0},
        metric="test_accuracy",
        thresholds=THRESHOLDS,
        tolerance=0.0,
        score_champion=broken,
    )
    assert not decision.promote and "could not be re-scored" in decision.reason
    assert current_champion(client, NAME) == "2"


def test_version_registered_before_a_crash_is_gated_on_the_next_run(
    store, exact_models, register_cnn, monkeypatch
) -> None:
    import tasks.register

    root, client = store
    exact_models.train_cnn(root, correct=10)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed between registration and gate")

    with monkeypatch.context() as patch:
        patch.setattr(tasks.register, "_run_gate", crash)
        with pytest.raises(KeyboardInterrupt):
            register_cnn(root)
    assert current_champion(client, NAME) is None
    assert "gate.decision" not in client.get_model_version(NAME, "1").tags

    entry = register_cnn(root)  # same model file: no new version, but the gate now runs
    assert (entry.version, entry.decision) == ("1", "promoted")
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 1
    assert current_champion(client, NAME) == "1"


SCORES = {"1": 0.80, "2": 0.95, "3": 0.90}  # v1 the old champion; v2 beats v3


def _with_champion(client, tmp_path: Path, name: str) -> None:
    """Three versions of `name`; v1 is champion (gated with no champion before it)."""
    client.create_registered_model(name)
    for _ in SCORES:
        client.create_model_version(name, source=str(tmp_path), run_id=None)
    first = gate(
        client,
        name,
        "1",
        {"acc": SCORES["1"]},
        metric="acc",
        thresholds={"acc": {"min": 0.5}},
        tolerance=0.01,
        score_champion=lambda version: {},
    )
    assert first.promote and current_champion(client, name) == "1"


@pytest.mark.parametrize(
    ("late", "early", "late_decision", "late_against"),
    [
        ("2", "3", "promoted", "3"),  # v3 promoted over v1 first; v2 re-compared with v3 and wins
        ("3", "2", "rejected", "2"),  # v2 promoted over v1 first; v3 re-compared with v2 and loses
    ],
)
def test_concurrent_promotions_compare_and_set_in_threads(
    tmp_path: Path, late: str, early: str, late_decision: str, late_against: str
) -> None:
    """Two gates read champion v1 and score it slowly at the same time; the early one promotes
    first, so the late one must notice the champion moved and compare with the new one."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = "race"
    _with_champion(client, tmp_path, name)
    scored: dict[str, list[str]] = {early: [], late: []}
    start = threading.Barrier(2)

    def promote(version: str) -> None:
        def slow_score(champion: str) -> dict:
            scored[version].append(champion)
            time.sleep(0.6)
            return {"acc": SCORES[champion]}

        start.wait()
        if version == late:
            time.sleep(0.3)  # reads champion v1 while the early gate is still scoring it
        gate(
            client,
            name,
            version,
            {"acc": SCORES[version]},
            metric="acc",
            thresholds={"acc": {"min": 0.5}},
            tolerance=0.01,
            score_champion=slow_score,
        )

    threads = [threading.Thread(target=promote, args=(version,)) for version in (early, late)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert current_champion(client, name) == "2"
    assert scored == {early: ["1"], late: ["1", early]}
    early_tags = client.get_model_version(name, early).tags
    assert (early_tags["gate.decision"], early_tags["gate.champion_version"]) == ("promoted", "1")
    late_tags = client.get_model_version(name, late).tags
    assert (late_tags["gate.decision"], late_tags["gate.champion_version"]) == (
        late_decision,
        late_against,
    )


RACE_SCRIPT = """
import sys, time
from pathlib import Path
from mlflow import MlflowClient
from tasks.registry.gate import gate

uri, name, version, delay, barrier = sys.argv[1:]
scores = {"1": 0.80, "2": 0.95, "3": 0.90}
client = MlflowClient(tracking_uri=uri, registry_uri=uri)

def slow_score(champion):
    print(champion, flush=True)
    time.sleep(0.6)
    return {"acc": scores[champion]}

Path(barrier, version).touch()
while len(list(Path(barrier).iterdir())) < 2:  # both processes ready: start together
    time.sleep(0.01)
time.sleep(float(delay))
gate(client, name, version, {"acc": scores[version]}, metric="acc",
     thresholds={"acc": {"min": 0.5}}, tolerance=0.01, score_champion=slow_score)
"""


def test_concurrent_promotions_in_separate_processes(tmp_path: Path) -> None:
    """As two pipeline runs would: two OS processes gate versions of one model at once against
    one sqlite store. The file lock and compare-and-set make the late one (v3) re-compare with
    the early winner (v2) and lose, leaving v2 champion."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    _with_champion(client, tmp_path, "process-race")
    repo = Path(__file__).resolve().parents[3]
    env = os.environ | {"PYTHONPATH": str(repo)}
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    delays = {"2": 0.0, "3": 0.3}
    processes = {
        version: subprocess.Popen(
            [
                sys.executable,
                "-c",
                RACE_SCRIPT,
                uri,
                "process-race",
                version,
                str(delays[version]),
                str(barrier),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for version in ("3", "2")
    }
    scored = {}
    for version, process in processes.items():
        out, errors = process.communicate(timeout=180)
        assert process.returncode == 0, errors
        scored[version] = out.split()
    assert scored == {"2": ["1"], "3": ["1", "2"]}
    assert current_champion(client, "process-race") == "2"
    tags = client.get_model_version("process-race", "3").tags
    assert (tags["gate.decision"], tags["gate.champion_version"]) == ("rejected", "2")


def test_unreachable_lock_database_moves_no_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With IMGFLOW_LOCK_URL set but PostgreSQL unreachable, the gate fails with a clear error
    before writing anything: champion and the challenger's tags stay as they were."""
    from mlflow import MlflowClient

    from tasks.locks import LockUnavailableError

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    _with_champion(client, tmp_path, "unlocked")
    monkeypatch.setenv("IMGFLOW_LOCK_URL", "postgresql://postgres@127.0.0.1:1/locks")
    with pytest.raises(LockUnavailableError, match="registered model unlocked: cannot open"):
        gate(
            client,
            "unlocked",
            "2",
            {"acc": SCORES["2"]},
            metric="acc",
            thresholds={"acc": {"min": 0.5}},
            tolerance=0.01,
            score_champion=lambda version: {"acc": SCORES[version]},
        )
    assert current_champion(client, "unlocked") == "1"
    assert "gate.decision" not in client.get_model_version("unlocked", "2").tags


POSTGRES = ("127.0.0.1", 5432)
LOCK_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def lock_url() -> str:
    import socket

    try:
        socket.create_connection(POSTGRES, timeout=1).close()
    except OSError:
        pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432 (team topology tests need it)")
    return LOCK_URL


def _host_env(repo: Path, lock_url: str, host: Path, **extra: str) -> dict[str, str]:
    """A scheduling host's environment: the shared lock database, its own temp (lock) dir."""
    host.mkdir(parents=True, exist_ok=True)
    own = {"PYTHONPATH": str(repo), "IMGFLOW_LOCK_URL": lock_url, "TMPDIR": str(host)}
    return os.environ | own | extra


@pytest.mark.topology
@pytest.mark.parametrize(
    "delays",
    [{"2": 0.0, "3": 0.3}, {"2": 0.3, "3": 0.0}, {"2": 0.0, "3": 0.0}],
    ids=["v2-first", "v3-first", "together"],
)
def test_two_hosts_gating_at_once_serialise_on_the_postgres_lock(
    tmp_path: Path, lock_url: str, delays: dict[str, float]
) -> None:
    """Two scheduling hosts (processes with their own temp/lock dirs, one lock database) gate
    versions of one model at once: whatever the order, v2 (the better) ends champion and the
    history and tags agree. The hosts took no file lock: the PostgreSQL lock serialised them."""
    from mlflow import MlflowClient

    from tasks.locks import model_lock_file
    from tasks.registry.champion import champion_history

    name = f"hosts-race-{tmp_path.name}"
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    _with_champion(client, tmp_path, name)
    repo = Path(__file__).resolve().parents[3]
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    processes = {
        version: subprocess.Popen(
            [sys.executable, "-c", RACE_SCRIPT, uri, name, version, str(delays[version]),
             str(barrier)],
            env=_host_env(repo, lock_url, tmp_path / f"host-{version}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for version in ("2", "3")
    }  # fmt: skip
    try:
        for process in processes.values():
            _, errors = process.communicate(timeout=180)
            assert process.returncode == 0, errors
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    # The file lock was last taken by this process's setup gate, never by the two hosts.
    assert json.loads(model_lock_file(name, uri).read_text())["pid"] == os.getpid()
    assert current_champion(client, name) == "2"
    v2 = client.get_model_version(name, "2").tags
    v3 = client.get_model_version(name, "3").tags
    assert v2["gate.decision"] == "promoted"
    if v3["gate.decision"] == "promoted":  # v3 won the lock first and beat v1, then v2 beat it
        assert (v3["gate.champion_version"], v2["gate.champion_version"]) == ("1", "3")
        assert champion_history(client, name) == ["1", "3", "2"]
    else:  # v2 first; v3 re-compared with the new champion and lost
        assert (v2["gate.champion_version"], v3["gate.champion_version"]) == ("1", "2")
        assert champion_history(client, name) == ["1", "2"]


REGISTER_SCRIPT = """
import sys, time
from pathlib import Path
from tasks.register import register_models
from tasks.registry.stage_params import StageParams

root, barrier, host = sys.argv[1:]
Path(barrier, host).touch()
while len(list(Path(barrier).iterdir())) < 2:  # both hosts ready: register together
    time.sleep(0.01)
(entry,) = register_models(Path(root), StageParams.load(Path(root) / "params.yaml"), ["cnn"])
print(entry.version, entry.reused, entry.decision, flush=True)
"""


@pytest.mark.topology
def test_two_hosts_registering_the_same_files_at_once_register_them_once(
    tmp_path: Path, lock_url: str, fake_repo
) -> None:
    """Two hosts with identical model files (say, restored from the DVC run-cache) run the
    register stage at once against one store: one version is registered and gated, the other
    host reuses it. Without the lock both would see no version for those files and register."""
    import shutil

    from mlflow import MlflowClient

    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    # Created once beforehand, as a team's store has it (concurrent first creation is MLflow's).
    client.create_experiment(fake_repo.params["register"]["experiment"], str(store / "artifacts"))
    roots = {"a": fake_repo.build(tmp_path / "host-a" / "repo")}
    roots["b"] = Path(shutil.copytree(roots["a"], tmp_path / "host-b" / "repo"))
    repo = Path(__file__).resolve().parents[3]
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    processes = {
        host: subprocess.Popen(
            [sys.executable, "-c", REGISTER_SCRIPT, str(root), str(barrier), host],
            env=_host_env(repo, lock_url, tmp_path / f"tmp-{host}", MLFLOW_TRACKING_URI=uri),
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for host, root in roots.items()
    }
    try:
        printed = {}
        for host, process in processes.items():
            out, errors = process.communicate(timeout=300)
            assert process.returncode == 0, errors
            printed[host] = out.split()
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    versions = client.search_model_versions("name = 'digits-cnn'")
    assert [str(version.version) for version in versions] == ["1"]
    assert sorted(words[1] for words in printed.values()) == ["False", "True"]
    assert {words[0] for words in printed.values()} == {"1"}
    assert current_champion(client, "digits-cnn") == "1"
    assert not (store / ".imgflow-locks").exists()


def test_gan_gate_rejects_a_collapsed_generator_and_scores_a_copy_at_the_real_ceiling(
    store, exact_models, fake_repo
) -> None:
    """Issue 13, with the shipped register.thresholds.gan: one perfect drawing per class is 100 %
    recognisable yet rejected for its coverage; a generator drawing from the real test images
    scores at the real ceiling and is promoted."""
    from tasks.register import register_models

    root, client = store
    # Enough images per class for 5-neighbour balls, and for a copier drawing 12 per class
    # (with replacement) to repeat few of them: repeats are a finite set's own collapse.
    fake_repo.write_splits(root, per_class=36)
    exact_models.train_cnn(root, correct=10)
    params = fake_repo.params
    shipped = yaml.safe_load(SHIPPED_PARAMS.read_text())
    params["register"]["thresholds"]["gan"] = shipped["register"]["thresholds"]["gan"]
    params["evaluate"]["gan_samples"] = 120
    stage_params = fake_repo.stage_params(root, params)

    collapsed = exact_models.train_gan(root, evaluate=params["evaluate"])
    assert collapsed["recognisable_share"] == 1.0 and collapsed["classes_covered"] == 10
    assert collapsed["recall"] == 0.0 and collapsed["diversity_score"] < 0.3
    _, gan = register_models(root, stage_params, models=["cnn", "gan"])
    assert (gan.version, gan.decision, gan.headline_metric) == ("1", "rejected", "diversity_score")
    assert "coverage" in gan.reason and "min_class_coverage" in gan.reason
    assert current_champion(client, "digits-gan") is None

    copy = exact_models.train_gan(root, copy_test=True, evaluate=params["evaluate"])
    # At the real ceiling up to sampling: 12 test images a class (drawn with replacement) recall
    # the test split about as well as 12 train images do (0.92 vs 0.98 here), and cover it better.
    assert copy["diversity_score"] > 0.9 and copy["recall"] > 0.9
    assert copy["coverage"] >= copy["coverage_ceiling"] and copy["precision"] == 1.0
    assert copy["frechet_ratio"] < 1.0
    (gan,) = register_models(root, stage_params, models=["gan"])
    assert (gan.version, gan.decision) == ("2", "promoted")
    assert gan.headline_value == pytest.approx(copy["diversity_score"])
    assert current_champion(client, "digits-gan") == "2"
