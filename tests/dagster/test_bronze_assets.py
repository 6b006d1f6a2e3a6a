"""The Dagster code location against the real devnet: assets, sensor, schedule, policies."""

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from synthetic_chain import chain, write

from assets.bronze import OWNERS, POOL, RETRY_POLICY, RUN_KIND_TAG, bronze_ingest
from assets.definitions import defs
from assets.partitions import BLOCK_RANGES
from assets.resources import LakeResource, RpcResource, SparkResource
from ingestion import settings
from ingestion.ranges import span_of
from ingestion.schemas import TABLES
from ingestion.sink import BronzeLake
from sensors import catch_up_schedule, chain_head_sensor

REPO = Path(__file__).resolve().parents[2]
SIZE = 16  # blocks per partition in these tests


@pytest.fixture(autouse=True)
def small_partitions(monkeypatch):
    monkeypatch.setenv("CHAINLAKE_PARTITION_SIZE", str(SIZE))
    monkeypatch.delenv("CHAINLAKE_START_BLOCK", raising=False)



def resources(devnet, lake_root: str) -> dict:
    return {"rpc": RpcResource(url=devnet.url, max_blocks_per_trigger=7),
            "spark": SparkResource(), "lake": LakeResource(uri=lake_root)}


def keys(*starts: int) -> list[str]:
    return [span_of(s, SIZE).key for s in starts]


def snapshot(lake_root: str) -> dict[str, list[dict]]:
    lake = BronzeLake(lake_root)
    return {name: lake.read(name).sort_by([(k, "ascending") for k in TABLES[name].key]).to_pylist()
            for name in TABLES}


# Numbers are plotted in the UI as time series: only measures may be numbers.
MEASURES = {"blocks_ingested", "rows_written", "blocks_per_second", "fetch_seconds",
            "transform_seconds", "write_seconds", "commit_seconds", "json_mb", "lag_behind_head",
            "reorg_depth", "dagster/row_count", "dagster/partition_row_count"}


def assert_metadata_kinds(meta: dict, lake_root: str) -> None:
    for name, m in meta.items():
        numbers = {k for k, v in m.items()
                   if isinstance(v, dg.IntMetadataValue | dg.FloatMetadataValue)}
        assert numbers == MEASURES, name
        assert m["lag_behind_head"].value >= 0
        assert "observed after the write" in m["head_block"].value
        assert int(m["delta_version"].value) >= 0
        assert int(m["stored_tip_block"].value) >= 0
        assert isinstance(m["open_partition"], dg.BoolMetadataValue)
        assert m["dagster/uri"].value == BronzeLake(lake_root).table_uri(name)
        assert m["dagster/table_name"].value == f"bronze.{name}"
        assert m["fetch_seconds"].value > 0 and m["json_mb"].value > 0
        assert m["blocks_per_second"].value > 0


def test_definitions_load_and_declare_policies():
    dg.Definitions.validate_loadable(defs)
    assert bronze_ingest.backfill_policy == dg.BackfillPolicy.single_run()
    assert bronze_ingest.partitions_def == BLOCK_RANGES
    assert {spec.key for spec in bronze_ingest.specs} == {
        dg.AssetKey(["bronze", name]) for name in TABLES}
    assert bronze_ingest.op.pool == POOL
    assert bronze_ingest.op.retry_policy == RETRY_POLICY
    assert all(spec.owners == OWNERS for spec in bronze_ingest.specs)
    assert [s.name for s in defs.sensors] == ["chain_head_sensor"]
    assert "catch_up_schedule" in {s.name for s in defs.schedules}  # maintenance has its own


def test_code_location_loads_from_workspace_yaml():
    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Validation successful for code location chainlake" in done.stderr + done.stdout


