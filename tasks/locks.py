"""Locks that keep two runs apart: one checkout's run lock, and each registered model's lock.

A model's lock serialises registering its files and moving its aliases. Embedded (no
IMGFLOW_LOCK_URL) it is an flock on a file, which excludes processes of one host only. With
IMGFLOW_LOCK_URL set it is a PostgreSQL advisory lock held by a dedicated session, which
excludes every host using that database; PostgreSQL ends the session, and so releases the lock,
when its holder dies. Both wait at most IMGFLOW_LOCK_TIMEOUT seconds, then name the holder.

The run lock is an flock on `.imgflow-locks/imgflow-run.lock` in the checkout; the kernel
releases it when its process dies, so a killed run never blocks the next one. The lock files
carry their holder (JSON) for the error message only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from tasks.settings import Settings

RUN_LOCK_FILE = Path(".imgflow-locks") / "imgflow-run.lock"
SQLITE_PREFIX = "sqlite:///"
POLL_SECONDS = 0.05
CONNECT_TIMEOUT_SECONDS = 10
# A holder whose host vanishes from the network (no FIN) is noticed within ~idle + count*interval.
KEEPALIVE_OPTIONS = (
    "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3"
)
MAX_APPLICATION_NAME = 63  # PostgreSQL truncates longer names (NAMEDATALEN - 1)

_held_run_locks: dict[Path, int] = {}  # run locks this process holds, with their depth


class LockError(RuntimeError):
    """A lock could not be taken; the message says which, why and what to do."""


class LockTimeoutError(LockError):
    """Another process held the lock for longer than the timeout."""


class LockUnavailableError(LockError):
    """The lock database cannot be reached or the lock URL is unusable."""


class RunInProgressError(LockError):
    """Another imgflow run holds this checkout."""


def holder_record(**extra: str) -> dict[str, Any]:
    """Who is taking a lock: host, pid and start time (plus e.g. the flow run's name)."""
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": started, **extra}


def _since(stamp: str) -> str:
    """An ISO UTC time as HH:MM:SS UTC (with the date when it is not today)."""
    try:
        moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return stamp
    today = datetime.now(UTC).date() == moment.date()
    return moment.strftime("%H:%M:%S UTC" if today else "%Y-%m-%d %H:%M:%S UTC")


def describe_holder(holder: dict[str, Any] | None) -> str:
    """`pid 1234 on host-a since 14:02:11 UTC, flow run 'x'`, or `holder unknown`."""
    if not holder:
        return "holder unknown"
    text = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    if holder.get("since"):
        text += f" since {_since(str(holder['since']))}"
    if holder.get("flow_run"):
        text += f", flow run {holder['flow_run']!r}"
    return text


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # being rewritten by a new holder, or never written
    return holder if isinstance(holder, dict) else None


def _write_holder(handle: IO[str], holder: dict[str, Any]) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(holder))
    handle.flush()


def _try_flock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def file_lock(path: Path, timeout: float, what: str) -> Iterator[None]:
    """Hold an exclusive flock on `path`, waiting at most `timeout` seconds (0: do not wait).

    Raises LockTimeoutError naming `what` and the holder. An flock is per open file, so this also
    excludes threads of one process.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with path.open("a+") as handle:
        while not _try_flock(handle):
            if time.monotonic() >= deadline:
                raise LockTimeoutError(
                    f"{what}: lock {path} still held after {timeout:g} s by "
                    f"{describe_holder(_read_holder(path))}; wait for it to finish, or raise "
                    "IMGFLOW_LOCK_TIMEOUT"
                )
            time.sleep(POLL_SECONDS)
        try:
            _write_holder(handle, holder_record(lock=what))
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_key(store_uri: str, name: str) -> int:
    """A stable signed 64-bit advisory-lock key for one registered model in one store.

    Credentials, scheme/host case and a trailing slash are left out, so every host naming the
    store by the same address gets the same key.
    """
    parts = urlsplit(store_uri.strip())
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    if parts.scheme and parts.netloc:
        store = urlunsplit((parts.scheme.lower(), netloc.lower(), parts.path.rstrip("/"), "", ""))
    else:
        store = store_uri.strip()
    digest = hashlib.sha256(f"{store}\n{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def redact(url: str) -> str:
    """A lock URL with its password hidden, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _connect(url: str, label: str) -> Any:
    """A dedicated autocommit session to the lock database, named after this process."""
    import psycopg2

    name = f"imgflow {socket.gethostname()}:{os.getpid()} {label}"[:MAX_APPLICATION_NAME]
    try:
        connection = psycopg2.connect(
            url,
            application_name=name,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            options=KEEPALIVE_OPTIONS,
        )
    except psycopg2.Error as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise LockUnavailableError(
            f"{label}: cannot open the lock database IMGFLOW_LOCK_URL={redact(url)}: "
            f"{first_line}; check that PostgreSQL is running and the URL is right "
            "(unset IMGFLOW_LOCK_URL for the single-host file lock); nothing was changed"
        ) from None
    connection.autocommit = True
    return connection


