"""What chainlake refuses, on real devnets: each case leaves the lake unchanged or exact.

* a node of another chain (another devnet with the same chain id, a node that reports another
  chain id) is refused before anything is written, naming both chains;
* a divergence deeper than the maximum reorg depth is refused; only ``rewrite_history`` (the
  ``chainlake repair --rewrite-history`` path) replaces it;
* a block that does not link to the one before it is never written: at a Spark task's first
  block, at a micro-batch's first block, or against the node's block before a new lake's start;
* a run stops at the safe head captured when it began, however far the chain grows meanwhile;
* an unreadable Spark checkpoint is set aside and the scope resumes from the lake.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fault_proxy import FaultProxy, Rule
from reference import project, reference_rows

from ingestion.devnet import Devnet, free_port
from ingestion.devnet.traffic import dev_account, generate_load
from ingestion.identity import ChainIdentityError
from ingestion.ingest import explain_failure, run_ingest
from ingestion.reorg import DeepReorgError
from ingestion.schemas import TABLES
from ingestion.source import SourceOptions

pytestmark = [pytest.mark.slow, pytest.mark.devnet]

CHAINLAKE = Path(sys.executable).parent / "chainlake"


@pytest.fixture()
def other_chain():
    """A second devnet (same chain id 31337, another genesis), ~40 blocks with transfers."""
    node = Devnet(port=free_port(), hardfork="cancun")
    node.start()
    try:
        generate_load(node.url, blocks=30, txs_per_block=3)
        node.call("anvil_mine", ["0xa"])
        yield node
    finally:
        node.stop()


def options(url: str, start: int, end: int | None, **more) -> SourceOptions:
    return SourceOptions(rpc_url=url, start_block=start, end_block=end,
                         max_blocks_per_trigger=more.pop("per_trigger", 16),
                         blocks_per_partition=more.pop("per_task", 8), **more)


def snapshot(lake) -> dict[str, tuple[int, list]]:
    """Every table's Delta version and rows: what must not change when a run is refused."""
    return {name: (lake.table(name).version(), lake.read(name).to_pylist()) for name in TABLES}


def assert_lake_equals_node(lake, url: str, start: int, end: int) -> None:
    expected = reference_rows(url, start, end)
    for name in expected:  # the core tables web3 decodes
        table = lake.read(name).sort_by([(k, "ascending") for k in TABLES[name].key])
        assert project(table.to_pylist(), list(expected[name][0])) == expected[name], name


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHAINLAKE), *args], capture_output=True, text=True, timeout=600)


# --- another chain -----------------------------------------------------------------------------


def test_a_node_of_another_chain_is_refused_and_the_lake_is_unchanged(spark, devnet, other_chain,
                                                                      lake):
    run_ingest(spark, options(devnet.url, 0, 40), lake)
    before = snapshot(lake)
    identity = lake.identity()
    assert identity.chain_id == 31337 and identity.anchor_block == 0

    with pytest.raises(ChainIdentityError) as refused:
        run_ingest(spark, options(other_chain.url, 20, 30), lake)
    message = str(refused.value)
    other_genesis = other_chain.call("eth_getBlockByNumber", ["0x0", False])["hash"]
    assert identity.anchor_hash in message and other_genesis in message
    assert snapshot(lake) == before

    # The command line: one line naming both chains, exit 2, before Spark starts.
    done = cli("ingest", "--rpc-url", other_chain.url, "--lake", lake.root,
               "--start-block", "20", "--end-block", "30")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and identity.anchor_hash in lines[0] and other_genesis in lines[0]
    assert "Traceback" not in done.stderr
    assert snapshot(lake) == before


def test_a_node_reporting_another_chain_id_is_refused(spark, devnet, lake):
    run_ingest(spark, options(devnet.url, 0, 20), lake)
    before = snapshot(lake)
    with FaultProxy(devnet.url) as proxy:
        proxy.chain_id = 1  # the same blocks, another chain id: nothing is rewritten as chain 1
        with pytest.raises(ChainIdentityError, match="lake has chain id 31337.*node has chain id 1"):
            run_ingest(spark, options(proxy.url, 10, 30), lake)
    assert snapshot(lake) == before


# --- deep divergence ---------------------------------------------------------------------------


def test_a_divergence_deeper_than_the_maximum_reorg_depth_is_refused(spark, other_chain, lake):
    other_chain.call("anvil_mine", ["0x50"])  # deeper than the devnet's maximum reorg depth, 64
    head = other_chain.head()
    run_ingest(spark, options(other_chain.url, 0, None, per_trigger=64), lake)
    before = snapshot(lake)
    # One different transaction in the lowest replaced block changes every hash above it.
    change = {"from": dev_account(5).address, "to": dev_account(6).address, "value": hex(10**15)}
    other_chain.call("anvil_reorg", [70, [[change, 0]]])

    with pytest.raises(DeepReorgError, match="deeper than the maximum reorg depth 64"):
        run_ingest(spark, options(other_chain.url, 0, None), lake)
    assert snapshot(lake) == before
    for command in ("ingest", "repair"):
        args = ["--start-block", "0"] if command == "ingest" else []
        done = cli(command, "--rpc-url", other_chain.url, "--lake", lake.root, *args)
        assert done.returncode == 2, done.stdout + done.stderr
        lines = [line for line in done.stderr.splitlines() if line.startswith("chainlake")]
        assert len(lines) == 1 and "maximum reorg depth 64" in lines[0]
        assert "Traceback" not in done.stderr
    assert snapshot(lake) == before

    # Only an explicit rewrite replaces it, after saying how many stored blocks it replaces.
    done = cli("repair", "--rpc-url", other_chain.url, "--lake", lake.root, "--rewrite-history")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"rewriting history: 70 stored blocks ({head - 69}..{head})" in done.stdout
    assert_lake_equals_node(lake, other_chain.url, 0, head + 1)