def test_partition_materializes_and_rematerializing_changes_nothing(spark, devnet, instance,
                                                                   tmp_path):
    lake_root = str(tmp_path / "lake")
    first, second = keys(0, SIZE)
    instance.add_dynamic_partitions(BLOCK_RANGES.name, [first, second])
    result = dg.materialize([bronze_ingest], partition_key=first, instance=instance,
                            resources=resources(devnet, lake_root))
    assert result.success
    blocks = BronzeLake(lake_root).read("blocks").column("block_number").to_pylist()
    assert sorted(blocks) == list(range(SIZE))
    materialization = result.asset_materializations_for_node("bronze_ingest")
    meta = {m.asset_key.path[-1]: m.metadata for m in materialization}
    assert meta["blocks"]["rows_written"].value == SIZE
    assert meta["blocks"]["blocks_ingested"].value == SIZE
    transactions = sum(b["transaction_count"] for b in snapshot(lake_root)["blocks"])
    assert meta["transactions"]["rows_written"].value == transactions
    assert_metadata_kinds(meta, lake_root)
    assert meta["blocks"]["dagster/row_count"].value == SIZE  # the whole table
    assert meta["transactions"]["dagster/partition_row_count"].value == transactions
    assert meta["blocks"]["open_partition"].value is False  # the head is far beyond block 15
    assert meta["blocks"]["partition_state"].value.startswith("complete: blocks 0..15")
    assert meta["blocks"]["block_range"].value == "blocks 0..15"
    assert "one partition" in meta["blocks"]["run_partitions"].value
    before = snapshot(lake_root)

    again = dg.materialize([bronze_ingest], partition_key=first, instance=instance,
                           resources=resources(devnet, lake_root))
    assert again.success
    assert snapshot(lake_root) == before

    # An overlapping backfill (three partitions in one run, one Spark query) leaves the first
    # range identical.
    third = keys(2 * SIZE, SIZE)[0]
    instance.add_dynamic_partitions(BLOCK_RANGES.name, [third])
    ranged = dg.materialize(
        [bronze_ingest], instance=instance, resources=resources(devnet, lake_root),
        tags={"dagster/asset_partition_range_start": first,
              "dagster/asset_partition_range_end": third})
    assert ranged.success
    # One materialization per partition, each with its own figures (not the run's totals).
    per_table: dict[str, dict] = {}
    for m in ranged.asset_materializations_for_node("bronze_ingest"):
        per_table.setdefault(m.asset_key.path[-1], {})[m.partition] = m.metadata
    per_partition = per_table["blocks"]
    assert per_partition[first]["blocks_ingested"].value == 0  # it was complete already
    assert per_partition[second]["blocks_ingested"].value == SIZE
    assert per_partition[third]["blocks_ingested"].value == SIZE
    assert per_partition[second]["block_range"].value == f"blocks {SIZE}..{2 * SIZE - 1}"
    assert per_partition[first]["dagster/partition_row_count"].value == SIZE
    assert "covered 3 partitions" in per_partition[first]["run_partitions"].value
    assert per_partition[first]["dagster/row_count"].value == 3 * SIZE
    after = snapshot(lake_root)
    assert [b for b in after["blocks"] if b["block_number"] < SIZE] == before["blocks"]
    assert sorted(b["block_number"] for b in after["blocks"]) == list(range(3 * SIZE))
    # Rows written per partition are exact (tasks never straddle a partition).
    for key, lo in ((second, SIZE), (third, 2 * SIZE)):
        txs = sum(b["transaction_count"] for b in after["blocks"]
                  if lo <= b["block_number"] < lo + SIZE)
        assert per_table["transactions"][key]["rows_written"].value == txs


def test_sensor_adds_partitions_and_requests_one_run_per_range_the_lake_lacks(devnet, instance,
                                                                            tmp_path):
    rpc = RpcResource(url=devnet.url)
    lake_root = str(tmp_path / "lake")
    head = devnet.live_head()

    def tick(cursor=None):
        with dg.build_sensor_context(instance=instance, cursor=cursor,
                                     resources={"rpc": rpc, "lake": LakeResource(uri=lake_root)}
                                     ) as context:
            return chain_head_sensor(context)

    first = tick()
    assert isinstance(first, dg.SensorResult)
    added = first.dynamic_partitions_requests[0].partition_keys
    assert added == [span_of(b, SIZE).key for b in range(0, head + 1, SIZE)]
    # An empty lake follows the head from the tip partition; history is for backfills.
    assert [r.partition_key for r in first.run_requests] == [span_of(head, SIZE).key]
    assert first.run_requests[0].tags["chainlake/run_kind"] == "tip"
    assert first.cursor == "1"

    instance.add_dynamic_partitions(BLOCK_RANGES.name, added)
    # The lake holds blocks up to 2*SIZE behind the head: one run per range that lacks blocks
    # (the sensor reads the block numbers only; synthetic rows stand in for ingested ones).
    behind = head - 2 * SIZE
    write(BronzeLake(lake_root), chain(behind + 1), 0, behind + 1)
    later = tick(first.cursor)
    expected = [span_of(b, SIZE).key for b in range(span_of(behind + 1, SIZE).start, head + 1, SIZE)]
    assert [r.partition_key for r in later.run_requests] == expected
    assert len({r.run_key for r in later.run_requests}) == len(expected)
    assert not {r.run_key for r in later.run_requests} & {r.run_key for r in first.run_requests}
    assert later.run_requests[0].tags["chainlake/first_missing_block"] == str(behind + 1)
    assert not later.dynamic_partitions_requests  # nothing new to add

    write(BronzeLake(lake_root), chain(head - behind, first=behind + 1), behind + 1, head + 1)
    idle = tick(later.cursor)
    assert not idle.run_requests
    assert "no new safe block" in idle.skip_reason.skip_message


