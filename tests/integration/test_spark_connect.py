"""Runs on a warm Spark: `chainlake spark-server` keeps a Spark Connect server, and `chainlake
ingest` with CHAINLAKE_SPARK_REMOTE connects to it instead of starting a JVM. foreachBatch then
runs in the server's Python worker: the run learns its micro-batches from the lake's commits.
Runs share one session, so the server's PySpark fork daemons are started once, not per run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reference import project, reference_rows

from ingestion.devnet import free_port
from ingestion.schemas import TABLES
from ingestion.sink import BronzeLake
from ingestion.spark_server import IdleDaemonReaper, SparkConnectServer

pytestmark = [pytest.mark.slow, pytest.mark.devnet]

CHAINLAKE = Path(sys.executable).parent / "chainlake"
PLAN = "pyspark.sql.worker.plan_data_source_read"  # the read-planning workers' module


def _daemons(server: SparkConnectServer) -> dict[int, str]:
    """The server's PySpark fork daemons (each leads its process group): pid -> worker module."""
    parents, leaders = {}, {}
    for line in subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,pgid=,args="], capture_output=True,
                               text=True).stdout.splitlines():
        pid, ppid, pgid, args = line.split(None, 3)
        parents[int(pid)] = int(ppid)
        argv = args.split()
        if pid == pgid and "pyspark.daemon" in argv:
            leaders[int(pid)] = argv[-1]
    found = {}
    for pid, module in leaders.items():
        p = pid
        while p > 1 and p != server.process.pid:
            p = parents.get(p, 0)
        if p == server.process.pid:
            found[pid] = module
    return found


def test_ingest_through_a_spark_connect_server(devnet, tmp_path):
    lake = BronzeLake(str(tmp_path / "lake"))
    with SparkConnectServer(port=free_port(), master="local[1,3]",
                            log_path=tmp_path / "server.log") as server:
        env = {**os.environ, "CHAINLAKE_SPARK_REMOTE": server.url,
               "CHAINLAKE_CACHE_DIR": str(tmp_path / "cache")}

        def ingest(end: int) -> str:
            done = subprocess.run(
                [str(CHAINLAKE), "ingest", "--rpc-url", devnet.url, "--lake", lake.root,
                 "--start-block", "0", "--end-block", str(end), "--max-blocks-per-trigger", "8"],
                capture_output=True, text=True, timeout=600, env=env, stdin=subprocess.DEVNULL)
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        outputs, daemons = [], []
        for end in (20, 35):  # the second run resumes where the first stopped
            outputs.append(ingest(end))
            daemons.append(_daemons(server))
        # The second run reused the first one's daemons (data source creation, tasks...); Spark
        # only adds a read-planning daemon per checkpoint (the query's own session).
        assert daemons[0] and daemons[0].items() <= daemons[1].items()
        added = {pid: m for pid, m in daemons[1].items() if pid not in daemons[0]}
        assert list(added.values()) in ([], [PLAN])

        # Spark never uses the first run's read-planning daemon again (it keys it by query): the
        # server's reaper stops it within seconds once a newer one exists, and keeps the rest.
        replaced = {pid for pid, m in daemons[0].items() if m == PLAN} if added else set()
        reaper, reaped = IdleDaemonReaper(server.process.pid), set()
        deadline = time.monotonic() + 60
        while reaped != replaced and time.monotonic() < deadline:
            reaped.update(reaper.sweep())
            time.sleep(0.5)
        assert reaped == replaced
        assert _daemons(server) == {pid: m for pid, m in daemons[1].items() if pid not in reaped}

        # The server closes the shared session (here: a client stops it): the next run gets a
        # new one and works.
        (session_file,) = (tmp_path / "cache").glob("spark-connect-session-*")
        closed = session_file.read_text()
        subprocess.run([sys.executable, "-c", "from ingestion.spark import get_spark; "
                        "get_spark().stop()"], env=env, check=True, timeout=120)
        outputs.append(ingest(40))
        assert session_file.read_text() != closed
    first = re.findall(r"batch \d+: blocks \[(\d+), (\d+)\)", outputs[0])
    assert [(int(a), int(b)) for a, b in first] == [(0, 8), (8, 16), (16, 20)]
    assert re.findall(r"batch \d+: blocks \[(\d+), (\d+)\)", outputs[1])[0] == ("20", "28")
    assert re.findall(r"batch \d+: blocks \[(\d+), (\d+)\)", outputs[2]) == [("35", "40")]
    expected = reference_rows(devnet.url, 0, 40)
    for name in expected:  # the core tables web3 decodes
        table = lake.read(name).sort_by([(k, "ascending") for k in TABLES[name].key])
        assert project(table.to_pylist(), list(expected[name][0])) == expected[name], name


def test_a_following_query_whose_run_died_is_stopped_by_the_next_run(devnet, tmp_path):
    """On a server a query outlives its client: a killed `chainlake ingest --follow` leaves its
    processing-time query running there. The scope's next run stops it (instead of failing on
    its name for as long as it lives) and ingests every block once."""
    lake = BronzeLake(str(tmp_path / "lake"))
    with SparkConnectServer(port=free_port(), master="local[1,3]",
                            log_path=tmp_path / "server.log") as server:
        env = {**os.environ, "CHAINLAKE_SPARK_REMOTE": server.url,
               "CHAINLAKE_CACHE_DIR": str(tmp_path / "cache")}
        start = devnet.live_head() - 5
        command = [str(CHAINLAKE), "ingest", "--rpc-url", devnet.url, "--lake", lake.root,
                   "--start-block", str(start)]
        follower = subprocess.Popen([*command, "--follow", "120"], env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            lines = []
            for line in follower.stdout:  # its first pass, then it follows
                lines.append(line)
                if "following the head" in line:
                    break
            devnet.call("anvil_mine", ["0x1"])  # a new block: the following query starts
            mined = devnet.live_head()
            deadline = time.monotonic() + 120
            while (lake.stored_tip() or -1) < mined:
                assert time.monotonic() < deadline, "".join(lines)
                time.sleep(0.2)
        finally:
            os.killpg(follower.pid, signal.SIGKILL)
            follower.wait()
        devnet.call("anvil_mine", ["0x2"])
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "left running by a run that died" in done.stdout + done.stderr
    blocks = lake.read("blocks").column("block_number").to_pylist()
    assert sorted(blocks) == list(range(start, devnet.live_head() + 1))  # each block once
