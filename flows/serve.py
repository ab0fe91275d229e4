"""Local production topology in one command (`make serve`): a Prefect server on 127.0.0.1,
process workers for the `cpu` and `gpu` pools, and the deployments applied. Ctrl-C stops all.

The same helpers start and stop the real server and workers in the tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PREFECT = [sys.executable, "-m", "prefect"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: each probe stays bound until all are chosen (one at a time,
    the kernel may hand out the same port twice, and a server then fails on its second bind)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def wait_until_healthy(api_url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"Prefect server at {api_url} not healthy after {timeout:.0f} s")


@dataclass
class LocalStack:
    """A running Prefect server and its workers; `stop()` ends every process it started."""

    api_url: str
    ui_url: str
    environment: dict[str, str]
    processes: list[subprocess.Popen] = field(default_factory=list)

    def start_worker(self, pool: str, limit: int, log_file: Path) -> subprocess.Popen:
        handle = log_file.open("ab")
        worker = subprocess.Popen(
            [
                *PREFECT,
                "worker",
                "start",
                "--pool",
                pool,
                "--type",
                "process",
                "--limit",
                str(limit),
                "--install-policy",
                "never",
            ],
            env=self.environment,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(worker)
        return worker

    def stop(self) -> None:
        stop_processes(self.processes)


def start_process(
    command: list[str], environment: dict[str, str], log_file: Path
) -> subprocess.Popen:
    """Start `command` in its own process group (so it can be stopped with its children),
    appending its output to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as handle:
        return subprocess.Popen(
            command,
            env=environment,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_processes(processes: list[subprocess.Popen], timeout: float = 20.0) -> None:
    """SIGTERM each process group (last started first); SIGKILL those still alive after
    `timeout` seconds."""
    for process in reversed(processes):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until_answering(
    url: str, process: subprocess.Popen, name: str, timeout: float = 120.0
) -> None:
    """Wait until `url` answers with any HTTP status below 500; fail at once if `process`
    (the server behind it) exits, naming `name` so the reader knows which log to open."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}: see its log")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError as error:
            if error.code < 500:
                return
            time.sleep(0.5)
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{name} at {url} did not answer within {timeout:.0f} s")


def stack_environment(prefect_home: Path, api_url: str) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="2",  # pick scheduled runs up promptly
        PATH=os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "")]),
    )
    return environment


@contextmanager
def local_stack(
    prefect_home: Path, port: int | None = None, log_dir: Path | None = None
) -> Iterator[LocalStack]:
    """Start `prefect server start` on 127.0.0.1; stops it (and any worker) on exit."""
    port = port or free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    environment = stack_environment(prefect_home, api_url)
    log_dir = log_dir or prefect_home
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(api_url, f"http://127.0.0.1:{port}", environment)
    server_log = (log_dir / "server.log").open("ab")
    stack.processes.append(
        subprocess.Popen(
            [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=environment,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    )
    try:
        wait_until_healthy(api_url)
        yield stack
    finally:
        stack.stop()


def main() -> int:
    from tasks.settings import Settings

    settings = Settings.from_environment(Path("."))
    # `kill`/systemd stop the supervisor with SIGTERM: unwind so the server and workers stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    slots = settings.gpu_slots
    with local_stack(settings.prefect_home, settings.prefect_port, log_dir=Path("logs")) as stack:
        subprocess.run([sys.executable, "-m", "flows.deploy"], env=stack.environment, check=True)
        stack.start_worker(settings.cpu_pool, 1, Path("logs/worker-cpu.log"))
        stack.start_worker(settings.gpu_pool, slots, Path("logs/worker-gpu.log"))
        print(f"Prefect UI: {stack.ui_url}   (API {stack.api_url})")
        print("MLflow UI:  `make ui`, then http://127.0.0.1:5000")
        print(
            f"workers: pool '{settings.cpu_pool}' (retrain), pool '{settings.gpu_pool}' "
            f"({slots} training slot(s)); logs in logs/. Ctrl-C stops everything."
        )
        try:
            while all(process.poll() is None for process in stack.processes):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
