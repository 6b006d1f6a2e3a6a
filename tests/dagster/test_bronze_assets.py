"""The Dagster code location against the real devnet: assets, sensor, schedule, policies."""

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from assets.bronze import POOL, bronze_ingest
from assets.definitions import defs
from assets.partitions import BLOCK_RANGES
from assets.resources import LakeResource, RpcResource, SparkResource
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


@pytest.fixture()
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def resources(devnet, lake_root: str) -> dict:
    return {"rpc": RpcResource(url=devnet.url, max_blocks_per_trigger=7),
            "spark": SparkResource(), "lake": LakeResource(uri=lake_root)}


def keys(*starts: int) -> list[str]:
    return [span_of(s, SIZE).key for s in starts]


def snapshot(lake_root: str) -> dict[str, list[dict]]:
    lake = BronzeLake(lake_root)
    return {name: lake.read(name).sort_by([(k, "ascending") for k in TABLES[name].key]).to_pylist()
            for name in TABLES}


def test_definitions_load_and_declare_policies():
    dg.Definitions.validate_loadable(defs)
    assert bronze_ingest.backfill_policy == dg.BackfillPolicy.single_run()
    assert bronze_ingest.partitions_def == BLOCK_RANGES
    assert {spec.key for spec in bronze_ingest.specs} == {
        dg.AssetKey(["bronze", name]) for name in TABLES}
    assert bronze_ingest.op.pool == POOL
    assert [s.name for s in defs.sensors] == ["chain_head_sensor"]
    assert [s.name for s in defs.schedules] == ["catch_up_schedule"]


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
    assert meta["transactions"]["rows_written"].value == sum(
        b["transaction_count"] for b in snapshot(lake_root)["blocks"])
    assert meta["blocks"]["delta_version"].value >= 0
    before = snapshot(lake_root)

    again = dg.materialize([bronze_ingest], partition_key=first, instance=instance,
                           resources=resources(devnet, lake_root))
    assert again.success
    assert snapshot(lake_root) == before

    # An overlapping backfill (both partitions in one run) leaves the first range identical.
    ranged = dg.materialize(
        [bronze_ingest], instance=instance, resources=resources(devnet, lake_root),
        tags={"dagster/asset_partition_range_start": first,
              "dagster/asset_partition_range_end": second})
    assert ranged.success
    after = snapshot(lake_root)
    assert [b for b in after["blocks"] if b["block_number"] < SIZE] == before["blocks"]
    assert sorted(b["block_number"] for b in after["blocks"]) == list(range(2 * SIZE))


def test_sensor_adds_partitions_and_requests_one_run_per_new_range(devnet, instance):
    rpc = RpcResource(url=devnet.url)
    head = devnet.live_head()
    with dg.build_sensor_context(instance=instance, resources={"rpc": rpc}) as context:
        first = chain_head_sensor(context)
    assert isinstance(first, dg.SensorResult)
    added = first.dynamic_partitions_requests[0].partition_keys
    assert added == [span_of(b, SIZE).key for b in range(0, head + 1, SIZE)]
    assert [r.partition_key for r in first.run_requests] == [span_of(head, SIZE).key]
    assert first.cursor == str(head)

    instance.add_dynamic_partitions(BLOCK_RANGES.name, added)
    # The chain moved on by 2*SIZE blocks since the cursor: one run per range touched.
    behind = head - 2 * SIZE
    with dg.build_sensor_context(instance=instance, cursor=str(behind),
                                 resources={"rpc": rpc}) as context:
        later = chain_head_sensor(context)
    expected = [span_of(b, SIZE).key for b in range(span_of(behind + 1, SIZE).start, head + 1, SIZE)]
    assert [r.partition_key for r in later.run_requests] == expected
    assert len({r.run_key for r in later.run_requests}) == len(expected)
    assert not later.dynamic_partitions_requests  # nothing new to add

    with dg.build_sensor_context(instance=instance, cursor=str(head),
                                 resources={"rpc": rpc}) as context:
        idle = chain_head_sensor(context)
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