def advisory_holder(connection: Any, key: int) -> str:
    """Who holds advisory lock `key`: the session's application name, address and start."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.application_name, a.client_addr, a.pid, a.backend_start"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND l.classid = %s::oid AND l.objid = %s::oid",
            (str(unsigned >> 32), str(unsigned & 0xFFFF_FFFF)),
        )
        row = cursor.fetchone()
    if row is None:
        return "holder unknown (released meanwhile)"
    application, address, backend, started = row
    since = started.astimezone(UTC).strftime("%H:%M:%S UTC") if started else "?"
    return (
        f"{application!r} (backend pid {backend}, from {address or 'local socket'}, since {since})"
    )


def _acquire_advisory(connection: Any, key: int, timeout: float, label: str) -> None:
    """pg_advisory_lock(key), waiting at most `timeout` seconds (lock_timeout)."""
    import psycopg2.errors

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('lock_timeout', %s, false)", (f"{int(timeout * 1000)}ms",)
        )
        try:
            cursor.execute("SELECT pg_advisory_lock(%s)", (key,))
        except psycopg2.errors.LockNotAvailable:
            raise LockTimeoutError(
                f"{label}: PostgreSQL advisory lock {key} still held after {timeout:g} s by "
                f"{advisory_holder(connection, key)}; wait for that run to finish, or raise "
                "IMGFLOW_LOCK_TIMEOUT"
            ) from None
        cursor.execute("SELECT set_config('lock_timeout', '0', false)")


@contextlib.contextmanager
def postgres_lock(url: str, key: int, timeout: float, label: str) -> Iterator[None]:
    """Hold PostgreSQL advisory lock `key` on a session of its own for the `with` body.

    The session lives exactly as long as the lock: if this process dies or its connection
    drops, PostgreSQL ends the session and the lock is free for the next host.
    """
    import psycopg2

    connection = _connect(url, label)
    try:
        try:
            _acquire_advisory(connection, key, timeout, label)
        except psycopg2.OperationalError as error:
            raise LockUnavailableError(
                f"{label}: lost the lock database {redact(url)} while taking the lock: "
                f"{str(error).strip()}; nothing was changed"
            ) from None
        yield
    finally:
        connection.close()  # ends the session: releases the lock even if unlock never ran


def model_lock_file(name: str, store_uri: str) -> Path:
    """The flock file of one registered model: next to a sqlite store, else in the temp dir
    (host-local: only IMGFLOW_LOCK_URL excludes other hosts)."""
    if store_uri.startswith(SQLITE_PREFIX):
        folder = Path(store_uri.removeprefix(SQLITE_PREFIX)).resolve().parent / ".imgflow-locks"
    else:
        digest = hashlib.sha256(store_uri.encode()).hexdigest()[:12]
        folder = Path(tempfile.gettempdir()) / "imgflow-locks" / digest
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return folder / f"{safe}.lock"


def model_lock(
    settings: Settings, store_uri: str, name: str
) -> contextlib.AbstractContextManager[None]:
    """The lock of one registered model in one store: a PostgreSQL advisory lock when
    IMGFLOW_LOCK_URL is set, else an flock on model_lock_file(name, store_uri)."""
    label = f"registered model {name}"
    timeout = settings.lock_timeout_seconds
    if settings.lock_url:
        return postgres_lock(settings.lock_url, lock_key(store_uri, name), timeout, label)
    return file_lock(model_lock_file(name, store_uri), timeout, label)


@contextlib.contextmanager
def run_lock(repo: Path, flow_run: str | None = None) -> Iterator[None]:
    """Hold this checkout for one imgflow run; raise RunInProgressError at once if another holds it.

    Re-entrant within a process (`imgflow run` takes it, then the flow it calls takes it
    again and records its flow run's name).
    """
    path = (Path(repo) / RUN_LOCK_FILE).resolve()
    if path in _held_run_locks:
        if flow_run:
            path.write_text(json.dumps(holder_record(flow_run=flow_run)))
        _held_run_locks[path] += 1
        try:
            yield
        finally:
            _held_run_locks[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        if not _try_flock(handle):
            raise RunInProgressError(
                "another imgflow run is in progress in this checkout "
                f"({describe_holder(_read_holder(path))}); wait for it to finish or stop it"
            )
        _held_run_locks[path] = 1
        try:
            _write_holder(handle, holder_record(**({"flow_run": flow_run} if flow_run else {})))
            yield
        finally:
            del _held_run_locks[path]
            fcntl.flock(handle, fcntl.LOCK_UN)