def test_unusable_tables_are_named_and_nothing_runs(spark, devnet, lake, tmp_path):
    run_ingest(spark, options(devnet.url, 0, 20, per_trigger=10), lake)
    commit = Path(lake.table_uri("transactions")) / "_delta_log" / f"{2:020d}.json"
    text = commit.read_text()
    commit.write_text(text[: len(text) // 2])
    for command, args in [("validate", []), ("repair", ["--rpc-url", devnet.url]),
                          ("ingest", ["--rpc-url", devnet.url, "--start-block", "0"])]:
        done = cli(command, "--lake", lake.root, *args)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, (command, done.stderr)
        assert f"{lake.table_uri('transactions')}: cannot read the Delta log at version 2" in lines[0]
    commit.write_text(text)

    # A table of another schema: named with its missing and mistyped columns.
    import shutil

    from deltalake import write_deltalake
    logs = lake.read("logs")
    shutil.rmtree(lake.table_uri("logs"))
    write_deltalake(lake.table_uri("logs"), logs.drop_columns(["block_hash"]).set_column(
        logs.schema.get_field_index("log_index") - 1, "log_index",
        logs.column("log_index").cast("string")))
    for command, args in [("validate", []), ("ingest", ["--rpc-url", devnet.url, "--start-block", "0"])]:
        done = cli(command, "--lake", lake.root, *args)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        line = done.stderr.strip()
        assert f"{lake.table_uri('logs')} does not have the bronze logs schema" in line
        assert "missing columns block_hash" in line and "log_index (string, expected long)" in line


# --- links at every boundary -------------------------------------------------------------------


@pytest.mark.parametrize("block, written", [
    (8, 0),  # the first block of the second Spark task of the first micro-batch
    (16, 16),  # the first block of the second micro-batch: checked against the stored block 15
])
def test_a_block_that_does_not_link_is_never_written(spark, devnet, lake, block, written):
    with FaultProxy(devnet.url) as proxy:
        proxy.rules.append(Rule("eth_getBlockByNumber", "unlink", block=block, times=-1))
        with pytest.raises(Exception) as failed:  # noqa: B017 - Spark wraps the error
            run_ingest(spark, options(proxy.url, 0, 40), lake, scope="links")
    assert f"block {block} does not link to block {block - 1}" in explain_failure(failed.value)
    assert lake.stored_bounds() == ((0, written - 1) if written else None)
    if written:
        assert_lake_equals_node(lake, devnet.url, 0, written)
    # With an honest node, the same scope goes on and the lake is exact.
    result = run_ingest(spark, options(devnet.url, 0, 40), lake, scope="links")
    assert result.batches[0].start == written
    assert_lake_equals_node(lake, devnet.url, 0, 40)


def test_a_new_lake_links_its_first_block_to_the_nodes_block_before_it(spark, devnet, lake):
    with FaultProxy(devnet.url) as proxy:
        proxy.rules.append(Rule("eth_getBlockByNumber", "unlink", block=20, times=-1))
        with pytest.raises(Exception) as failed:  # noqa: B017 - Spark wraps the error
            run_ingest(spark, options(proxy.url, 20, 30), lake)
    assert "block 20 does not link to block 19" in explain_failure(failed.value)
    assert "the node's block 19" in explain_failure(failed.value)
    assert lake.stored_bounds() is None


def test_a_stale_block_served_once_is_read_again_and_the_lake_is_exact(spark, devnet, lake):
    with FaultProxy(devnet.url) as proxy:
        proxy.rules.append(Rule("eth_getBlockByNumber", "unlink", block=8, times=1))
        run_ingest(spark, options(proxy.url, 0, 24), lake)
        assert proxy.rules[0].times == 0  # the stale block was served
    assert_lake_equals_node(lake, devnet.url, 0, 24)


# --- the run's end -----------------------------------------------------------------------------


def test_a_run_stops_at_the_safe_head_it_captured_when_it_began(spark, other_chain, lake):
    head = other_chain.head()
    # The chain grows by 5 blocks after every micro-batch.
    result = run_ingest(spark, options(other_chain.url, 0, 10**6, per_trigger=10), lake,
                        on_batch=lambda _: other_chain.call("anvil_mine", ["0x5"]))
    assert result.target_end == head + 1
    assert lake.stored_bounds() == (0, head)
    assert other_chain.head() > head + 5


# --- checkpoints -------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["offsets", "metadata"])
def test_an_unreadable_checkpoint_is_set_aside_and_the_run_resumes_from_the_lake(
        spark, devnet, lake, damage, caplog):
    run_ingest(spark, options(devnet.url, 0, 30, per_trigger=10), lake, scope="cp")
    checkpoint = Path(lake.checkpoint_uri("cp"))
    if damage == "offsets":
        last = max(int(p.name) for p in (checkpoint / "offsets").iterdir() if p.name.isdigit())
        (checkpoint / "offsets" / str(last)).write_bytes(b"\x00garbage{")
    else:
        (checkpoint / "metadata").write_text("")
    result = run_ingest(spark, options(devnet.url, 0, 45, per_trigger=10), lake, scope="cp")
    kept = list(checkpoint.parent.glob("cp.unreadable-*"))
    assert len(kept) == 1
    assert any(str(kept[0]) in r.getMessage() for r in caplog.records)
    assert result.batches[0].start == 30  # the first block the lake lacked
    assert_lake_equals_node(lake, devnet.url, 0, 45)
