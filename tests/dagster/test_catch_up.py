"""Self-healing catch-up: the sensor plans from what the lake holds, never doubles a queued or
running partition, gives tip and history work separate lanes; bronze runs retry transient
failures and refuse bad partition keys; metadata kinds; `make dev`'s arguments.

Fast: a node stand-in that reports a head, synthetic lakes, Dagster's own run-queue logic; no
Spark, no devnet (the bronze runs here fail or are stubbed before Spark would start).
"""

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.test_utils import create_run_for_test
from synthetic_chain import chain, write

import assets.bronze as bronze
from assets.bronze import (
    OPEN_PARTITION_TAG,
    POOL,
    POOL_LIMIT,
    RETRY_POLICY,
    RUN_KIND_TAG,
    bronze_ingest,
    bronze_key,
    is_refusal,
    requests_per_second,
    run_kind,
)
from assets.checks import check_results
from assets.definitions import defs
from assets.dev import DEFAULT_UI_PORT, plan
from assets.partitions import (
    BLOCK_RANGES,
    PartitionKeyError,
    add_partitions,
    check_new_keys,
    check_run_keys,
    key_problem,
)
from assets.resources import LakeResource, RpcResource, SparkResource
from ingestion import settings
from ingestion.continuity import validate_range
from ingestion.ranges import BlockSpan, span_of
from ingestion.rpc import RpcTransportError
from ingestion.schemas import TABLES
from ingestion.sink import BronzeLake, LakeError
from ingestion.source import ChainView, SourceOptionError
from sensors import chain_head_sensor
from sensors.catchup import (
    FIRST_MISSING_TAG,
    IN_FLIGHT_STATUSES,
    MAX_RUNTIME_TAG,
    catch_up_job,
    ensure_pool_limit,
    in_flight_runs,
)

REPO = Path(__file__).resolve().parents[2]
SIZE = 16  # blocks per partition in these tests
CHAIN_ID = 31337


@pytest.fixture(autouse=True)
def small_partitions(monkeypatch):
    monkeypatch.setenv("CHAINLAKE_PARTITION_SIZE", str(SIZE))
    for name in ("CHAINLAKE_START_BLOCK", settings.ENV_TIP_REQUESTS_PER_SECOND,
                 settings.ENV_TIP_RUN_MAX_RUNTIME_S, settings.ENV_HISTORY_RUN_MAX_RUNTIME_S,
                 settings.ENV_HISTORY_REQUESTS_PER_SECOND):
        monkeypatch.delenv(name, raising=False)



class HeadAt(RpcResource):
    """The `rpc` resource with a node that is at block ``head`` (no network)."""

    head: int = 0

    def observe(self) -> ChainView:
        return ChainView(chain_id=CHAIN_ID, head=self.head, confirmations=0)


def key(block: int) -> str:
    return span_of(block, SIZE).key


def put(lake: BronzeLake, start: int, end: int) -> None:
    write(lake, chain(end - start, first=start, txs=1), start, end)


def tick(instance, lake_root, head: int, cursor: str | None = None):
    with dg.build_sensor_context(
            instance=instance, cursor=cursor,
            resources={"rpc": HeadAt(url="http://127.0.0.1:1", head=head),
                       "lake": LakeResource(uri=lake_root)}) as context:
        result = chain_head_sensor(context)
    if isinstance(result, dg.SensorResult) and result.dynamic_partitions_requests:
        for request in result.dynamic_partitions_requests:  # what the daemon does with them
            instance.add_dynamic_partitions(BLOCK_RANGES.name, list(request.partition_keys))
    return result


def requested(result) -> list[str]:
    return [r.partition_key for r in result.run_requests] if result.run_requests else []


def origin(job_name: str):
    """Where a queued run says its job comes from (Dagster requires one for queued runs)."""
    from dagster._core.remote_origin import (
        RegisteredCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )

    return RemoteJobOrigin(
        repository_origin=RemoteRepositoryOrigin(
            code_location_origin=RegisteredCodeLocationOrigin(location_name="chainlake"),
            repository_name="__repository__"),
        job_name=job_name)


def add_run(instance, status: dg.DagsterRunStatus, tags: dict[str, str],
            job_name: str = catch_up_job.name, tables=("blocks", "transactions", "logs")):
    """A run of the bronze assets in the instance, as the sensor, the UI or a backfill makes."""
    return create_run_for_test(
        instance, job_name=job_name, status=status, tags=tags, remote_job_origin=origin(job_name),
        asset_selection=frozenset(bronze_key(n) for n in tables))


