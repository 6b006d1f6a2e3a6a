"""A warm Spark Connect server serves every run of a machine from one session, and stops the
PySpark fork daemons nobody uses (``spark.shared_session_id``, ``spark_server.IdleDaemonReaper``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ingestion.processes import proc_stat
from ingestion.spark import shared_session_id
from ingestion.spark_server import IdleDaemonReaper


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CHAINLAKE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_runs_on_one_server_share_a_session_and_other_servers_get_their_own(cache):
    first = shared_session_id("sc://127.0.0.1:15002")
    assert uuid.UUID(first).version == 4
    assert shared_session_id("sc://127.0.0.1:15002") == first  # the next run, same session
    other = shared_session_id("sc://127.0.0.1:15003")
    assert other != first
    renewed = shared_session_id("sc://127.0.0.1:15002", renew=True)  # the server closed it
    assert renewed != first and shared_session_id("sc://127.0.0.1:15002") == renewed
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no partial files left


def test_a_damaged_or_unwritable_session_file_still_gives_a_session(cache, monkeypatch):
    shared_session_id("sc://127.0.0.1:15002")
    (kept,) = list(cache.iterdir())
    kept.write_text("not a uuid")
    fresh = shared_session_id("sc://127.0.0.1:15002")
    assert uuid.UUID(fresh).version == 4 and kept.read_text() == fresh
    blocked = cache / "a file, not a directory"
    blocked.write_text("")
    monkeypatch.setenv("CHAINLAKE_CACHE_DIR", str(blocked / "cache"))  # cannot be created
    assert uuid.UUID(shared_session_id("sc://127.0.0.1:15002")).version == 4


# A stand-in server: a parent process whose children lead their own process groups, with
# "pyspark.daemon" in their command line as Spark's daemons have; one forks a "worker".
SERVER = r"""
import os, subprocess, sys, time
def daemon(code):
    return subprocess.Popen([sys.executable, "-c", code, "-m", "pyspark.daemon", "pyspark.worker"],
                            start_new_session=True)
idle = daemon("import os, time\nif os.fork() == 0:\n    time.sleep(120)\ntime.sleep(120)")
busy = daemon("import time\nwhile True: sum(range(100000)); time.sleep(0.01)")
other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                         start_new_session=True)
print(idle.pid, busy.pid, other.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _eventually(probe, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := probe()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def _worked(pid: int) -> None:
    """Wait until process ``pid`` has used more CPU (a tick) than when called."""
    def ticks() -> int:
        fields = proc_stat(pid)
        return int(fields[11]) + int(fields[12]) if fields else -1

    before = ticks()
    assert _eventually(lambda: ticks() > before), f"process {pid} did no work"


def test_daemons_idle_for_long_enough_are_stopped_with_their_workers_busy_ones_are_kept():
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    groups = [server.pid]
    try:
        idle, busy, other = (int(p) for p in server.stdout.readline().split())
        groups += [idle, busy, other]
        # On a loaded machine the daemons start slowly: wait for the fork, not a fixed time.
        workers = _eventually(lambda: [int(p) for p in subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(idle)], capture_output=True, text=True
        ).stdout.split()])
        assert len(workers) == 1
        reaper = IdleDaemonReaper(server.pid, idle_s=60)
        now = time.monotonic()
        assert reaper.sweep(now) == []  # first sight: nothing is known to be idle yet
        _worked(busy)
        assert reaper.sweep(now + 30) == []  # not idle for long enough
        _worked(busy)
        assert reaper.sweep(now + 61) == [idle]
        _eventually(lambda: not _alive(idle) and not _alive(workers[0]))
        assert not _alive(idle) and not _alive(workers[0])  # the daemon's whole group
        assert _alive(busy) and _alive(other)  # working, or not a PySpark daemon
        _worked(busy)
        assert reaper.sweep(now + 200) == []  # the busy one keeps working
    finally:
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        server.wait()
