"""The head start (``ingestion.head_start``): the driver fetches the first micro-batch's replies
while Spark starts, and the tasks take them from the spool (``ingestion.rpc.spool``) instead of
asking the node again: the same rows, each block served by the node once, a reply used once.

The node is benchmarks/replay_node.py's mainnet-shaped chain (real mainnet blocks with their
receipts, renumbered and linked), served in this process so that its counters can be read.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pytest
from mainnet_fixtures import FIXTURES

from ingestion import head_start, settings
from ingestion.head_start import SPOOL_PREFIX, start_head_start
from ingestion.rpc.spool import ReplySpool
from ingestion.scratch import process_scratch
from ingestion.source import (
    BlockRange,
    SourceOptions,
    read_range,
    split_range,
    task_started_marker,
)

REPO = Path(__file__).resolve().parents[2]
BLOCKS = 40

pytestmark = pytest.mark.skipif(not (FIXTURES / "test_stream").is_dir(),
                                reason=f"fixtures not found at {FIXTURES}")


def _replay_module():
    spec = importlib.util.spec_from_file_location("replay_node",
                                                  REPO / "benchmarks" / "replay_node.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["replay_node"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@dataclass
class Node:
    url: str
    chain: object  # replay_node.ReplayChain: its ``stats`` count the calls served

    def served(self) -> tuple[int, int]:
        """Blocks and block receipts served so far."""
        return self.chain.stats["blocks"], self.chain.stats["block_receipts"]


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    replay = _replay_module()
    chain = replay.ReplayChain(replay.load_templates(FIXTURES), BLOCKS)
    server = replay._Server(("127.0.0.1", 0), chain)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield Node(f"http://127.0.0.1:{server.server_address[1]}", chain)
    finally:
        server.shutdown()
        server.server_close()


def options(url: str, **extra) -> SourceOptions:
    return SourceOptions(rpc_url=url, start_block=0, end_block=BLOCKS, dataset="transactions",
                         confirmations=0, blocks_per_partition=20, rpc_blocks_per_request=5,
                         max_blocks_per_trigger=BLOCKS, **extra)


def read(opts: SourceOptions, parts: list[BlockRange]) -> pa.Table:
    return pa.Table.from_batches([b for part in parts for b in read_range(opts, part)])


def finished(started: head_start.HeadStart) -> head_start.HeadStart:
    started._thread.join(30)
    assert not started._thread.is_alive()
    return started


def test_tasks_take_what_the_head_start_fetched_and_the_node_serves_each_block_once(node):
    opts = options(node.url)
    parts = split_range(0, BLOCKS, opts.blocks_per_partition, 1)
    expected = read(opts, parts)  # without a head start
    before = node.served()
    started = finished(start_head_start(opts, chain_id=1))
    try:
        assert started.blocks_fetched == BLOCKS and started.bytes_fetched > 0
        fetched = node.served()
        assert (fetched[0] - before[0], fetched[1] - before[1]) == (BLOCKS, BLOCKS)
        got = read(started.query_options(opts), parts)
        assert node.served() == fetched, "a task asked the node for a block fetched ahead"
        assert got.equals(expected)
        left = [p.name for p in started.spool.directory.iterdir()
                if not p.name.startswith("started-")]
        assert left == [], f"replies not taken: {left}"
    finally:
        started.stop()
    assert not started.spool.directory.exists()


def test_a_started_task_is_left_to_fetch_for_itself(node, tmp_path):
    opts = options(node.url)
    parts = split_range(0, BLOCKS, opts.blocks_per_partition, 1)
    spool = ReplySpool(tmp_path)
    spool.mark(task_started_marker(parts[0]))  # before the head start fetched anything for it
    started = head_start.HeadStart(opts, parts, 10**9, spool)
    started.start()
    try:
        assert finished(started).blocks_fetched == parts[1].end - parts[1].start
    finally:
        started.stop()


def test_a_reply_is_taken_once_and_a_bad_one_is_asked_of_the_node_again(node, tmp_path):
    opts = options(node.url, reply_spool=str(tmp_path))
    part = BlockRange(0, 5, 1)
    spool = ReplySpool(tmp_path)
    # A truncated reply where the task's first request (blocks 0..4) will look.
    from ingestion.rpc.fetching import RpcClient
    from ingestion.rpc.transport import _request_body

    key = spool.claim(_request_body(RpcClient.block_calls(range(0, 5), True)))
    spool.put(key, b'[{"jsonrpc":"2.0","id":0,"result":{"number":')
    expected = read(options(node.url), [part])
    before = node.served()
    assert read(opts, [part]).equals(expected)
    assert node.served()[0] - before[0] == 5, "the bad reply was not replaced from the node"
    assert [p.name for p in tmp_path.iterdir()] == [task_started_marker(part)]


def test_a_task_waits_for_a_reply_being_fetched_and_not_for_a_dropped_claim(tmp_path):
    spool = ReplySpool(tmp_path, claim_wait_s=10)
    assert spool.take(b"absent") is None

    key = spool.claim(b"request")
    assert key is not None and spool.claim(b"request") is None  # one fetcher per request
    threading.Timer(0.2, spool.put, (key, b"reply")).start()
    began = time.monotonic()
    assert spool.take(b"request") == b"reply"
    assert 0.1 < time.monotonic() - began < 5
    assert spool.take(b"request") is None  # taken once

    key = spool.claim(b"failing")
    threading.Timer(0.2, spool.release, (key,)).start()
    began = time.monotonic()
    assert spool.take(b"failing") is None
    assert time.monotonic() - began < 5
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_no_head_start_when_off_or_nothing_to_read(node, monkeypatch):
    opts = options(node.url)
    assert start_head_start(opts, chain_id=1, max_bytes=0) is None
    assert start_head_start(replace(opts, end_block=None), chain_id=1) is None
    monkeypatch.setenv(settings.ENV_HEAD_START_MB, "0")
    assert start_head_start(opts, chain_id=1) is None
    for bad in ("-1", "lots", "inf", "nan"):
        monkeypatch.setenv(settings.ENV_HEAD_START_MB, bad)
        with pytest.raises(ValueError, match=settings.ENV_HEAD_START_MB):
            settings.head_start_max_bytes()


def test_the_byte_budget_bounds_the_spool(node):
    opts = options(node.url)
    started = finished(start_head_start(opts, chain_id=1, max_bytes=1))
    try:
        assert started.blocks_fetched == opts.rpc_blocks_per_request  # one round trip, then stop
    finally:
        started.stop()


# A run's spool, in its process's scratch directory; the process then lives ``argv[1]`` seconds.
SPOOL_OF_A_RUN = f"""
import sys, tempfile, time
from ingestion.scratch import process_scratch
print(tempfile.mkdtemp(prefix={SPOOL_PREFIX!r}, dir=process_scratch().path), flush=True)
time.sleep(float(sys.argv[1]))
"""


def test_spools_of_dead_runs_are_removed_and_live_ones_kept(node, tmp_path, monkeypatch):
    """A spool lives in its run's scratch directory (``ingestion.scratch``): the next head start
    removes a dead run's, never a live one's."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setattr("ingestion.scratch._process_scratch", None)  # this test's, in tmp_path
    env = {**os.environ, "TMPDIR": str(tmp_path)}

    def spool_of_a_run(lives_s: float) -> tuple[subprocess.Popen, Path]:
        proc = subprocess.Popen([sys.executable, "-c", SPOOL_OF_A_RUN, str(lives_s)], env=env,
                                stdout=subprocess.PIPE, text=True)
        spool = Path(proc.stdout.readline().strip())
        (spool / "reply").write_bytes(b"{}")
        return proc, spool

    (dead, stale), (alive, live) = spool_of_a_run(0), spool_of_a_run(120)
    try:
        assert dead.wait(timeout=30) == 0
        started = start_head_start(options(node.url), chain_id=1, max_bytes=1)
        assert started.spool.directory.parent == process_scratch().path
        started.stop()
        assert not stale.exists() and live.exists()
    finally:
        alive.kill()
        alive.wait(timeout=10)
        if process_scratch() is not None:
            process_scratch().release()