# --- the sensor: the lake is the truth ------------------------------------------------------------

def test_a_failed_or_cancelled_run_is_requested_again_until_the_lake_holds_its_blocks(
        instance, tmp_path):
    lake_root = str(tmp_path / "lake")
    lake = BronzeLake(lake_root)
    # The tip run of partition 32..47 wrote blocks up to 40 and failed; the head moved on to 60.
    put(lake, 0, 41)
    failed = add_run(instance, dg.DagsterRunStatus.FAILURE, {"dagster/partition": key(32)})
    first = tick(instance, lake_root, head=60)
    assert requested(first) == [key(32), key(48)]
    by_key = {r.partition_key: r for r in first.run_requests}
    assert by_key[key(32)].tags[FIRST_MISSING_TAG] == "41"
    assert by_key[key(32)].tags[RUN_KIND_TAG] == "tip"
    assert OPEN_PARTITION_TAG not in by_key[key(32)].tags  # 32..47 is below the safe head 60
    assert by_key[key(48)].tags[OPEN_PARTITION_TAG] == key(48)  # 48..63: blocks still to come
    assert instance.get_run_by_id(failed.run_id).status == dg.DagsterRunStatus.FAILURE

    # Both are queued now: the next tick requests nothing, whatever the head did.
    runs = {k: add_run(instance, dg.DagsterRunStatus.QUEUED, {"dagster/partition": k})
            for k in (key(32), key(48))}
    waiting = tick(instance, lake_root, head=62, cursor=first.cursor)
    assert not waiting.run_requests
    assert "waiting" in waiting.skip_reason.skip_message
    assert runs[key(32)].run_id[:8] in waiting.skip_reason.skip_message

    # The run of 32..47 is cancelled: its blocks are requested again at the next tick.
    instance.report_run_canceled(runs[key(32)])
    again = tick(instance, lake_root, head=62, cursor=waiting.cursor or first.cursor)
    assert requested(again) == [key(32)]
    assert again.run_requests[0].run_key != first.run_requests[0].run_key  # a fresh run key

    # Once the lake holds everything up to the safe head, there is nothing to do.
    instance.report_run_canceled(runs[key(48)])
    put(lake, 41, 63)
    idle = tick(instance, lake_root, head=62, cursor=again.cursor)
    assert not idle.run_requests
    assert "no new safe block" in idle.skip_reason.skip_message


@pytest.mark.parametrize("status", IN_FLIGHT_STATUSES, ids=lambda s: s.value)
def test_never_a_second_run_for_a_partition_with_one_queued_or_running(instance, tmp_path,
                                                                       status):
    lake_root = str(tmp_path / "lake")
    put(BronzeLake(lake_root), 0, 20)
    add_run(instance, status, {"dagster/partition": key(16)})
    result = tick(instance, lake_root, head=40)
    assert requested(result) == [key(32)]  # 16..31 has a run in flight; 32..47 has none


def test_a_backfill_in_flight_covers_its_whole_partition_range(instance, tmp_path):
    lake_root = str(tmp_path / "lake")
    put(BronzeLake(lake_root), 0, 20)
    tick(instance, lake_root, head=40)  # adds the partitions
    add_run(instance, dg.DagsterRunStatus.STARTED,
            {"dagster/asset_partition_range_start": key(16),
             "dagster/asset_partition_range_end": key(32), "dagster/backfill": "abcdefgh"},
            job_name="__ASSET_JOB", tables=("blocks",))
    (run,) = in_flight_runs(instance)
    assert run.span == BlockSpan(16, 48) and run.kind == "history"
    result = tick(instance, lake_root, head=40)
    assert not result.run_requests
    assert "covers it" in result.skip_reason.skip_message


