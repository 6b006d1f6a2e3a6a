"""A long-lived Spark Connect server: the warm Spark that runs connect to in about a second.

A local Spark session costs every run a JVM start and a slow first micro-batch (DESIGN.md: 30-45 s
cold against ~5 s warm for a 20-block run). A deployment that follows the chain head keeps one
server running (``chainlake spark-server``, started by ``make dev``; a service in docker/) and
points runs at it with ``CHAINLAKE_SPARK_REMOTE=sc://127.0.0.1:15002``. The server is pyspark's
own jars (no download), bound to loopback, with the same configuration as a local session; the
`evm` source and the sink run in its Python workers, so it must see the lake's file system.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ingestion import settings
from ingestion.processes import proc_stat, stop_group, tree_pids
from ingestion.spark import SESSION_CONF, java_options, python_environment, worker_interpreter

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"

# A server runs a query every few seconds (a run per new block when following the head). With
# PySpark's fork daemon, each query's Python workers (data source creation, read planning, tasks)
# are forks of a process that has imported pyspark, and task workers stay for the next query:
# the first 1,500 blocks of a run reach the lake ~2 s sooner, at ~2 CPU-s less per run
# (benchmarks/side_by_side.py). A local session runs one query and keeps SESSION_CONF's choice.
# Spark keeps a daemon per kind of worker and per Connect session, so clients share one session
# (``spark.shared_session_id``) and ``IdleDaemonReaper`` stops daemons nobody uses.
SERVER_CONF: dict[str, str] = {**SESSION_CONF, "spark.python.use.daemon": "true"}


class SparkServerError(RuntimeError):
    """The Spark Connect server could not be started."""


class IdleDaemonReaper:
    """Stops the server's PySpark fork daemons, with their idle workers, once they have done no
    work for ``idle_s`` seconds.

    Spark starts one daemon per kind of worker and per Connect session and never stops one: every
    session a client ever opened (a notebook, a shared session the server closed) would keep
    ~0.3 GiB of idle processes for the server's lifetime. A daemon reaped while its session is
    still in use costs that session one daemon start: Spark replaces a daemon it finds gone.
    ``sweep`` is called periodically by whoever keeps the server (``chainlake spark-server``).
    """

    def __init__(self, root_pid: int, idle_s: float = settings.SPARK_DAEMON_IDLE_S) -> None:
        self.root_pid, self.idle_s = root_pid, idle_s
        self._last_work: dict[int, tuple[int, float]] = {}  # daemon pid -> (group CPU, since)

    def sweep(self, now: float | None = None) -> list[int]:
        """Reap the daemons idle for ``idle_s``; return their pids."""
        now = time.monotonic() if now is None else now
        daemons = pyspark_daemons(self.root_pid)
        reaped = []
        for pid, cpu in daemons.items():
            last = self._last_work.get(pid)
            if last is None or last[0] != cpu:
                self._last_work[pid] = (cpu, now)
            elif now - last[1] >= self.idle_s:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
                reaped.append(pid)
        for pid in (set(self._last_work) - set(daemons)) | set(reaped):
            del self._last_work[pid]
        return reaped


def pyspark_daemons(root_pid: int) -> dict[int, int]:
    """The PySpark fork daemons under process ``root_pid`` (each leads its process group):
    pid -> CPU ticks of its whole group (the daemon and its workers)."""
    group_of = {pid: fields[2] for pid in tree_pids(root_pid)
                if (fields := proc_stat(pid)) is not None}
    daemons = {}
    for pid, group in group_of.items():
        if group != str(pid):
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"pyspark.daemon" not in f.read().split(b"\0"):
                    continue
        except OSError:
            continue
        daemons[pid] = sum(int(fields[11]) + int(fields[12]) for member, g in group_of.items()
                           if g == group and (fields := proc_stat(member)) is not None)
    return daemons


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class SparkConnectServer:
    """A Spark Connect server process in its own process group; ``url`` is what clients use."""

    port: int = settings.DEFAULT_SPARK_SERVER_PORT
    master: str = settings.DEFAULT_SPARK_MASTER
    log_path: Path | None = None
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        conf = {**SERVER_CONF,
                "spark.driver.extraJavaOptions": java_options(
                    SESSION_CONF["spark.driver.extraJavaOptions"]),
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1", "spark.pyspark.python": worker_interpreter(),
                "spark.connect.grpc.binding.address": "127.0.0.1",
                "spark.connect.grpc.binding.port": str(self.port)}
        cmd = [str(spark_home() / "bin" / "spark-submit"), "--class", SERVER_CLASS,
               "--master", self.master, "--name", "chainlake-spark-server"]
        for key, value in conf.items():
            cmd += ["--conf", f"{key}={value}"]
        return [*cmd, "spark-internal"]

    def start(self, timeout: float = 180.0) -> SparkConnectServer:
        if self.process is not None:
            raise SparkServerError("Spark Connect server already started")
        if _port_open(self.port):
            raise SparkServerError(f"port {self.port} on 127.0.0.1 is already in use (a Spark "
                                   f"Connect server already running?); choose another port")
        python_environment()
        command = self.command()
        env = {**os.environ, "SPARK_HOME": str(spark_home())}
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SparkServerError(f"the Spark Connect server exited with code "
                                       f"{self.process.returncode} at start"
                                       + (f" (see {self.log_path})" if self.log_path else ""))
            if _port_open(self.port):
                return self
            time.sleep(0.2)
        self.stop()
        raise SparkServerError(f"the Spark Connect server did not listen on port {self.port} "
                               f"within {timeout:.0f}s")

    def stop(self) -> None:
        proc, self.process = self.process, None
        stop_group(proc, timeout=20)

    def __enter__(self) -> SparkConnectServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
