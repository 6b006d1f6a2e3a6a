"""A warm Spark Connect server serves every run of a machine from one session, and stops the
PySpark fork daemons nobody uses, or that a newer one replaced (``spark.shared_session_id``,
``spark_server.IdleDaemonReaper``).
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
from ingestion.spark_server import IdleDaemonReaper, _waiting_for_spark, pyspark_daemons


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
# "pyspark.daemon <worker module>" in their command line as Spark's daemons have. Each daemon
# forks a "worker" that waits for Spark as an idle pooled worker does (blocked reading its
# socket; here a pipe), or as a worker waiting on the node does (here: asleep), or works.
SERVER = r"""
import os, subprocess, sys, time
WAITING = "r, w = os.pipe()\nif os.fork() == 0:\n    os.read(r, 1)"
ON_NODE = "if os.fork() == 0:\n    time.sleep(120)"
BUSY = "while True: sum(range(100000)); time.sleep(0.01)"
def daemon(module, worker):
    code = f"import os, time\n{worker}\ntime.sleep(120)"
    started = subprocess.Popen([sys.executable, "-c", code, "-m", "pyspark.daemon", module],
                               start_new_session=True)
    time.sleep(0.05)  # distinct start times: the newest daemon of a kind is the current one
    return started.pid
PLAN = "pyspark.sql.worker.plan_data_source_read"
pids = [daemon(PLAN, WAITING), daemon(PLAN, ON_NODE), daemon(PLAN, WAITING),
        daemon("pyspark.worker", WAITING), daemon("pyspark.sql.worker.create_data_source", BUSY),
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                         start_new_session=True).pid]
print(*pids, flush=True)
time.sleep(120)
"""


def _children(pid: int) -> list[int]:
    return [int(p) for p in subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)],
                                           capture_output=True, text=True).stdout.split()]


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


def test_daemons_are_stopped_when_idle_long_enough_or_replaced_never_while_a_worker_waits_on_the_node():
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    groups = [server.pid]
    try:
        old_plan, plan_on_node, new_plan, tasks, busy, other = (
            int(p) for p in server.stdout.readline().split())
        groups += [old_plan, plan_on_node, new_plan, tasks, busy, other]
        # On a loaded machine the daemons start slowly: wait for each fork and for each worker to
        # block where it waits, not a fixed time.
        daemons = (old_plan, plan_on_node, new_plan, tasks)
        workers = {d: _eventually(lambda d=d: _children(d)) for d in daemons}
        assert all(len(w) == 1 for w in workers.values())
        for d in (old_plan, new_plan, tasks):
            assert _eventually(lambda d=d: _waiting_for_spark(workers[d][0]))
        assert _waiting_for_spark(workers[plan_on_node][0]) is False
        assert {d.worker_module for d in pyspark_daemons(server.pid)} == {
            "pyspark.sql.worker.plan_data_source_read", "pyspark.worker",
            "pyspark.sql.worker.create_data_source"}

        reaper = IdleDaemonReaper(server.pid, idle_s=60, superseded_idle_s=4)
        now = time.monotonic()
        assert reaper.sweep(now) == []  # first sight: nothing is known to be idle yet
        _worked(busy)
        # A newer read-planning daemon replaced the oldest: it goes once idle for 4 s. The one
        # whose worker waits on the node stays; so do the newest and the only task daemon.
        assert reaper.sweep(now + 5) == [old_plan] and reaper.replaced == [old_plan]
        _eventually(lambda: not _alive(old_plan) and not _alive(workers[old_plan][0]))
        assert not _alive(old_plan) and not _alive(workers[old_plan][0])  # the whole group
        _worked(busy)
        assert reaper.sweep(now + 30) == []  # not idle for long enough
        _worked(busy)
        assert sorted(reaper.sweep(now + 61)) == sorted([new_plan, tasks])
        assert reaper.replaced == []  # idle for a minute (the newest, and the only ones of a kind)
        _eventually(lambda: not any(map(_alive, [new_plan, tasks, *workers[tasks]])))
        assert not _alive(new_plan) and not _alive(tasks) and not _alive(workers[tasks][0])
        # Working, with a worker waiting on the node, or not a PySpark daemon: kept.
        assert _alive(busy) and _alive(plan_on_node) and _alive(other)
        _worked(busy)
        assert reaper.sweep(now + 200) == []
    finally:
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        server.wait()