def test_a_run_whose_worker_died_is_failed_by_run_monitoring_and_requested_again(
        instance, tmp_path):
    # DefaultRunLauncher cannot check a run worker's health: a worker that died with its code
    # server leaves its run STARTED, holding the partition (and the tip lane) for good. The
    # sensor's runs carry a maximum run time; Dagster's run monitoring (enabled in
    # config/dagster.yaml) fails a run past it, and the next tick asks for the partition again.
    from dagster._core.events import DagsterEvent, DagsterEventType
    from dagster._daemon.monitoring.run_monitoring import check_run_timeout

    lake_root = str(tmp_path / "lake")
    put(BronzeLake(lake_root), 0, 40)
    first = tick(instance, lake_root, head=60)
    assert requested(first) == [key(32), key(48)]
    assert {r.tags[MAX_RUNTIME_TAG] for r in first.run_requests} == {
        str(settings.DEFAULT_TIP_RUN_MAX_RUNTIME_S)}
    # The run of 32..47 started; its worker died. (Its limit is cut to a second here.)
    tags = {**first.run_requests[0].tags, "dagster/partition": key(32), MAX_RUNTIME_TAG: "1"}
    dead = add_run(instance, dg.DagsterRunStatus.STARTING, tags)
    instance.report_dagster_event(
        DagsterEvent(DagsterEventType.RUN_START.value, job_name=dead.job_name), dead.run_id)
    assert key(32) not in requested(tick(instance, lake_root, head=60, cursor=first.cursor))
    time.sleep(1.2)
    check_run_timeout(instance, instance.get_run_record_by_id(dead.run_id),
                      logging.getLogger("test"), float(instance.run_monitoring_max_runtime_seconds))
    assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
    assert key(32) in requested(tick(instance, lake_root, head=60, cursor=first.cursor))
    config = yaml.safe_load((REPO / "config" / "dagster.yaml").read_text())["run_monitoring"]
    assert config["enabled"] is True


def test_history_runs_carry_the_history_run_time_limit(instance, tmp_path):
    lake_root = str(tmp_path / "lake")
    put(BronzeLake(lake_root), 0, 3)
    put(BronzeLake(lake_root), 5, 100)  # blocks 3 and 4 missing, far below the head
    result = tick(instance, lake_root, head=99)
    assert [(r.tags[RUN_KIND_TAG], r.tags[MAX_RUNTIME_TAG]) for r in result.run_requests] == [
        ("history", str(settings.DEFAULT_HISTORY_RUN_MAX_RUNTIME_S))]


def test_the_run_time_limits_can_be_set(monkeypatch):
    monkeypatch.setenv(settings.ENV_TIP_RUN_MAX_RUNTIME_S, "60")
    monkeypatch.setenv(settings.ENV_HISTORY_RUN_MAX_RUNTIME_S, "600")
    assert settings.run_max_runtime_from_env("tip") == 60
    assert settings.run_max_runtime_from_env("history") == 600
    monkeypatch.setenv(settings.ENV_TIP_RUN_MAX_RUNTIME_S, "0")
    with pytest.raises(ValueError, match=settings.ENV_TIP_RUN_MAX_RUNTIME_S):
        settings.run_max_runtime_from_env("tip")


def test_how_long_tip_runs_follow_the_head_can_be_set(monkeypatch):
    monkeypatch.delenv(settings.ENV_TIP_FOLLOW_S, raising=False)
    assert settings.tip_follow_seconds_from_env() == settings.DEFAULT_TIP_FOLLOW_S
    assert settings.DEFAULT_TIP_FOLLOW_S < settings.DEFAULT_TIP_RUN_MAX_RUNTIME_S // 2
    monkeypatch.setenv(settings.ENV_TIP_FOLLOW_S, "0")  # off
    assert settings.tip_follow_seconds_from_env() == 0
    for bad in ("-1", "1.5", "soon"):
        monkeypatch.setenv(settings.ENV_TIP_FOLLOW_S, bad)
        with pytest.raises(ValueError, match=f"{settings.ENV_TIP_FOLLOW_S} must be a whole "
                                             "number of seconds >= 0"):
            settings.tip_follow_seconds_from_env()


def test_old_gaps_are_healed_one_history_run_at_a_time(instance, tmp_path):
    lake_root = str(tmp_path / "lake")
    lake = BronzeLake(lake_root)
    put(lake, 0, 3)
    put(lake, 5, 20)  # blocks 3 and 4 are missing, far below the head
    put(lake, 20, 34)
    put(lake, 38, 100)  # and 34..37
    first = tick(instance, lake_root, head=99)
    assert [(r.partition_key, r.tags[RUN_KIND_TAG]) for r in first.run_requests] == [
        (key(0), "history")]  # one at a time; 32..47 (also history: 3+ partitions back) waits
    add_run(instance, dg.DagsterRunStatus.STARTED,
            {"dagster/partition": key(0), RUN_KIND_TAG: "history"})
    assert not tick(instance, lake_root, head=99, cursor=first.cursor).run_requests
    put(lake, 3, 5)  # the history run did its work
    instance.report_run_canceled(instance.get_runs()[0])
    later = tick(instance, lake_root, head=99, cursor=first.cursor)
    assert requested(later) == [key(32)]


