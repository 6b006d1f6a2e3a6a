"""The lake_maintenance and purge_old_runs jobs, run in-process on a synthetic lake (no Spark)."""

import datetime
import os

import dagster as dg
from synthetic_chain import chain, write

from assets.definitions import defs
from assets.maintenance import (
    MAINTENANCE_POOL,
    TRIGGER_TAG,
    lake_maintenance,
    lake_maintenance_schedule,
    maintain_bronze_lake,
    purge_old_runs,
    purge_old_runs_job,
    purge_old_runs_schedule,
)
from assets.resources import LakeResource
from ingestion.ranges import BlockSpan
from ingestion.schemas import TABLES
from ingestion.sink import BronzeLake


def snapshot(lake: BronzeLake) -> dict[str, list[dict]]:
    return {name: lake.read(name).sort_by([(k, "ascending") for k in TABLES[name].key]).to_pylist()
            for name in TABLES}


def test_the_jobs_and_their_daily_schedules_are_registered():
    dg.Definitions.validate_loadable(defs)
    assert defs.get_job_def("lake_maintenance") is not None
    assert defs.get_job_def("purge_old_runs") is not None
    schedules = {s.name: s for s in defs.schedules}
    for schedule, job, cron in ((lake_maintenance_schedule, "lake_maintenance", "30 3 * * *"),
                                (purge_old_runs_schedule, "purge_old_runs", "30 4 * * *")):
        assert schedules[schedule.name] is schedule
        assert (schedule.job_name, schedule.cron_schedule) == (job, cron)
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert maintain_bronze_lake.pool == MAINTENANCE_POOL  # not the ingestion pool


def test_the_schedule_requests_a_tagged_run():
    with dg.instance_for_test() as instance, dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime.datetime(2025, 1, 2, 3, 30)) as context:
        data = lake_maintenance_schedule.evaluate_tick(context)
    (request,) = data.run_requests
    assert request.tags[TRIGGER_TAG] == "lake_maintenance_schedule"


def test_the_job_compacts_the_closed_partitions_of_a_synthetic_lake(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAINLAKE_PARTITION_SIZE", "100")
    monkeypatch.delenv("CHAINLAKE_START_BLOCK", raising=False)
    lake = BronzeLake(str(tmp_path / "lake"))
    rows = chain(250)
    for a in range(0, 250, 10):
        write(lake, {k: [r for r in v if a <= r["block_number"] < a + 10] for k, v in rows.items()},
              a, a + 10)
    done = lake.checkpoint_uri(f"partition-{BlockSpan(0, 100).key}")
    os.makedirs(done)
    old = 0.0  # long idle
    os.utime(done, (old, old))
    before = snapshot(lake)

    with dg.instance_for_test() as instance:
        result = lake_maintenance.execute_in_process(
            instance=instance, resources={"lake": LakeResource(uri=lake.root)},
            run_config={"ops": {"maintain_bronze_lake": {"config": {
                "retention_hours": 0, "allow_short_retention": True}}}})
        assert result.success
        assert not result.asset_materializations_for_node("maintain_bronze_lake")
        (output,) = [e for e in result.all_node_events if e.is_successful_output]
        metadata = output.event_specific_data.metadata
    assert metadata["closed_before"].value == 200  # the tip (249) is in [200, 300): open
    assert (metadata["files_before"].value, metadata["files_after"].value) == (75, 3 * (2 + 5))
    assert metadata["checkpoints_removed"].value == 1 and not os.path.exists(done)
    assert snapshot(lake) == before


def test_a_short_retention_must_be_asked_for(tmp_path):
    lake = BronzeLake(str(tmp_path / "lake"))
    write(lake, chain(10), 0, 10)
    with dg.instance_for_test() as instance:
        result = lake_maintenance.execute_in_process(
            instance=instance, resources={"lake": LakeResource(uri=lake.root)},
            run_config={"ops": {"maintain_bronze_lake": {"config": {"retention_hours": 1}}}},
            raise_on_error=False)
    assert not result.success


@dg.asset(partitions_def=dg.StaticPartitionsDefinition(["a", "b"]))
def toy(context: dg.AssetExecutionContext) -> None:
    return None


@dg.asset
def unpartitioned() -> None:
    return None


def _run(instance, asset, partition: str | None, trigger: str | None) -> str:
    tags = {TRIGGER_TAG: trigger} if trigger else {}
    result = dg.materialize([asset], partition_key=partition, instance=instance, tags=tags)
    return result.run_id


def test_old_sensor_runs_are_purged_but_the_latest_materializations_are_kept():
    with dg.instance_for_test() as instance:
        a1 = _run(instance, toy, "a", "chain_head_sensor")
        a2 = _run(instance, toy, "a", "chain_head_sensor")
        b1 = _run(instance, toy, "b", "chain_head_sensor")
        a3 = _run(instance, toy, "a", "catch_up_schedule")  # latest of a
        manual = _run(instance, toy, "b", None)  # latest of b, launched by hand: never purged
        u1 = _run(instance, unpartitioned, None, "chain_head_sensor")  # latest of unpartitioned
        shard = instance.event_log_storage.path_for_shard(a1)
        assert os.path.exists(shard)

        # Nothing is old enough yet.
        assert purge_old_runs(instance, older_than_days=7) == ([], 0)
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=8)
        deleted, kept = purge_old_runs(instance, older_than_days=7, now=later)

        assert sorted(deleted) == sorted([a1, a2, b1])
        assert kept == 2  # a3 and u1 hold the latest materializations
        assert all(instance.get_run_by_id(r) is None for r in deleted)
        assert all(instance.get_run_by_id(r) is not None for r in (a3, manual, u1))
        assert not os.path.exists(shard)
        assert instance.get_materialized_partitions(toy.key) == {"a", "b"}
        assert instance.get_latest_materialization_event(unpartitioned.key).run_id == u1


def test_the_purge_job_runs_in_process():
    with dg.instance_for_test() as instance:
        old = _run(instance, toy, "a", "chain_head_sensor")
        latest = _run(instance, toy, "a", "chain_head_sensor")
        result = purge_old_runs_job.execute_in_process(
            instance=instance,
            run_config={"ops": {"purge_runs": {"config": {"older_than_days": 0}}}})
        assert result.success
        assert instance.get_run_by_id(old) is None
        assert instance.get_run_by_id(latest) is not None  # latest materialization of "a"
        assert instance.get_run_by_id(result.run_id) is not None  # its own run: untagged
