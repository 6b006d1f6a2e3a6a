"""Reorgs after ingestion: the next run finds the common ancestor and the tables end up equal to
the node's canonical chain, every hash and every transaction.

These tests reorganize the chain, so they use their own anvil (the shared session devnet must
keep its history for the other tests); it still runs with --max-persisted-states 0.
"""

import pytest
from reference import project, reference_rows

from ingestion.devnet import Devnet, free_port
from ingestion.devnet.traffic import dev_account, generate_load
from ingestion.ingest import run_ingest
from ingestion.schemas import TABLES
from ingestion.source import SourceOptions

pytestmark = pytest.mark.slow


@pytest.fixture()
def chain():
    node = Devnet(port=free_port(), hardfork="cancun")
    node.start()
    try:
        generate_load(node.url, blocks=30, txs_per_block=4)
        yield node
    finally:
        node.stop()


def ingest(spark, node, lake):
    opts = SourceOptions(rpc_url=node.url, start_block=0, max_blocks_per_trigger=12,
                         blocks_per_partition=8)
    return run_ingest(spark, opts, lake, scope="tip")


def assert_lake_equals_node(lake, node):
    expected = reference_rows(node.url, 0, node.head() + 1)
    for name in expected:  # the core tables web3 decodes
        table = lake.read(name).sort_by([(k, "ascending") for k in TABLES[name].key])
        rows = project(table.to_pylist(), list(expected[name][0]))
        assert rows == expected[name], f"{name} differs from the node's canonical chain"


def replacement_transactions(depth: int) -> list:
    """One distinct transfer per replaced block, so every replaced block gets a new hash."""
    sender = dev_account(5).address
    return [[{"from": sender, "to": dev_account(6).address, "value": hex(10**15 + offset)}, offset]
            for offset in range(depth)]


@pytest.mark.parametrize("depth", [1, 3, 10])
def test_reorg_after_ingestion_is_repaired_in_the_next_run(spark, chain, lake, depth):
    ingest(spark, chain, lake)
    before = lake.block_hashes(0, chain.head() + 1)
    head = chain.head()
    chain.call("anvil_reorg", [depth, replacement_transactions(depth)])
    assert chain.head() == head
    chain.call("anvil_mine", ["0x2"])  # the new chain goes on growing

    result = ingest(spark, chain, lake)

    assert result.reorg is not None
    assert result.reorg.depth == depth
    assert result.reorg.ancestor == head - depth
    assert result.reorg.replaced == (head - depth + 1, head + 1)
    after = lake.block_hashes(0, chain.head() + 1)
    assert sorted(n for n in before if before[n] != after[n]) == list(range(head - depth + 1, head + 1))
    assert_lake_equals_node(lake, chain)
    assert ingest(spark, chain, lake).reorg is None  # stable from then on


def mine_transfers(node, count: int, salt: int) -> None:
    """``count`` new blocks (automine), each with a transfer no earlier block had."""
    for i in range(count):
        node.call("eth_sendTransaction", [{"from": dev_account(7).address,
                                           "to": dev_account(8).address,
                                           "value": hex(10**16 + 1000 * salt + i)}])


def test_a_lagging_node_removes_nothing(spark, chain, lake):
    ingest(spark, chain, lake)
    head = chain.head()
    chain.call("anvil_rollback", [5])  # looks exactly like a node 5 blocks behind
    result = ingest(spark, chain, lake)
    assert result.reorg is None and result.blocks == 0
    assert lake.stored_tip() == head


def test_a_shorter_new_chain_removes_stale_blocks_and_rewinds_the_checkpoint(spark, chain, lake):
    ingest(spark, chain, lake)
    head = chain.head()
    chain.call("anvil_rollback", [5])
    mine_transfers(chain, 2, salt=1)  # the new chain: 2 different blocks, 3 short of the old tip
    assert chain.head() == head - 3

    result = ingest(spark, chain, lake)
    assert result.reorg is not None
    assert result.reorg.ancestor == head - 5
    assert result.reorg.replaced == (head - 4, head - 2)
    assert result.reorg.removed == (head - 2, head + 1)
    assert result.rewound_to == head - 2  # the checkpoint was ahead of the lake
    assert lake.stored_tip() == head - 3
    assert_lake_equals_node(lake, chain)

    # New blocks at the heights that were removed are ingested, not skipped.
    mine_transfers(chain, 7, salt=2)
    later = ingest(spark, chain, lake)
    assert later.blocks == 7
    assert_lake_equals_node(lake, chain)


def test_a_dagster_catch_up_repairs_a_reorg_and_reports_its_depth(spark, chain, tmp_path,
                                                                   monkeypatch):
    import dagster as dg

    from assets.bronze import bronze_ingest
    from assets.partitions import BLOCK_RANGES
    from assets.resources import LakeResource, RpcResource, SparkResource
    from ingestion.ranges import span_of
    from ingestion.sink import BronzeLake

    monkeypatch.setenv("CHAINLAKE_PARTITION_SIZE", "1000")
    key = span_of(0, 1000).key  # the open tip partition
    resources = {"rpc": RpcResource(url=chain.url), "spark": SparkResource(),
                 "lake": LakeResource(uri=str(tmp_path / "lake"))}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BLOCK_RANGES.name, [key])
        assert dg.materialize([bronze_ingest], partition_key=key, instance=instance,
                              resources=resources).success
        chain.call("anvil_reorg", [10, replacement_transactions(10)])
        again = dg.materialize([bronze_ingest], partition_key=key, instance=instance,
                               resources=resources)
    assert again.success
    meta = {m.asset_key.path[-1]: m.metadata
            for m in again.asset_materializations_for_node("bronze_ingest")}
    head = chain.head()
    assert meta["blocks"]["reorg_depth"].value == 10
    assert meta["blocks"]["reorg_replaced_blocks"].value == f"[{head - 9}, {head + 1})"
    assert_lake_equals_node(BronzeLake(str(tmp_path / "lake")), chain)