def test_tip_work_is_not_held_back_by_history_in_flight(instance, tmp_path):
    lake_root = str(tmp_path / "lake")
    put(BronzeLake(lake_root), 0, 50)
    add_run(instance, dg.DagsterRunStatus.STARTED,
            {"dagster/asset_partition_range_start": key(0),
             "dagster/asset_partition_range_end": key(16), "dagster/backfill": "abcdefgh"},
            job_name="__ASSET_JOB", tables=("blocks",))
    result = tick(instance, lake_root, head=70)
    assert [(r.partition_key, r.tags[RUN_KIND_TAG]) for r in result.run_requests] == [
        (key(48), "tip"), (key(64), "tip")]


def test_an_empty_lake_follows_from_the_tip_partition(instance, tmp_path):
    result = tick(instance, str(tmp_path / "lake"), head=70)
    added = [k for r in result.dynamic_partitions_requests for k in r.partition_keys]
    assert added == [key(b) for b in range(0, 71, SIZE)]
    assert requested(result) == [key(64)]
    assert result.run_requests[0].tags[OPEN_PARTITION_TAG] == key(64)
    assert not (tmp_path / "lake").exists()  # planning reads, never writes


def test_a_bad_partition_key_in_the_instance_is_reported_not_fatal(instance, tmp_path):
    lake_root = str(tmp_path / "lake")
    put(BronzeLake(lake_root), 0, 20)
    instance.add_dynamic_partitions(BLOCK_RANGES.name, ["000000000016-000000000023"])  # 8 blocks
    result = tick(instance, lake_root, head=40)
    added = [k for r in result.dynamic_partitions_requests for k in r.partition_keys]
    assert key(16) not in added  # it would overlap the bad key
    assert requested(result) == [key(32)]


def test_an_unreadable_lake_is_a_skip_reason(instance, tmp_path, monkeypatch):
    def broken(self):
        raise LakeError(f"{self.root}/bronze/blocks: cannot read the Delta log")

    monkeypatch.setattr(BronzeLake, "stored_bounds", broken)
    result = tick(instance, str(tmp_path / "lake"), head=40)
    assert "cannot read the lake" in result.skip_reason.skip_message


def test_the_sensor_interval_is_a_setting(monkeypatch):
    monkeypatch.delenv(settings.ENV_SENSOR_INTERVAL_S, raising=False)
    assert settings.sensor_interval_from_env() == settings.DEFAULT_SENSOR_INTERVAL_S
    assert chain_head_sensor.minimum_interval_seconds == settings.sensor_interval_from_env()
    monkeypatch.setenv(settings.ENV_SENSOR_INTERVAL_S, "12")
    assert settings.sensor_interval_from_env() == 12
    for bad in ("0", "2.5", "soon"):
        monkeypatch.setenv(settings.ENV_SENSOR_INTERVAL_S, bad)
        with pytest.raises(ValueError, match=settings.ENV_SENSOR_INTERVAL_S):
            settings.sensor_interval_from_env()


# --- lanes: tip and history run side by side ------------------------------------------------------

def test_pool_and_lanes_are_configured():
    assert bronze_ingest.op.pool == POOL
    config = yaml.safe_load((REPO / "config" / "dagster.yaml").read_text())["concurrency"]
    assert config["pools"] == {"granularity": "run", "default_limit": 1}
    limits = config["runs"]["tag_concurrency_limits"]
    assert {"key": RUN_KIND_TAG, "value": "tip", "limit": 1} in limits
    assert {"key": RUN_KIND_TAG, "value": "history", "limit": 1} in limits
    assert {"key": "dagster/backfill", "limit": 1} in limits
    assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True},
            "limit": 1} in limits


def test_the_sensor_gives_the_pool_its_two_slots_unless_set_by_hand(instance):
    ensure_pool_limit(instance)
    assert instance.event_log_storage.get_concurrency_info(POOL).slot_count == POOL_LIMIT
    instance.event_log_storage.set_concurrency_slots(POOL, 1)  # an operator's choice
    ensure_pool_limit(instance)
    assert instance.event_log_storage.get_concurrency_info(POOL).slot_count == 1


@pytest.fixture()
def queued_instance():
    """An instance with config/dagster.yaml's concurrency settings and a run queue."""
    config = yaml.safe_load((REPO / "config" / "dagster.yaml").read_text())
    overrides = {"concurrency": config["concurrency"],
                 "run_coordinator": {"module": "dagster._core.run_coordinator",
                                     "class": "QueuedRunCoordinator"}}
    with dg.instance_for_test(overrides=overrides) as inst:
        yield inst


