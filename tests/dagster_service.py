"""A Dagster service (webserver, or `dagster dev`) for tests: its own DAGSTER_HOME with
config/dagster.yaml, its own process group, waited for until GraphQL answers, always stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from ingestion.devnet import free_port

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DagsterService:
    url: str  # http://127.0.0.1:PORT
    home: Path  # DAGSTER_HOME
    log: Path
    process: subprocess.Popen

    @property
    def graphql(self) -> str:
        return f"{self.url}/graphql"

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:]

    def alive(self) -> None:
        assert self.process.poll() is None, self.log_tail()


@contextmanager
def dagster_service(program: str, tmp_path: Path, env: dict[str, str],
                    start_timeout: float = 180) -> Iterator[DagsterService]:
    """Run ``program`` (``dagster-webserver`` or ``dagster dev``) on workspace.yaml."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(REPO / "config" / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    cmd = [str(Path(sys.executable).parent / program.split()[0]), *program.split()[1:],
           "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    log_path = tmp_path / f"{program.replace(' ', '-')}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **env, "DAGSTER_HOME": str(home)},
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        service = DagsterService(f"http://127.0.0.1:{port}", home, log_path, proc)
        try:
            deadline = time.monotonic() + start_timeout
            while not _answers(service.graphql):
                service.alive()
                assert time.monotonic() < deadline, f"no answer in {start_timeout:.0f}s"
                time.sleep(0.5)
            yield service
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.post(url, json={"query": "{ version }"}, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
