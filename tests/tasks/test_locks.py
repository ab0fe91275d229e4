"""Locks between OS processes: the file lock and the PostgreSQL advisory lock exclude, time out
naming the holder, and free themselves when the holder is killed; an unreachable or malformed
lock database gives a clear error. Every holder is a real child process.

The PostgreSQL tests are marked `topology` and skip when 127.0.0.1:5432 does not answer.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.locks import (
    LockTimeoutError,
    LockUnavailableError,
    file_lock,
    lock_key,
    model_lock,
    model_lock_file,
    postgres_lock,
)
from tasks.settings import Settings

REPO = Path(__file__).resolve().parents[2]
POSTGRES = ("127.0.0.1", 5432)
LOCK_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
UNREACHABLE_URL = "postgresql://postgres:s3cret@127.0.0.1:1/locks"

HOLDER_SCRIPT = """
import sys
from pathlib import Path
from tasks import locks

kind, target, key = sys.argv[1:4]
if kind == "file":
    lock = locks.file_lock(Path(target), 30, "test holder")
else:
    lock = locks.postgres_lock(target, int(key), 30, "test holder")
with lock:
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


class Holder:
    """A child process that takes a lock, says `held`, and releases it on a line on stdin."""

    def __init__(self, kind: str, target: str, key: int = 0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER_SCRIPT, kind, target, str(key)],
            env=os.environ | {"PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.output = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def said(self, word: str, timeout: float) -> bool:
        """Whether the child printed `word` within `timeout` seconds."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while word.encode() not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.process.stdout], [], [], left)
            if ready:
                chunk = os.read(self.process.stdout.fileno(), 4096)
                if not chunk:
                    return word.encode() in self.output
                self.output += chunk
        return True

    def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def errors(self) -> str:
        assert self.process.stderr is not None
        if self.process.poll() is None:
            return ""
        return self.process.stderr.read().decode()


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    """Start holders by appending them; every one is killed at teardown, even on failure."""
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.stop()


def start(holders: list[Holder], kind: str, target: str, key: int = 0) -> Holder:
    holder = Holder(kind, target, key)
    holders.append(holder)
    return holder


@pytest.fixture
def lock_url() -> str:
    try:
        socket.create_connection(POSTGRES, timeout=1).close()
    except OSError:
        pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432 (team topology tests need it)")
    return LOCK_URL


def unique_key() -> int:
    return lock_key(f"http://test-{uuid.uuid4().hex}:5000", "digits-cnn")


def test_file_lock_excludes_another_process_and_names_it(
    tmp_path: Path, holders: list[Holder]
) -> None:
    path = tmp_path / "locks" / "digits-cnn.lock"
    first = start(holders, "file", str(path))
    assert first.said("held", 60), first.errors()
    second = start(holders, "file", str(path))
    assert not second.said("held", 1.0)  # waits while the first holds it
    lock = file_lock(path, 0.2, "registered model digits-cnn")
    with pytest.raises(LockTimeoutError) as raised, lock:
        pass
    message = str(raised.value)
    assert "registered model digits-cnn" in message and "after 0.2 s" in message
    assert f"pid {first.pid} on {socket.gethostname()}" in message
    first.release()
    assert first.said("released", 10)
    assert second.said("held", 5), second.errors()


def test_killed_file_lock_holder_frees_the_lock(tmp_path: Path, holders: list[Holder]) -> None:
    path = tmp_path / "digits-cnn.lock"
    first = start(holders, "file", str(path))
    assert first.said("held", 60), first.errors()
    first.process.kill()
    first.process.wait(timeout=10)
    began = time.monotonic()
    with file_lock(path, 5, "waiter"):
        assert time.monotonic() - began < 1.0


def test_embedded_model_lock_is_a_file_next_to_the_sqlite_store(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert model_lock_file("digits-cnn", store) == tmp_path / ".imgflow-locks/digits-cnn.lock"
    settings = Settings.from_environment(tmp_path, environment={})
    with model_lock(settings, store, "digits-cnn"):
        assert (tmp_path / ".imgflow-locks/digits-cnn.lock").is_file()


def test_lock_key_is_stable_and_ignores_credentials_case_and_slash() -> None:
    key = lock_key("http://mlflow.team:5000", "digits-cnn")
    assert key == lock_key("HTTP://alice:pw@MLflow.Team:5000/", "digits-cnn")
    assert key != lock_key("http://mlflow.team:5000", "digits-rnn")
    assert key != lock_key("http://other:5000", "digits-cnn")
    assert -(2**63) <= key < 2**63
    # A fixed value: every host and every release must compute the same key.
    assert lock_key("http://mlflow:5000", "digits-cnn") == 6075069289021214441


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (UNREACHABLE_URL, "cannot open the lock database"),
        ("mysql://root@127.0.0.1/locks", "cannot open the lock database"),
    ],
)
def test_unusable_lock_database_is_a_clear_error(url: str, expected: str) -> None:
    began = time.monotonic()
    lock = postgres_lock(url, 1, 5, "registered model digits-cnn")
    with pytest.raises(LockUnavailableError) as raised, lock:
        pytest.fail("the body must not run without the lock")
    message = str(raised.value)
    assert expected in message and "registered model digits-cnn" in message
    assert "IMGFLOW_LOCK_URL" in message and "s3cret" not in message
    assert time.monotonic() - began < 5


@pytest.mark.topology
def test_postgres_lock_second_process_waits_then_proceeds(
    lock_url: str, holders: list[Holder]
) -> None:
    key = unique_key()
    first = start(holders, "pg", lock_url, key)
    assert first.said("held", 60), first.errors()
    second = start(holders, "pg", lock_url, key)
    assert not second.said("held", 1.5)
    first.release()
    assert first.said("released", 10)
    assert second.said("held", 5), second.errors()
    second.release()
    assert second.said("released", 10)


@pytest.mark.topology
def test_postgres_lock_timeout_names_model_and_holder(
    lock_url: str, holders: list[Holder], tmp_path: Path
) -> None:
    store = f"http://mlflow-{uuid.uuid4().hex}:5000"
    holder = start(holders, "pg", lock_url, lock_key(store, "digits-cnn"))
    assert holder.said("held", 60), holder.errors()
    environment = {"IMGFLOW_LOCK_URL": lock_url, "IMGFLOW_LOCK_TIMEOUT": "1"}
    settings = Settings.from_environment(tmp_path, environment=environment)
    began = time.monotonic()
    with pytest.raises(LockTimeoutError) as raised, model_lock(settings, store, "digits-cnn"):
        pytest.fail("the body must not run while another process holds the lock")
    assert 0.9 < time.monotonic() - began < 5
    message = str(raised.value)
    assert "registered model digits-cnn" in message and "after 1 s" in message
    assert f"imgflow {socket.gethostname()}:{holder.pid}" in message


@pytest.mark.topology
def test_killed_postgres_lock_holder_frees_the_lock_within_seconds(
    lock_url: str, holders: list[Holder]
) -> None:
    key = unique_key()
    holder = start(holders, "pg", lock_url, key)
    assert holder.said("held", 60), holder.errors()
    holder.process.kill()  # SIGKILL: no unlock, no close; PostgreSQL sees the session end
    began = time.monotonic()
    with postgres_lock(lock_url, key, 5, "waiter"):
        waited = time.monotonic() - began
    assert waited < 2.0