def runs_dequeued(instance) -> set[str]:
    """The queued runs Dagster's run queue would launch now (the daemon's own selection: tag
    limits and pool slots)."""
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
        QueuedRunCoordinatorDaemon,
    )

    with QueuedRunCoordinatorDaemon(interval_seconds=1) as daemon:
        runs = daemon._get_runs_to_dequeue(instance, instance.get_concurrency_config(), None)
    return {run.run_id for run in runs}


def test_a_tip_run_starts_while_a_history_backfill_runs(queued_instance):
    instance = queued_instance
    job = defs.resolve_job_def(catch_up_job.name)
    instance.add_dynamic_partitions(BLOCK_RANGES.name, [key(b) for b in range(0, 160, SIZE)])

    def run(status, partition, **tags):
        made = instance.create_run_for_job(job, status=status, remote_job_origin=origin(job.name),
                                           tags={"dagster/partition": key(partition), **tags})
        assert made.run_op_concurrency.all_pools == {POOL}  # every bronze run is in the pool
        return made.run_id

    run(dg.DagsterRunStatus.STARTED, 0, **{"dagster/backfill": "bf1", RUN_KIND_TAG: "history"})
    tip = run(dg.DagsterRunStatus.QUEUED, 144, **{RUN_KIND_TAG: "tip"})
    second_tip = run(dg.DagsterRunStatus.QUEUED, 128, **{RUN_KIND_TAG: "tip"})
    second_history = run(dg.DagsterRunStatus.QUEUED, 16, **{RUN_KIND_TAG: "history"})
    backfill = run(dg.DagsterRunStatus.QUEUED, 32, **{"dagster/backfill": "bf2"})
    same_partition = run(dg.DagsterRunStatus.QUEUED, 0)  # e.g. from the UI, untagged
    # With the pool at its default limit of 1 (set when the daemon dequeued the backfill), the
    # backfill would hold up head-following.
    instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
    assert runs_dequeued(instance) == set()
    ensure_pool_limit(instance)
    # With its two slots: the first tip run starts next to the backfill; one tip run at a time,
    # and no second history run (or backfill) beside the running one.
    assert runs_dequeued(instance) == {tip}
    # With slots to spare, the lanes and the one-run-per-partition limit still hold; an
    # unclassified run of another partition (a UI materialization) is only bound by the pool.
    other = run(dg.DagsterRunStatus.QUEUED, 48)
    instance.event_log_storage.set_concurrency_slots(POOL, 10)
    dequeued = runs_dequeued(instance)
    assert dequeued == {tip, other}
    assert not {second_tip, second_history, backfill, same_partition} & dequeued


# --- bronze runs: retries, refusals, keys, rates --------------------------------------------------

def test_retry_policy_backs_off_and_refusals_are_not_retried():
    assert bronze_ingest.op.retry_policy == RETRY_POLICY
    assert RETRY_POLICY.max_retries == settings.INGEST_RETRIES
    assert RETRY_POLICY.backoff == dg.Backoff.EXPONENTIAL
    assert not is_refusal(RpcTransportError("connection refused"))
    assert not is_refusal(RuntimeError("Python worker failed to connect back"))
    assert is_refusal(LakeError("cannot read the Delta log"))
    assert is_refusal(SourceOptionError("bad option"))
    assert is_refusal(PartitionKeyError("bad key"))
    # As Spark reports an error of a task: wrapped in Java and Python tracebacks.
    wrapped = RuntimeError("py4j.protocol.Py4JJavaError: ...\n  ingestion.identity."
                           "ChainIdentityError: the node serves another chain")
    assert is_refusal(wrapped)


def attempts(result) -> int:
    events = result.all_events
    return 1 + sum(1 for e in events if e.event_type_value == "STEP_RESTARTED")


def test_a_transient_failure_is_retried_in_the_run(instance, monkeypatch):
    calls = []

    def flaky(context, *args):
        calls.append(context.retry_number)
        if len(calls) == 1:
            raise RpcTransportError("node unreachable")
        return [dg.MaterializeResult(asset_key=bronze_key(n), metadata={"stub": True})
                for n in ("blocks", "transactions", "logs")]

    monkeypatch.setattr(bronze, "_ingest", flaky)
    instance.add_dynamic_partitions(BLOCK_RANGES.name, [key(0)])
    result = dg.materialize([bronze_ingest], partition_key=key(0), instance=instance,
                            resources={"rpc": RpcResource(url="http://127.0.0.1:1"),
                                       "spark": SparkResource(),
                                       "lake": LakeResource(uri="/nonexistent")})
    assert result.success and calls == [0, 1] and attempts(result) == 2


