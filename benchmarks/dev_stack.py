"""``make dev``'s stack (``python -m assets.dev``) for a benchmark: started in a temporary
DAGSTER_HOME and lake on free ports, in a process group of its own, stopped by that group
whatever happens (``with DevStack(...) as stack:``). Used by tip_latency.py and soak.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from ingestion.devnet import free_port

REPO = Path(__file__).resolve().parent.parent


class DevStack:
    def __init__(self, prefix: str, block_time: float, *, cold_spark: bool = False,
                 env: dict[str, str] | None = None) -> None:
        self.work = Path(tempfile.mkdtemp(prefix=prefix))
        self.home, self.lake_root = self.work / "dagster_home", self.work / "lake"
        self.devnet_port, self.ui_port, spark_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.devnet_port}"
        self.cmd = [sys.executable, "-m", "assets.dev", "--devnet-port", str(self.devnet_port),
                    "--ui-port", str(self.ui_port), "--block-time", f"{block_time:g}",
                    "--blocks", "20", "--dagster-home", str(self.home), "--lake",
                    str(self.lake_root), "--spark-port", str(spark_port)]
        if cold_spark:
            self.cmd.append("--no-spark-server")
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> DevStack:
        self._log = open(self.work / "stack.log", "w")  # noqa: SIM115 - closed in __exit__
        self.process = subprocess.Popen(self.cmd, cwd=REPO, env=self.env, stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def exited(self) -> int | None:
        """The stack's exit code once it has exited, else None."""
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        """SIGTERM the stack's group (``assets.dev`` stops its children), SIGKILL after 60 s."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if not self._log.closed:
            self._log.close()
