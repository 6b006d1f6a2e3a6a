"""Following the chain head: a sensor that adds range partitions and requests catch-up runs,
and a schedule that does the same periodically for deployments that prefer schedules."""

import dagster as dg

from assets.bronze import bronze_ingest
from assets.partitions import BLOCK_RANGES, keys_through, partition_size
from assets.resources import LakeResource, RpcResource
from ingestion.ranges import span_of
from ingestion.rpc import RpcError, redact_url

catch_up_job = dg.define_asset_job(
    "bronze_catch_up", selection=dg.AssetSelection.assets(bronze_ingest),
    description="Ingest the newest blocks into the bronze tables (tip partition and any "
                "partition the head moved through since the last run).",
)

# Request a catch-up run once at least this many new safe blocks exist.
MIN_NEW_BLOCKS = 1
SENSOR_INTERVAL_S = 30
# After a long pause, catch up at most this many partitions at the head; older gaps are for
# backfills (and show up in the continuity checks).
MAX_CATCH_UP_PARTITIONS = 3


def _safe_last(rpc: RpcResource) -> int | dg.SkipReason:
    from ingestion.source import SourceOptionError

    try:
        view = rpc.observe()
    except RpcError as err:
        return dg.SkipReason(f"cannot reach the RPC node {redact_url(rpc.url)}: {err}")
    except SourceOptionError as err:  # a bad URL or setting of the rpc resource: fix the config
        return dg.SkipReason(f"invalid rpc resource configuration (url {redact_url(rpc.url)}): "
                             f"{err}")
    if view.safe_end == 0:
        return dg.SkipReason(f"no block is {view.confirmations} confirmations deep yet")
    return view.safe_end - 1


def _new_partition_keys(instance: dg.DagsterInstance, safe_last: int) -> list[str]:
    existing = set(instance.get_dynamic_partitions(BLOCK_RANGES.name))
    return [k for k in keys_through(safe_last) if k not in existing]


def catch_up_keys(first_new_block: int | None, safe_last: int) -> list[str]:
    """Partitions a catch-up must run: from the one holding ``first_new_block`` to the tip.

    Without a known starting point only the tip is caught up; history is for backfills.
    """
    size = partition_size()
    tip = span_of(safe_last, size)
    if first_new_block is None or first_new_block > safe_last:
        return [tip.key]
    first = span_of(max(first_new_block, tip.end - MAX_CATCH_UP_PARTITIONS * size), size)
    return [span_of(b, size).key for b in range(first.start, tip.end, size)]


@dg.sensor(
    name="chain_head_sensor",
    job=catch_up_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    # Following the head is the point of a deployment; the schedule is the opt-in alternative.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Polls the chain head: adds block-range partitions as the chain grows and "
                "requests one catch-up run per range with new safe blocks (run keys + cursor: "
                "nothing is requested twice).",
)
def chain_head_sensor(context: dg.SensorEvaluationContext, rpc: RpcResource):
    safe_last = _safe_last(rpc)
    if isinstance(safe_last, dg.SkipReason):
        return safe_last
    requested_through = int(context.cursor) if context.cursor else None
    new_keys = _new_partition_keys(context.instance, safe_last)
    add = [BLOCK_RANGES.build_add_request(new_keys)] if new_keys else []
    if requested_through is not None and safe_last - requested_through < MIN_NEW_BLOCKS:
        return dg.SensorResult(
            dynamic_partitions_requests=add,
            skip_reason=dg.SkipReason(f"no new safe block since {requested_through}"))
    first_new = None if requested_through is None else requested_through + 1
    runs = [
        dg.RunRequest(run_key=f"{key}@{safe_last}", partition_key=key,
                      tags={"chainlake/trigger": "chain_head_sensor",
                            "chainlake/safe_head": str(safe_last)})
        for key in catch_up_keys(first_new, safe_last)
    ]
    return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=add,
                           cursor=str(safe_last))


@dg.schedule(
    name="catch_up_schedule",
    cron_schedule="*/15 * * * *",
    job=catch_up_job,
    description="Every 15 minutes: add new block-range partitions and catch up from the stored "
                "tip to the safe head (an alternative to chain_head_sensor).",
)
def catch_up_schedule(context: dg.ScheduleEvaluationContext, rpc: RpcResource,
                      lake: LakeResource):
    safe_last = _safe_last(rpc)
    if isinstance(safe_last, dg.SkipReason):
        return safe_last
    new_keys = _new_partition_keys(context.instance, safe_last)
    if new_keys:  # schedules cannot return partition requests: add them directly
        context.instance.add_dynamic_partitions(BLOCK_RANGES.name, new_keys)
    tip = lake.lake().stored_tip()
    first_new = None if tip is None else tip + 1
    stamp = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time \
        else str(safe_last)
    return [
        dg.RunRequest(run_key=f"{key}@{stamp}", partition_key=key,
                      tags={"chainlake/trigger": "catch_up_schedule"})
        for key in catch_up_keys(first_new, safe_last)
    ]