@pytest.mark.parametrize(("bad", "fragment"), [
    ("000000000000-000000000007", "is blocks [0, 8), not a block range of this deployment"),
    ("000000000008-000000000023", "is blocks [8, 24), not a block range of this deployment"),
    ("blocks-0-15", "not a block-range key"),
])
def test_a_run_of_a_bad_partition_key_is_refused_naming_it(instance, tmp_path, monkeypatch,
                                                          bad, fragment):
    monkeypatch.setattr(SparkResource, "session",
                        lambda self: pytest.fail("Spark must not start for a bad key"))
    instance.add_dynamic_partitions(BLOCK_RANGES.name, [bad])  # as "Add partition" in the UI can
    result = dg.materialize(
        [bronze_ingest], partition_key=bad, instance=instance, raise_on_error=False,
        resources={"rpc": RpcResource(url="http://127.0.0.1:1"), "spark": SparkResource(),
                   "lake": LakeResource(uri=str(tmp_path / "lake"))})
    assert not result.success
    failure = result.failure_data_for_node("bronze_ingest")
    message = failure.user_failure_data.description
    assert message.startswith("refused (not retried): PartitionKeyError"), message
    assert repr(bad) in message and fragment in message, message
    assert "e.g. " in message or "expected e.g." in message
    assert attempts(result) == 1  # not retried
    assert not (tmp_path / "lake").exists()


def test_partition_keys_are_checked_where_they_are_added(instance):
    assert key_problem(key(16)) is None
    assert "partitions are 16 blocks starting at multiples of 16" in key_problem(
        "000000000004-000000000019")
    assert "e.g. 000000000000-000000000015" in key_problem("000000000004-000000000019")
    assert check_run_keys([key(16), key(0)]) == [BlockSpan(0, 16), BlockSpan(16, 32)]
    with pytest.raises(PartitionKeyError, match="overlaps the existing partition"):
        check_new_keys([key(0)], ["000000000000-000000000007"])
    assert add_partitions(instance, [key(0), key(16)]) == [key(0), key(16)]
    assert add_partitions(instance, [key(0), key(32)]) == [key(32)]
    with pytest.raises(PartitionKeyError, match="not a block range"):
        add_partitions(instance, ["000000000040-000000000047"])
    assert instance.get_dynamic_partitions(BLOCK_RANGES.name) == [key(0), key(16), key(32)]


def test_run_kind_and_rate(monkeypatch):
    assert run_kind({RUN_KIND_TAG: "tip"}) == "tip"
    assert run_kind({"dagster/backfill": "x"}) == "history"
    assert run_kind({"dagster/asset_partition_range_start": key(0)}) == "history"
    assert run_kind({"dagster/partition": key(0)}) is None
    with pytest.raises(SourceOptionError, match="must be one of tip, history"):
        run_kind({RUN_KIND_TAG: "fast"})
    assert requests_per_second({}, "tip") is None
    monkeypatch.setenv(settings.ENV_TIP_REQUESTS_PER_SECOND, "50")
    monkeypatch.setenv(settings.ENV_HISTORY_REQUESTS_PER_SECOND, "5")
    assert requests_per_second({}, "tip") == 50.0
    assert requests_per_second({}, "history") == 5.0
    assert requests_per_second({}, None) is None
    assert requests_per_second({"chainlake/requests_per_second": "2.5"}, "tip") == 2.5
    with pytest.raises(SourceOptionError, match="positive finite number, got '0'"):
        requests_per_second({"chainlake/requests_per_second": "0"}, "tip")


# --- metadata kinds -------------------------------------------------------------------------------

def test_asset_definitions_carry_owners_code_references_and_renderable_descriptions():
    for name in ("blocks", "transactions", "logs"):
        spec = defs.resolve_assets_def(bronze_key(name)).specs_by_key[bronze_key(name)]
        assert spec.owners == ["team:chainlake"]
        assert "<" not in spec.description and ">" not in spec.description
        assert f"`bronze/{name}`" in spec.description
        assert spec.metadata["dagster/table_name"] == f"bronze.{name}"
        refs = spec.metadata["dagster/code_references"].code_references
        assert refs and refs[0].file_path.endswith("assets/bronze.py")


