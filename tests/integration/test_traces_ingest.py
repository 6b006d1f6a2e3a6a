"""Choosing datasets: traces come with the other tables when the node can trace, alone with
`--datasets traces`, and a node without a tracing API is refused when traces are asked for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fault_proxy import FaultProxy, Rule

from ingestion.continuity import validate_range
from ingestion.ingest import run_ingest
from ingestion.sink import BronzeLake
from ingestion.source import SourceOptions

pytestmark = pytest.mark.devnet

CHAINLAKE = Path(sys.executable).parent / "chainlake"
NO_TRACING = "the method {} does not exist/is not available"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHAINLAKE), *args], capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)


def without_tracing(proxy: FaultProxy) -> None:
    for method in ("trace_block", "debug_traceBlockByNumber"):
        proxy.rules.append(Rule(method, "error", times=-1, message=NO_TRACING.format(method)))


def test_traces_join_by_default_and_alone_they_read_only_headers_and_traces(spark, devnet,
                                                                            tmp_path):
    lake = BronzeLake(str(tmp_path / "lake"))
    opts = SourceOptions(rpc_url=devnet.url, start_block=0, end_block=20)
    result = run_ingest(spark, opts, lake)
    assert result.tables == ("blocks", "transactions", "logs", "traces")
    assert lake.read("traces").num_rows > 0
    assert validate_range(lake, 0, 20).success

    with FaultProxy(devnet.url) as proxy:
        traces_only = SourceOptions(rpc_url=proxy.url, start_block=20, end_block=devnet.head + 1,
                                    datasets="traces")
        result = run_ingest(spark, traces_only, lake)
        assert result.tables == ("blocks", "traces")
        methods = {m for m in ("eth_getBlockReceipts", "eth_getTransactionReceipt",
                               "eth_getBlockByNumber", "trace_block") if proxy.count(m)}
    assert methods == {"eth_getBlockByNumber", "trace_block"}
    traced = set(lake.read("traces").column("block_number").to_pylist())
    assert max(traced) > 20


def test_a_node_without_tracing_is_refused_for_traces_and_skipped_by_default(spark, devnet,
                                                                             tmp_path):
    lake_root = str(tmp_path / "lake")
    with FaultProxy(devnet.url) as proxy:
        without_tracing(proxy)
        done = cli("ingest", "--rpc-url", proxy.url, "--lake", lake_root, "--start-block", "0",
                   "--end-block", "10", "--datasets", "blocks,traces")
        assert done.returncode == 2, done.stdout + done.stderr
        line = [x for x in done.stderr.splitlines() if x.startswith("chainlake")][0]
        assert "trace_block" in line and "debug_traceBlockByNumber" in line, line
        assert "Traceback" not in done.stderr

        result = run_ingest(spark, SourceOptions(rpc_url=proxy.url, start_block=0, end_block=10),
                            BronzeLake(lake_root))
    assert result.tables == ("blocks", "transactions", "logs")
    assert BronzeLake(lake_root).read("blocks").num_rows == 10


def test_an_unknown_dataset_is_named(tmp_path):
    done = cli("ingest", "--lake", str(tmp_path / "lake"), "--start-block", "0",
               "--datasets", "blocks,receipts")
    assert done.returncode == 2
    assert "datasets must be a comma-separated list of blocks, transactions, logs, traces; " \
           "got 'blocks,receipts'" in done.stderr
