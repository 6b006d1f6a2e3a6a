"""Runs on a warm Spark: `chainlake spark-server` keeps a Spark Connect server, and `chainlake
ingest` with CHAINLAKE_SPARK_REMOTE connects to it instead of starting a JVM. foreachBatch then
runs in the server's Python worker: the run learns its micro-batches from the lake's commits.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from reference import project, reference_rows

from ingestion.devnet import free_port
from ingestion.schemas import TABLES
from ingestion.sink import BronzeLake
from ingestion.spark_server import SparkConnectServer

pytestmark = [pytest.mark.slow, pytest.mark.devnet]

CHAINLAKE = Path(sys.executable).parent / "chainlake"


def test_ingest_through_a_spark_connect_server(devnet, tmp_path):
    lake = BronzeLake(str(tmp_path / "lake"))
    with SparkConnectServer(port=free_port(), master="local[1,3]",
                            log_path=tmp_path / "server.log") as server:
        env = {**os.environ, "CHAINLAKE_SPARK_REMOTE": server.url}
        outputs = []
        for end in (20, 35):  # the second run resumes where the first stopped
            done = subprocess.run(
                [str(CHAINLAKE), "ingest", "--rpc-url", devnet.url, "--lake", lake.root,
                 "--start-block", "0", "--end-block", str(end), "--max-blocks-per-trigger", "8"],
                capture_output=True, text=True, timeout=600, env=env, stdin=subprocess.DEVNULL)
            assert done.returncode == 0, done.stdout + done.stderr
            outputs.append(done.stdout)
    first = re.findall(r"batch \d+: blocks \[(\d+), (\d+)\)", outputs[0])
    assert [(int(a), int(b)) for a, b in first] == [(0, 8), (8, 16), (16, 20)]
    assert re.findall(r"batch \d+: blocks \[(\d+), (\d+)\)", outputs[1])[0] == ("20", "28")
    expected = reference_rows(devnet.url, 0, 35)
    for name in expected:  # the core tables web3 decodes
        table = lake.read(name).sort_by([(k, "ascending") for k in TABLES[name].key])
        assert project(table.to_pylist(), list(expected[name][0])) == expected[name], name