def test_continuity_check_metadata_plots_only_measures(tmp_path):
    lake = BronzeLake(str(tmp_path / "lake"))
    put(lake, 0, 20)
    good = {r.asset_key.path[-1]: r.metadata for r in check_results(validate_range(lake, 0, 20))}
    assert good["blocks"]["first_offending_block"] == dg.MetadataValue.text("none")
    assert good["blocks"]["chain_id"] == dg.MetadataValue.text(str(CHAIN_ID))
    assert good["blocks"]["boundary_block"] == dg.MetadataValue.text("none")
    assert good["blocks"]["rows_validated"].value == 20  # a measure: plotted
    numbers = {k for k, v in good["blocks"].items()
               if isinstance(v, dg.IntMetadataValue | dg.FloatMetadataValue)}
    assert numbers == {"rows_validated"}
    put_gap = BronzeLake(str(tmp_path / "gap"))
    put(put_gap, 0, 7)
    put(put_gap, 9, 20)
    bad = {r.asset_key.path[-1]: r.metadata for r in check_results(validate_range(put_gap, 0, 20))}
    assert bad["blocks"]["first_offending_block"] == dg.MetadataValue.text("7")
    assert bad["blocks"]["offending_blocks"].value == "7..8"


# --- make dev -------------------------------------------------------------------------------------

def test_dev_honours_dagster_home_and_the_lake_and_takes_ports_and_block_time(tmp_path):
    env = {"DAGSTER_HOME": str(tmp_path / "home"), "CHAINLAKE_LAKE_URI": str(tmp_path / "lk")}
    stack = plan(["--devnet-port", "8611", "--ui-port", "3011", "--block-time", "0.5"], env)
    assert stack.dagster_home == tmp_path / "home"
    assert stack.lake == str(tmp_path / "lk")
    assert stack.copy_config  # a home without dagster.yaml gets ours
    assert stack.env["DAGSTER_HOME"] == str(tmp_path / "home")
    assert stack.env["CHAINLAKE_LAKE_URI"] == str(tmp_path / "lk")
    assert stack.env["CHAINLAKE_RPC_URL"] == "http://127.0.0.1:8611"
    assert stack.devnet_command()[-6:] == ["--devnet-port", "8611", "--blocks", "2500",
                                           "--block-time", "0.5"]
    assert stack.dagster_command()[-2:] == ["-p", "3011"]
    # A warm Spark for the runs, unless asked not to.
    assert stack.spark_command()[-3:] == ["spark-server", "--port", "15002"]
    assert stack.env["CHAINLAKE_SPARK_REMOTE"] == "sc://127.0.0.1:15002"
    cold = plan(["--no-spark-server"], env)
    assert cold.spark_port is None and "CHAINLAKE_SPARK_REMOTE" not in cold.env
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert not plan([], env).copy_config  # a home with its own dagster.yaml keeps it
    # Arguments win over the environment; without either, the repository's directories.
    other = plan(["--dagster-home", str(tmp_path / "x"), "--lake", str(tmp_path / "y")], env)
    assert (other.dagster_home, other.lake) == (tmp_path / "x", str(tmp_path / "y"))
    default = plan([], {})
    assert default.dagster_home == REPO / ".dagster_home" and default.lake == str(REPO / "lake")
    assert default.ui_port == DEFAULT_UI_PORT and default.copy_config
    for bad in (["--ui-port", "70000"], ["--block-time", "0"], ["--block-time", "nan"]):
        with pytest.raises(SystemExit):
            plan(bad, env)


def test_dev_refuses_a_port_in_use_before_starting_anything(tmp_path):
    from ingestion.devnet import free_port

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"),
               "CHAINLAKE_LAKE_URI": str(tmp_path / "lake")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "assets.dev", "--devnet-port", str(free_port()),
             "--ui-port", str(port)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 2, out + err
    assert f"port {port} for the Dagster UI is in use" in err and "--ui-port" in err, err
    assert not (tmp_path / "home").exists()


# --- for real: dagster dev, the daemon, a backfill from the UI and the sensor's tip runs ----------

