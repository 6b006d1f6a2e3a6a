"""benchmarks/replay_node.py, the mainnet-shaped benchmark node, seen through ingestion.rpc.

The node runs as a subprocess (its own process group, stopped by pid); the checks are the ones
chainlake relies on: linked parent hashes, receipts and logs naming their block's hash, one
receipt per transaction, and replies the transform turns into rows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from mainnet_fixtures import FIXTURES

from ingestion.rpc import MissingBlockError, RpcClient
from ingestion.transform import table_batches

REPO = Path(__file__).resolve().parents[2]
BLOCKS = 12

pytestmark = pytest.mark.skipif(not (FIXTURES / "test_stream").is_dir(),
                                reason=f"fixtures not found at {FIXTURES}")


@pytest.fixture(scope="module")
def node_url() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "replay_node.py"), "--port", "0", "--blocks",
         str(BLOCKS), "--fixtures", str(FIXTURES)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on http://"), (line, proc.stderr.read())
        yield line.split()[2]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_blocks_link_and_receipts_match(node_url: str) -> None:
    with RpcClient(node_url, max_batch_size=5) as client:
        assert client.check_chain_id(1) == 1
        assert client.block_number() == BLOCKS - 1
        raw = client.fetch_raw_blocks(0, BLOCKS)
        assert client.uses_block_receipts is True
    assert [int(r.block["number"], 16) for r in raw] == list(range(BLOCKS))
    assert raw[0].block["parentHash"] == "0x" + "00" * 32
    hashes = [r.block["hash"] for r in raw]
    assert len(set(hashes)) == BLOCKS
    for previous, current in zip(raw, raw[1:], strict=False):
        assert current.block["parentHash"] == previous.block["hash"]
        assert int(current.block["timestamp"], 16) > int(previous.block["timestamp"], 16)
    tx_hashes = set()
    for r in raw:
        txs = r.block["transactions"]
        assert len(txs) in (116, 182)  # the two mainnet templates, in turn
        assert len(r.receipts) == len(txs)
        for tx, receipt in zip(txs, r.receipts, strict=True):
            assert tx["blockHash"] == receipt["blockHash"] == r.block["hash"]
            assert tx["blockNumber"] == receipt["blockNumber"] == r.block["number"]
            assert tx["hash"] == receipt["transactionHash"]
            for log in receipt["logs"]:
                assert log["blockHash"] == r.block["hash"]
                assert log["transactionHash"] == tx["hash"]
            tx_hashes.add(tx["hash"])
    assert len(tx_hashes) == sum(len(r.block["transactions"]) for r in raw)

    rows = table_batches(1, raw)
    assert rows["blocks"].num_rows == BLOCKS
    assert rows["transactions"].num_rows == len(tx_hashes)
    assert rows["logs"].num_rows == 271 * (BLOCKS // 2) + 410 * (BLOCKS // 2)


def test_lookups_by_hash_and_beyond_the_head(node_url: str) -> None:
    with RpcClient(node_url, max_retries=0) as client:
        block = client.get_blocks([3], full_transactions=False)[0]
        assert all(isinstance(h, str) for h in block["transactions"])
        full = client.get_blocks([3])[0]
        assert block["hash"] == full["hash"]
        receipt = client.call("eth_getTransactionReceipt", [block["transactions"][5]])
        assert receipt == client.get_block_receipts([full])[0][5]
        assert client.call("eth_getBlockByHash", [block["hash"], False]) == block
        logs = client.call("eth_getLogs", [{"fromBlock": "0x3", "toBlock": "0x4"}])
        assert len(logs) == 271 + 410
        assert {log["blockNumber"] for log in logs} == {"0x3", "0x4"}
        with pytest.raises(MissingBlockError):
            client.get_blocks([BLOCKS])
        assert client.call("eth_getBlockByNumber", ["latest", False])["number"] == hex(BLOCKS - 1)


def test_replies_are_prerendered_fast() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import replay_node
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    chain = replay_node.ReplayChain(replay_node.load_templates(FIXTURES), 1_000_000)
    block = orjson.loads(chain.block(999_999, True))
    assert block["hash"] == replay_node.block_hash(999_999)
    assert block["parentHash"] == replay_node.block_hash(999_998)
    assert replay_node.number_of_hash(block["hash"]) == 999_999
    assert b"@" not in chain.block(123_456, True) + chain.block_receipts(123_456)


def test_a_task_pauses_the_cyclic_collector_only_while_it_reads(node_url: str) -> None:
    """Parsed replies are acyclic, so a task reads with the cyclic collector paused (it only
    re-scanned them); it runs again once the task is done or has failed."""
    import gc

    from ingestion.source import BlockRange, SourceOptions, read_range

    opts = SourceOptions.parse({"rpc_url": node_url, "dataset": "transactions"})
    assert gc.isenabled()
    states = [gc.isenabled() for _ in read_range(opts, BlockRange(0, 6, 1))]
    assert states and not any(states)
    assert gc.isenabled()
    with pytest.raises(Exception, match="block 12"):  # beyond the node's head: fails, named
        list(read_range(opts, BlockRange(10, 14, 1)))
    assert gc.isenabled()


def test_a_reply_body_is_not_left_to_the_cyclic_collector(node_url: str) -> None:
    """httpx's Request and Response form a reference cycle; a body kept on the Response would
    live until a collection, and tasks pause the collector: the transport keeps bodies itself."""
    import gc

    client = RpcClient(node_url)
    client.fetch_raw_blocks(0, 2)  # connection and imports warmed up
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        raw = client.fetch_raw_blocks(0, 6)
        assert len(raw) == 6
        del raw
        gc.collect()
        held = [len(value) for obj in gc.garbage
                for value in [*gc.get_referents(obj), *getattr(obj, "__dict__", {}).values()]
                if isinstance(value, bytes | bytearray) and len(value) > 100_000]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        client.close()
    assert held == []
