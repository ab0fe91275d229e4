"""Fixtures of the flow tests: one temporary Prefect server for every flow test of the session
(it takes ~30 s to start on these machines)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Prefect's test harness (a temporary server and database) with its own PREFECT_HOME."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


POSTGRES_MAINTENANCE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _postgres_answers() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres() -> str:
    """The local PostgreSQL's maintenance URL; skips, saying why, when it does not answer."""
    if not _postgres_answers():
        pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432 (team topology tests need it)")
    return POSTGRES_MAINTENANCE_URL


@pytest.fixture(scope="module")
def team_databases(postgres: str) -> Iterator[list[str]]:
    """Fresh names for the team servers' three databases (MLflow, its auth, Prefect) on the
    local PostgreSQL, dropped afterwards."""
    import uuid

    prefix = f"imgflow_t{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}_mlflow", f"{prefix}_auth", f"{prefix}_prefect"]
    yield names
    import psycopg2

    connection = psycopg2.connect(postgres)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for name in names:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        connection.close()