LAUNCH = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
RUNS = """
{ runsOrError { ... on Runs { results {
  runId status startTime endTime tags { key value }
} } } }"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def gql(url: str, query: str, **variables):
    import httpx

    reply = httpx.post(url, json={"query": query, "variables": variables}, timeout=60).json()
    assert "errors" not in reply, reply
    return reply["data"]


@pytest.mark.slow
def test_a_history_backfill_and_a_tip_run_run_at_the_same_time(devnet, tmp_path):
    """The lanes in a real deployment (dagster dev: webserver, daemon, run queue): while the
    sensor's tip run is running, a backfill launched as the UI launches it starts too, instead of
    queueing behind it. The tip run is held at its partition's scope lock (what a second run of
    one partition waits on) so that it is still running when the backfill's run is dequeued."""
    import time

    from dagster_service import dagster_service

    from assets.demo import QUIET_DAGSTER_CLI
    from ingestion.checkpoint import scope_lock

    lake = BronzeLake(str(tmp_path / "lake"))
    env = {**QUIET_DAGSTER_CLI, "CHAINLAKE_RPC_URL": devnet.url, "CHAINLAKE_LAKE_URI": lake.root,
           "CHAINLAKE_PARTITION_SIZE": str(SIZE),
           # one tick: the tip run; no healing runs for the gap the backfill leaves below it
           settings.ENV_SENSOR_INTERVAL_S: "3600",
           # one task thread per run: two Spark sessions share two cores with the rest
           "CHAINLAKE_SPARK_MASTER": "local[1,3]"}
    tip_span = span_of(devnet.live_head(), SIZE)
    tip_key = tip_span.key
    keys = [key(b) for b in range(0, tip_span.start, SIZE)][:3]  # history below the tip partition
    assert keys, "the devnet is shorter than two partitions"
    deadline = time.monotonic() + 600
    together = False
    with dagster_service("dagster dev", tmp_path, env) as service:
        def runs() -> list[dict]:
            found = gql(service.graphql, RUNS)["runsOrError"]["results"]
            for run in found:
                run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
            return found

        def wait_for(condition, what: str):
            while time.monotonic() < deadline:
                service.alive()
                current = runs()
                if condition(current):
                    return current
                time.sleep(2)
            raise AssertionError(f"timed out waiting for {what}: "
                                 f"{[(r['status'], r['tags']) for r in runs()]}")

        def tip_runs(current):
            return [r for r in current if r["tags"].get(RUN_KIND_TAG) == "tip"]

        with scope_lock(lake.checkpoint_uri(f"partition-{tip_key}")):
            wait_for(lambda c: any(r["status"] == "STARTED" for r in tip_runs(c)),
                     "the sensor's tip run to start")
            with dg.DagsterInstance.from_config(str(service.home)) as inst:
                add_partitions(inst, keys)
            launched = gql(service.graphql, LAUNCH, params={
                "partitionNames": keys,
                "assetSelection": [{"path": ["bronze", t]} for t in TABLES],
            })["launchPartitionBackfill"]
            assert launched["__typename"] == "LaunchBackfillSuccess", launched
            backfill_id = launched["backfillId"]

            def of_backfill(current):
                return [r for r in current if r["tags"].get("dagster/backfill") == backfill_id]

            # The backfill's run starts while the tip run is still running (held at the lock).
            current = wait_for(lambda c: any(r["status"] in ("STARTED", "SUCCESS", "FAILURE")
                                             for r in of_backfill(c)),
                               "the backfill's run to start beside the tip run")
            (tip,) = tip_runs(current)
            together = tip["status"] == "STARTED"
        # Released: the tip run goes on. Wait for both to finish before stopping dagster dev.
        current = wait_for(lambda c: all(r["status"] in FINISHED
                                         for r in of_backfill(c) + tip_runs(c)),
                           "both runs to finish")
    assert together, [(r["status"], r["tags"]) for r in current]
    (backfill,) = of_backfill(current)
    assert backfill["status"] == "SUCCESS", backfill
    (tip,) = tip_runs(current)
    # The tip partition is open unless the safe head is its last block.
    is_open = tip_key if tip_span.end > devnet.live_head() + 1 else None
    assert tip["tags"].get(OPEN_PARTITION_TAG) == is_open
    blocks = lake.read("blocks").column("block_number").to_pylist()
    assert set(range(len(keys) * SIZE)) <= set(blocks) and len(blocks) == len(set(blocks))
    assert tip_span.start in blocks  # the tip run wrote its range
    # (Its continuity check may fail if it ran before the backfill wrote the block before its
    # range: a gap, until the sensor heals it, which this test keeps from ticking again.)


def test_contiguous_partitions_share_one_query():
    from assets.bronze import contiguous_groups
    from ingestion.ranges import BlockSpan

    spans = [BlockSpan(32, 48), BlockSpan(0, 16), BlockSpan(16, 32), BlockSpan(64, 80)]
    assert contiguous_groups(spans) == [[BlockSpan(0, 16), BlockSpan(16, 32), BlockSpan(32, 48)],
                                        [BlockSpan(64, 80)]]
    # Partitions wholly before CHAINLAKE_START_BLOCK have nothing to ingest: apart.
    assert contiguous_groups(spans[:3], first_block=20) == [
        [BlockSpan(0, 16)], [BlockSpan(16, 32), BlockSpan(32, 48)]]
