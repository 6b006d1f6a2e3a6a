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
import platform
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ingestion import settings
from ingestion.processes import proc_stat, stop_group, tree_pids
from ingestion.scratch import ScratchDir, claim
from ingestion.spark import SESSION_CONF, java_options, python_environment, worker_interpreter

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"

# A server runs a query every few seconds (a run per sensor tick, following the head). With
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
    work for a while.

    Spark starts one daemon per kind of worker and per Connect session and never stops one: every
    session a client ever opened (a notebook, a shared session the server closed) would keep
    ~0.3 GiB of idle processes for the server's lifetime. Worse, the read-planning daemon is keyed
    by the query (Spark runs each streaming query in a session of its own): every query starts
    one, with its worker (~0.1 GiB), and never uses it again. At a query per block on a 1-s
    chain, a minute's grace kept 30 of them (2.3 GiB of the tree's PSS).

    So a daemon is stopped
    - after ``idle_s`` without work, or
    - after ``superseded_idle_s`` without work if a newer daemon serves the same kind of worker
      (a later query's or session's), and every one of its workers waits for Spark's next request
      (blocked reading its socket: none is waiting on the node).
    A daemon with a worker blocked elsewhere (a batch read's planning waiting on a slow node) is
    never stopped. A daemon stopped while its session is still in use costs that session one
    daemon start: Spark replaces a daemon it finds gone. ``sweep`` is called periodically by
    whoever keeps the server (``chainlake spark-server``).
    """

    def __init__(self, root_pid: int, idle_s: float = settings.SPARK_DAEMON_IDLE_S,
                 superseded_idle_s: float = settings.SPARK_SUPERSEDED_DAEMON_IDLE_S) -> None:
        self.root_pid, self.idle_s, self.superseded_idle_s = root_pid, idle_s, superseded_idle_s
        self._last_work: dict[int, tuple[int, float]] = {}  # daemon pid -> (group CPU, since)
        self.replaced: list[int] = []  # those the last sweep stopped for being replaced

    def sweep(self, now: float | None = None) -> list[int]:
        """Stop the daemons idle for long enough; return their pids."""
        now = time.monotonic() if now is None else now
        daemons = pyspark_daemons(self.root_pid)
        newest: dict[str, Daemon] = {}
        for daemon in daemons:
            if daemon.worker_module not in newest or \
                    daemon.started > newest[daemon.worker_module].started:
                newest[daemon.worker_module] = daemon
        reaped, self.replaced = [], []
        for daemon in daemons:
            last = self._last_work.get(daemon.pid)
            if last is None or last[0] != daemon.cpu:
                self._last_work[daemon.pid] = (daemon.cpu, now)
                continue
            idle_for = now - last[1]
            superseded = newest[daemon.worker_module].pid != daemon.pid
            idle = idle_for >= self.idle_s and daemon.workers_waiting is not False
            replaced = (superseded and idle_for >= self.superseded_idle_s
                        and daemon.workers_waiting is True)
            if idle or replaced:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(daemon.pid, signal.SIGTERM)
                reaped.append(daemon.pid)
                if not idle:
                    self.replaced.append(daemon.pid)
        for pid in (set(self._last_work) - {d.pid for d in daemons}) | set(reaped):
            del self._last_work[pid]
        return reaped


@dataclass(frozen=True)
class Daemon:
    """A PySpark fork daemon and its process group (the workers it forked)."""

    pid: int
    worker_module: str  # e.g. pyspark.worker, pyspark.sql.worker.plan_data_source_read
    started: int  # clock ticks after boot
    cpu: int  # CPU ticks of the whole group
    # Every worker is blocked reading from Spark (an idle pooled worker); None: unknown here.
    workers_waiting: bool | None


# read(2), where an idle pooled worker waits for Spark's next request (/proc/<pid>/syscall)
_READ_SYSCALL = {"x86_64": 0, "aarch64": 63}.get(platform.machine())


def _waiting_for_spark(pid: int) -> bool | None:
    """Whether worker ``pid`` is blocked in read(2) (idle, waiting on its Spark socket) rather
    than working or waiting on something else (the node: a poll); None when it cannot be told."""
    fields = proc_stat(pid)
    if fields is None or fields[0] == "Z":
        return True  # gone, or exited and not yet reaped by its daemon
    if _READ_SYSCALL is None:
        return None
    try:
        with open(f"/proc/{pid}/syscall") as f:
            first = f.read().split(maxsplit=1)
    except OSError:
        return None
    return bool(first) and first[0] == str(_READ_SYSCALL)


def pyspark_daemons(root_pid: int) -> list[Daemon]:
    """The PySpark fork daemons under process ``root_pid`` (each leads its process group)."""
    stats = {pid: fields for pid in tree_pids(root_pid) if (fields := proc_stat(pid)) is not None}
    daemons = []
    for pid, fields in stats.items():
        if fields[2] != str(pid):
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"pyspark.daemon" not in argv or argv.index(b"pyspark.daemon") + 1 >= len(argv):
            continue
        group = [member for member, f in stats.items() if f[2] == fields[2]]
        waiting = [_waiting_for_spark(member) for member in group if member != pid]
        daemons.append(Daemon(
            pid=pid,
            worker_module=argv[argv.index(b"pyspark.daemon") + 1].decode(errors="replace"),
            started=int(fields[19]),
            cpu=sum(int(stats[m][11]) + int(stats[m][12]) for m in group),
            workers_waiting=False if False in waiting else None if None in waiting else True))
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

    def command(self, scratch: ScratchDir | None = None) -> list[str]:
        """The ``spark-submit`` command; ``scratch`` is the JVM's scratch directory."""
        conf = {**SERVER_CONF,
                "spark.driver.extraJavaOptions": java_options(
                    SESSION_CONF["spark.driver.extraJavaOptions"],
                    scratch.java_options() if scratch else ""),
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
        # The JVM inherits its scratch directory's lock: the directory stays while the JVM
        # lives, even if this process dies first, and goes with the next claim after it.
        scratch = claim()
        command = self.command(scratch)
        env = {**os.environ, "SPARK_HOME": str(spark_home())}
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env,
                                            start_new_session=True,
                                            pass_fds=(scratch.lock_fd,) if scratch else ())
        finally:
            if scratch:
                scratch.release()
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