def test_sensor_skips_with_a_reason_when_the_node_is_unreachable(instance):
    rpc = RpcResource(url="http://127.0.0.1:1/v3/0123456789abcdef0123456789abcdef")
    with dg.build_sensor_context(instance=instance, resources={"rpc": rpc}) as context:
        result = chain_head_sensor(context)
    assert isinstance(result, dg.SkipReason)
    assert "cannot reach the RPC node" in result.skip_message
    assert "0123456789abcdef0123456789abcdef" not in result.skip_message


def test_schedule_targets_the_tip_partition(devnet, instance, tmp_path):
    head = devnet.live_head()
    # Always `with`: the schedule context opens its own DagsterInstance from the instance's ref
    # (context.instance) and enters it; left open, that instance is exited whenever the garbage
    # collector gets to it, which resets Dagster's current-defs-state-storage ContextVar to this
    # fixture's (by then dead) instance in the middle of a later test (tests/dagster/conftest.py).
    with dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 1, 1, tzinfo=UTC),
            resources={"rpc": RpcResource(url=devnet.url),
                       "lake": LakeResource(uri=str(tmp_path / "lake"))}) as context:
        requests = list(catch_up_schedule(context))
    assert [r.partition_key for r in requests] == [span_of(head, SIZE).key]
    assert span_of(head, SIZE).key in instance.get_dynamic_partitions(BLOCK_RANGES.name)


def test_a_tip_run_follows_the_head_until_its_partition_closes(spark, devnet, instance, tmp_path,
                                                               monkeypatch):
    """A tip run whose partition is open keeps ingesting blocks mined after its first pass, in
    the same run (``follow_head``), and ends when the partition is complete."""
    monkeypatch.setenv(settings.ENV_TIP_FOLLOW_S, "300")  # ended by the partition, not the time
    lake_root = str(tmp_path / "lake")
    head = devnet.live_head()
    # The head 5 blocks before the end of its partition: 4 more close it.
    to_mine = (SIZE - 5 - head % SIZE) % SIZE
    if to_mine:
        devnet.call("anvil_mine", [hex(to_mine)])
    head += to_mine
    span = span_of(head, SIZE)
    assert span.end - head == 5
    instance.add_dynamic_partitions(BLOCK_RANGES.name, [span.key])

    def mine_after_the_first_pass() -> None:
        deadline = time.monotonic() + 300
        while (BronzeLake(lake_root).stored_tip() or -1) < head:  # the first pass is in the lake
            assert time.monotonic() < deadline
            time.sleep(0.2)
        for _ in range(4):
            time.sleep(0.5)
            devnet.call("anvil_mine", ["0x1"])

    miner = ThreadPoolExecutor(1).submit(mine_after_the_first_pass)
    result = dg.materialize([bronze_ingest], partition_key=span.key, instance=instance,
                            resources=resources(devnet, lake_root),
                            tags={RUN_KIND_TAG: "tip"})
    miner.result(timeout=60)
    assert result.success
    blocks = BronzeLake(lake_root).read("blocks").column("block_number").to_pylist()
    assert sorted(blocks) == list(range(span.start, span.end))  # every block once
    meta = {m.asset_key.path[-1]: m.metadata
            for m in result.asset_materializations_for_node("bronze_ingest")}
    assert meta["blocks"]["blocks_ingested"].value == SIZE
    assert meta["blocks"]["partition_state"].value.startswith("complete:")
    assert meta["blocks"]["open_partition"].value is False
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("following the head for up to 300s" in m for m in messages)
