"""The silver assets against the real devnet: materialized with bronze in one run, as the
sensor's job does; rows equal to decoding bronze directly; blocking checks pass, and fail
naming the key on a tampered table."""

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from assets.bronze import bronze_ingest
from assets.checks import bronze_continuity
from assets.definitions import defs
from assets.partitions import BLOCK_RANGES
from assets.resources import LakeResource, RpcResource, SparkResource
from assets.silver import (
    GROUP,
    REBUILD_TAG,
    SILVER_ASSETS,
    SILVER_CHECKS,
    silver_key,
)
from ingestion.datasets.contracts import contracts_from_traces
from ingestion.datasets.token_transfers import decode_token_transfers
from ingestion.ranges import span_of
from ingestion.silver import SilverLake
from ingestion.sink import BronzeLake
from sensors import catch_up_job

SIZE = 16  # blocks per partition in these tests
ALL = [bronze_ingest, *SILVER_ASSETS, bronze_continuity, *SILVER_CHECKS]
SILVER = ["token_transfers", "contracts", "tokens"]


@pytest.fixture(autouse=True)
def small_partitions(monkeypatch):
    monkeypatch.setenv("CHAINLAKE_PARTITION_SIZE", str(SIZE))
    monkeypatch.delenv("CHAINLAKE_START_BLOCK", raising=False)


def resources(devnet, lake_root: str) -> dict:
    return {"rpc": RpcResource(url=devnet.url, max_blocks_per_trigger=7),
            "spark": SparkResource(), "lake": LakeResource(uri=lake_root)}


def keys(devnet) -> list[str]:
    return [span_of(s, SIZE).key for s in range(0, devnet.head + 1, SIZE)]


def sorted_rows(table: pa.Table, key: list[str]) -> list[dict]:
    return table.sort_by([(k, "ascending") for k in key]).to_pylist()


def check_evaluations(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()
            if e.asset_key.path[0] == "silver"}


def test_silver_assets_declare_partitions_policies_and_the_sensor_job_selects_them():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    for asset in SILVER_ASSETS:
        assert asset.partitions_def == BLOCK_RANGES
        assert asset.backfill_policy == dg.BackfillPolicy.single_run()
        spec = next(iter(asset.specs))
        assert spec.group_name == GROUP and spec.kinds == {"delta"}
    assert graph.get(silver_key("token_transfers")).parent_keys == {
        dg.AssetKey(["bronze", "logs"])}
    assert graph.get(silver_key("contracts")).parent_keys == {dg.AssetKey(["bronze", "traces"])}
    assert graph.get(silver_key("tokens")).parent_keys == {silver_key("contracts")}
    checks = {key.asset_key.path[-1]: key.name for key in graph.asset_check_keys
              if key.asset_key.path[0] == "silver"}
    assert checks == {"token_transfers": "decoded_exactly_once",
                      "contracts": "one_per_create_trace", "tokens": "one_per_token_contract"}
    assert all(spec.blocking for c in SILVER_CHECKS for spec in c.check_specs)
    # The sensor and the schedule launch catch_up_job: bronze and silver in one run.
    job = defs.resolve_job_def(catch_up_job.name)
    selected = job.asset_layer.asset_graph.get_all_asset_keys()
    assert {silver_key(t) for t in SILVER} | {dg.AssetKey(["bronze", "logs"])} <= set(selected)
    assert {key.asset_key for key in job.asset_layer.asset_graph.asset_check_keys} >= {
        silver_key(t) for t in SILVER}


