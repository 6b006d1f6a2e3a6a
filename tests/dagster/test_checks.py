"""The blocking continuity checks: run with the bronze materialization, fail naming the block.

One real materialization of a devnet partition (Spark) with its checks; then the table is
corrupted and only the checks run again, for the same partition.
"""

import dagster as dg
import pytest
from deltalake import DeltaTable
from synthetic_chain import chain, write

from assets.bronze import bronze_ingest
from assets.checks import CHECK_NAME, blocks_to_check, bronze_continuity, run_block_range
from assets.definitions import defs
from assets.partitions import BLOCK_RANGES
from assets.resources import LakeResource, RpcResource, SparkResource
from ingestion.ranges import BlockSpan, span_of
from ingestion.sink import BronzeLake

SIZE = 16
TABLES = ("blocks", "transactions", "logs")


@pytest.fixture(autouse=True)
def small_partitions(monkeypatch):
    monkeypatch.setenv("CHAINLAKE_PARTITION_SIZE", str(SIZE))
    monkeypatch.delenv("CHAINLAKE_START_BLOCK", raising=False)


def by_table(evaluations) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.asset_key.path[-1]: e for e in evaluations}


@dg.asset(deps=[dg.AssetKey(["bronze", "blocks"])], partitions_def=BLOCK_RANGES)
def downstream_of_blocks() -> None:
    """Stands in for a silver table: must not run when the blocks check fails."""


def test_checks_are_registered_blocking_and_in_every_bronze_job():
    specs = list(bronze_continuity.check_specs)
    assert {(s.asset_key.path[-1], s.name) for s in specs} == {(t, CHECK_NAME) for t in TABLES}
    assert all(s.blocking for s in specs)
    check_keys = {s.key for s in specs}
    assert check_keys <= set(defs.resolve_asset_graph().asset_check_keys)
    # The sensor/schedule job and `dagster asset materialize --select bronze/...` include them.
    job = defs.resolve_job_def("bronze_catch_up")
    assert check_keys <= set(job.asset_layer.asset_graph.asset_check_keys)


def test_the_run_range_comes_from_partition_tags(tmp_path, monkeypatch):
    first, second = span_of(0, SIZE), span_of(SIZE, SIZE)
    assert run_block_range({"dagster/partition": first.key}) == first
    assert run_block_range({"dagster/asset_partition_range_start": first.key,
                            "dagster/asset_partition_range_end": second.key}) == BlockSpan(0, 2 * SIZE)
    assert run_block_range({}) is None

    lake = BronzeLake(str(tmp_path / "lake"))
    assert blocks_to_check(lake, first) is None  # nothing stored
    write(lake, chain(20, txs=0), 0, 20)  # blocks 0..19: the second range is open
    assert blocks_to_check(lake, first) == (0, SIZE)
    assert blocks_to_check(lake, second) == (SIZE, 20)  # clipped to the stored tip + 1
    assert blocks_to_check(lake, span_of(3 * SIZE, SIZE)) is None  # not ingested yet
    assert blocks_to_check(lake, None) == (0, 20)  # no partition: the whole stored range
    monkeypatch.setenv("CHAINLAKE_START_BLOCK", "5")
    assert blocks_to_check(lake, first) == (5, SIZE)  # what the asset ingests


def test_partition_checks_pass_then_name_a_deleted_block(spark, devnet, tmp_path):
    lake_root = str(tmp_path / "lake")
    key = span_of(0, SIZE).key
    resources = {"rpc": RpcResource(url=devnet.url, max_blocks_per_trigger=7),
                 "spark": SparkResource(), "lake": LakeResource(uri=lake_root)}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BLOCK_RANGES.name, [key])
        result = dg.materialize([bronze_ingest, bronze_continuity], partition_key=key,
                                instance=instance, resources=resources)
        assert result.success
        good = by_table(result.get_asset_check_evaluations())
        assert set(good) == set(TABLES)
        for evaluation in good.values():
            assert evaluation.passed and evaluation.blocking
            assert evaluation.check_name == CHECK_NAME
            assert evaluation.metadata["block_range"].value == f"[0, {SIZE})"
            assert evaluation.metadata["offending_blocks"].value == "-"
        assert good["blocks"].metadata["rows_validated"].value == SIZE

        # Only the checks (and a downstream asset), for the same partition: no Spark this time.
        checks_only = dg.AssetSelection.checks_for_assets(bronze_ingest) | \
            dg.AssetSelection.assets(downstream_of_blocks)

        def run_checks():
            return dg.materialize([bronze_ingest, bronze_continuity, downstream_of_blocks],
                                  selection=checks_only, instance=instance, resources=resources,
                                  tags={"dagster/partition": key}, raise_on_error=False)

        passing = run_checks()
        assert passing.success
        assert passing.asset_materializations_for_node("downstream_of_blocks")

        DeltaTable(BronzeLake(lake_root).table_uri("blocks")).delete("block_number = 7")
        again = run_checks()
        assert not again.success
        assert not again.asset_materializations_for_node("bronze_ingest")
        assert not again.asset_materializations_for_node("downstream_of_blocks")
        bad = by_table(again.get_asset_check_evaluations())
        blocks = bad["blocks"]
        assert not blocks.passed and blocks.blocking
        assert blocks.severity == dg.AssetCheckSeverity.ERROR
        assert blocks.metadata["offending_blocks"].value == "7"
        assert blocks.metadata["first_offending_block"].value == "7"
        assert "block numbers contiguous" in blocks.metadata["failed_expectations"].value
        assert "**FAILED**" in blocks.metadata["expectations"].value
        assert bad["logs"].metadata["block_range"].value == f"[0, {SIZE})"