def test_bronze_and_silver_in_one_run_equal_decoding_bronze_and_checks_pass(
        spark, devnet, instance, tmp_path):
    lake_root = str(tmp_path / "lake")
    partitions = keys(devnet)
    instance.add_dynamic_partitions(BLOCK_RANGES.name, partitions)
    # A backfill-like run over every partition (one run, BackfillPolicy.single_run()).
    result = dg.materialize(ALL, instance=instance, resources=resources(devnet, lake_root),
                            tags={"dagster/asset_partition_range_start": partitions[0],
                                  "dagster/asset_partition_range_end": partitions[-1]})
    assert result.success
    bronze, silver = BronzeLake(lake_root), SilverLake(lake_root)
    end = bronze.stored_tip() + 1

    transfers_key = ["block_number", "log_index", "batch_index"]
    expected = decode_token_transfers(bronze.read_range("logs", 0, end))
    assert expected.num_rows > 0
    assert sorted_rows(silver.read("token_transfers"), transfers_key) == sorted_rows(
        expected, transfers_key)
    contracts_key = ["block_number", "transaction_index", "address"]
    contracts = contracts_from_traces(bronze.read_range("traces", 0, end))
    assert contracts.num_rows > 0
    assert sorted_rows(silver.read("contracts"), contracts_key) == sorted_rows(
        contracts, contracts_key)
    token_contracts = contracts.filter(pc.or_(contracts["is_erc20"], contracts["is_erc721"]))
    tokens = silver.read("tokens")
    assert sorted(tokens["address"].to_pylist()) == sorted(token_contracts["address"].to_pylist())
    assert devnet.token_address.lower() in tokens["address"].to_pylist()

    # One materialization per partition and asset, with the partition's own row count.
    for table in SILVER:
        materializations = [m for m in result.get_asset_materialization_events()
                            if m.asset_key == silver_key(table)]
        by_partition = {m.partition: m.materialization.metadata for m in materializations}
        assert set(by_partition) == set(partitions), table
        total = sum(m["dagster/partition_row_count"].value for m in by_partition.values())
        assert total == silver.read(table).num_rows
        assert all(m["dagster/row_count"].value == total for m in by_partition.values())
    evaluations = check_evaluations(result)
    assert set(evaluations) == set(SILVER)
    assert all(e.passed for e in evaluations.values()), {
        k: e.description for k, e in evaluations.items()}
    assert evaluations["token_transfers"].metadata["rows"].value == expected.num_rows

    # The tip partition again, by the job the sensor launches (bronze and silver in one run):
    # nothing changed, nothing rewritten.
    versions = {t: silver.table(t).version() for t in SILVER}
    job = dg.Definitions(assets=[bronze_ingest, *SILVER_ASSETS],
                         asset_checks=[bronze_continuity, *SILVER_CHECKS], jobs=[catch_up_job],
                         resources=resources(devnet, lake_root)).resolve_job_def(catch_up_job.name)
    again = job.execute_in_process(partition_key=partitions[-1], instance=instance,
                                   tags={"chainlake/run_kind": "tip"})
    assert again.success
    assert {m.asset_key for m in again.get_asset_materialization_events()} >= {
        silver_key(t) for t in SILVER}
    assert sorted_rows(silver.read("token_transfers"), transfers_key) == sorted_rows(
        expected, transfers_key)
    for m in again.get_asset_materialization_events():
        if m.asset_key.path[0] == "silver":
            assert m.materialization.metadata["rows_written"].value == 0
    assert {t: silver.table(t).version() for t in SILVER} == versions


def test_a_tampered_silver_table_fails_its_blocking_check_naming_the_key(
        spark, devnet, instance, tmp_path):
    lake_root = str(tmp_path / "lake")
    partitions = keys(devnet)
    instance.add_dynamic_partitions(BLOCK_RANGES.name, partitions)
    run_resources = resources(devnet, lake_root)
    ranged = {"dagster/asset_partition_range_start": partitions[0],
              "dagster/asset_partition_range_end": partitions[-1]}
    assert dg.materialize(ALL, instance=instance, resources=run_resources, tags=ranged).success

    silver = SilverLake(lake_root)
    rows = silver.read("token_transfers")
    victim = rows.slice(0, 1).to_pylist()[0]
    block, log_index = victim["block_number"], victim["log_index"]
    in_block = rows.filter(pc.equal(rows["block_number"], block))
    silver.replace_range("token_transfers", in_block.filter(
        pc.not_equal(in_block["log_index"], log_index)), block, block + 1)
    partition = span_of(block, SIZE).key

    # Materializing the partition again does not repair it (bronze did not change: the
    # watermark says there is nothing to rebuild) and the blocking check stops the run.
    failed = dg.materialize(ALL, instance=instance, resources=run_resources,
                            partition_key=partition, raise_on_error=False,
                            selection=[silver_key("token_transfers")])
    assert not failed.success
    evaluation = check_evaluations(failed)["token_transfers"]
    assert not evaluation.passed
    first = evaluation.metadata["first_offending_keys"].value
    assert first == f"block {block} log {log_index}: 0 row(s), expected 1"
    assert evaluation.metadata["offending_keys"].value == 1

    # A full rebuild (run tag) makes the partition right again.
    repaired = dg.materialize(ALL, instance=instance, resources=run_resources,
                              partition_key=partition, tags={REBUILD_TAG: "full"},
                              selection=[silver_key("token_transfers")])
    assert repaired.success
    assert check_evaluations(repaired)["token_transfers"].passed
