"""Following the chain head: a sensor that adds range partitions and requests catch-up runs,
and a schedule that does the same periodically for deployments that prefer schedules.

The lake is the truth, not a cursor of what was requested. Each tick:

1. asks the node for its safe head (a skip naming the redacted URL if it cannot);
2. adds the partitions of the ranges that have started (keys checked: aligned, no overlap);
3. reads which blocks the lake lacks up to the safe head (``ingestion.coverage``: the ``blocks``
   table's file statistics), from the lowest stored block (empty lake: the tip partition) —
   history below that is for backfills;
4. plans one catch-up per partition with missing blocks: ``tip`` work for the partitions nearest
   the head, ``history`` for older gaps;
5. drops every partition that a run already queued or in progress covers (any run of the bronze
   assets: sensor, schedule, UI, backfill — read from the instance, by partition and range tags),
   and requests at most one history run at a time;
6. requests the rest, each tagged with its lane (``chainlake/run_kind``), the safe head, the first
   missing block and, for the open tip partition, ``chainlake/open_partition``.

A run that fails, is cancelled or crashes leaves its blocks missing, so the next tick asks for
them again; and no partition ever gets a second run while one is queued or running. Run keys are
``<partition>@<tick>``: unique per tick (Dagster would never run a repeated key again), the
same if a tick is evaluated twice.
"""

from dataclasses import dataclass

import dagster as dg

from assets.bronze import (
    OPEN_PARTITION_TAG,
    POOL,
    POOL_LIMIT,
    RUN_KIND_TAG,
    bronze_ingest,
    bronze_key,
    run_kind,
)
from assets.checks import run_block_range
from assets.partitions import (
    BLOCK_RANGES,
    check_new_keys,
    invalid_keys,
    keys_through,
    partition_size,
)
from assets.resources import LakeResource, RpcResource
from assets.silver import SILVER_ASSETS
from ingestion import settings
from ingestion.coverage import HISTORY, TIP, CatchUp, plan_for_lake
from ingestion.ranges import BlockSpan
from ingestion.rpc import RpcError, redact_url
from ingestion.schemas import TABLES
from ingestion.sink import BronzeLake

# Bronze and silver in one run: silver is fresh as soon as bronze is, without a second run per
# catch-up (the choice is explained in assets/silver.py).
catch_up_job = dg.define_asset_job(
    "bronze_catch_up", selection=dg.AssetSelection.assets(bronze_ingest, *SILVER_ASSETS),
    description="Ingest the blocks the lake lacks up to the safe head (the tip partitions, and "
                "gaps a failed or cancelled run left behind), then build the silver tables of "
                "the same partitions.",
)

SENSOR_INTERVAL_S = settings.sensor_interval_from_env()
TRIGGER_TAG = "chainlake/trigger"
SAFE_HEAD_TAG = "chainlake/safe_head"
FIRST_MISSING_TAG = "chainlake/first_missing_block"
MAX_RUNTIME_TAG = "dagster/max_runtime"  # seconds; enforced by the daemon's run monitoring
# History work the sensor has queued or running at once (plus any backfill: see _choose).
MAX_HISTORY_RUNS = 1
# Runs that may still write: queued, not started, starting, started, being cancelled.
IN_FLIGHT_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
                      dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
                      dg.DagsterRunStatus.CANCELING]
BRONZE_KEYS = frozenset(bronze_key(name) for name in TABLES)


@dataclass(frozen=True)
class InFlight:
    """A run of the bronze assets that is queued or running."""

    run_id: str
    status: str
    span: BlockSpan | None  # the blocks of its partition(s); None: no readable partition tag
    kind: str | None  # tip, history or None (unclassified, e.g. a UI materialization)

    def describe(self) -> str:
        return f"run {self.run_id[:8]} ({self.kind or 'unclassified'}, {self.status})"


def in_flight_runs(instance: dg.DagsterInstance) -> list[InFlight]:
    """Queued and running runs that write the bronze tables, whoever launched them."""
    found = []
    for run in instance.get_runs(dg.RunsFilter(statuses=IN_FLIGHT_STATUSES)):
        writes_bronze = run.job_name == catch_up_job.name or bool(
            run.asset_selection and set(run.asset_selection) & BRONZE_KEYS)
        if not writes_bronze:
            continue
        try:
            span = run_block_range(run.tags)
        except ValueError:  # a key that is no block range: that run is refused when it starts
            span = None
        try:
            kind = run_kind(run.tags)
        except ValueError:
            kind = None
        found.append(InFlight(run.run_id, run.status.value, span, kind))
    return found


def choose(plan: list[CatchUp], in_flight: list[InFlight],
           max_history: int = MAX_HISTORY_RUNS) -> tuple[list[CatchUp], list[str]]:
    """The catch-ups to request now, and why the others wait.

    Never a partition that a queued or running run covers; history only while fewer than
    ``max_history`` runs that are not tip runs (history, backfills, UI runs) are in flight, so
    the sensor's own healing never takes the second pool slot from the tip lane.
    """
    chosen: list[CatchUp] = []
    waiting: list[str] = []
    busy_history = sum(1 for run in in_flight if run.kind != TIP)
    for c in plan:
        covering = [run for run in in_flight if run.span is not None
                    and run.span.start < c.span.end and c.span.start < run.span.end]
        if covering:
            waiting.append(f"{c.describe()}: {covering[0].describe()} covers it")
            continue
        if c.kind == HISTORY:
            if busy_history >= max_history:
                waiting.append(f"{c.describe()}: the history lane is busy")
                continue
            busy_history += 1
        chosen.append(c)
    return chosen, waiting


def run_request(c: CatchUp, safe_last: int, trigger: str, run_key: str) -> dg.RunRequest:
    tags = {TRIGGER_TAG: trigger, RUN_KIND_TAG: c.kind, SAFE_HEAD_TAG: str(safe_last),
            FIRST_MISSING_TAG: str(c.first_missing),
            # run monitoring fails a run whose worker died by this limit (settings: why)
            MAX_RUNTIME_TAG: str(settings.run_max_runtime_from_env(c.kind))}
    if c.open:
        tags[OPEN_PARTITION_TAG] = c.key
    return dg.RunRequest(run_key=run_key, partition_key=c.key, tags=tags)


def ensure_pool_limit(instance: dg.DagsterInstance, log=None) -> None:
    """Give the bronze pool its two slots (tip lane + history lane) unless someone set its limit
    by hand; ``concurrency: pools: default_limit`` (1) stays the limit of every other pool."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return
    current = {p.name: p for p in storage.get_pool_limits()}.get(POOL)
    if current is not None and (not current.from_default or current.limit == POOL_LIMIT):
        return
    storage.set_concurrency_slots(POOL, POOL_LIMIT)
    if log is not None:
        log.info(f"pool {POOL}: limit set to {POOL_LIMIT} (one tip and one history run at a "
                 f"time; change it with `dagster instance concurrency set {POOL} N`)")


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


def new_partition_keys(instance: dg.DagsterInstance, safe_last: int, log=None
                       ) -> tuple[list[str], set[str]]:
    """Keys of started ranges the instance lacks that may be added, and every key that exists
    (or will) afterwards. Keys that clash with a bad existing key are left out, with a warning,
    as are existing keys that are not ranges of this deployment."""
    existing = instance.get_dynamic_partitions(BLOCK_RANGES.name)
    for key, problem in invalid_keys(existing).items():
        if log is not None:
            log.warning(f"ignoring partition {key}: {problem}; delete it")
    new = []
    for key in keys_through(safe_last):
        if key in existing:
            continue
        try:
            check_new_keys([key], existing)
        except ValueError as err:
            if log is not None:
                log.warning(f"not adding partition {key}: {err}")
            continue
        new.append(key)
    return new, set(existing) | set(new)


def _sensor_lake(context: dg.SensorEvaluationContext) -> BronzeLake:
    """The lake the code location's ``lake`` resource points at (``CHAINLAKE_LAKE_URI``); a
    caller that builds the context with a ``lake`` resource (tests) gets that one."""
    if "lake" in (context.resource_defs or {}):
        return context.resources.lake.lake()
    return BronzeLake(settings.lake_uri_from_env())


def plan(lake: BronzeLake, safe_last: int) -> list[CatchUp]:
    return plan_for_lake(lake, safe_last + 1, partition_size(),
                         start_block=settings.start_block_from_env(),
                         head_partitions=settings.CATCH_UP_HEAD_PARTITIONS)


@dg.sensor(
    name="chain_head_sensor",
    job=catch_up_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    # Following the head is the point of a deployment; the schedule is the opt-in alternative.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Polls the chain head and the lake: adds block-range partitions as the chain "
                "grows and requests a run for each partition whose blocks up to the safe head "
                "the lake lacks (tip partitions, and gaps failed or cancelled runs left), never "
                "for one that a queued or running run already covers. Interval: "
                f"{settings.ENV_SENSOR_INTERVAL_S} (default {settings.DEFAULT_SENSOR_INTERVAL_S} s).",
)
def chain_head_sensor(context: dg.SensorEvaluationContext, rpc: RpcResource):
    safe_last = _safe_last(rpc)
    if isinstance(safe_last, dg.SkipReason):
        return safe_last
    instance = context.instance
    ensure_pool_limit(instance, context.log)
    new_keys, known = new_partition_keys(instance, safe_last, context.log)
    add = [BLOCK_RANGES.build_add_request(new_keys)] if new_keys else []
    lake = _sensor_lake(context)
    try:
        catch_ups = plan(lake, safe_last)
    except Exception as err:  # noqa: BLE001 - an unreadable lake: say so, keep ticking
        return dg.SensorResult(dynamic_partitions_requests=add, skip_reason=dg.SkipReason(
            f"cannot read the lake {lake.root}: {err}"))
    absent = [c for c in catch_ups if c.key not in known]
    chosen, waiting = choose([c for c in catch_ups if c.key in known], in_flight_runs(instance))
    waiting += [f"{c.describe()}: no such partition (see the warnings)" for c in absent]
    if not chosen:
        reason = (f"no new safe block: the lake holds every block up to the safe head {safe_last}"
                  if not catch_ups else "waiting: " + "; ".join(waiting))
        return dg.SensorResult(dynamic_partitions_requests=add, skip_reason=dg.SkipReason(reason))
    tick = int(context.cursor) + 1 if (context.cursor or "").isdigit() else 1
    for c in chosen:
        context.log.info(f"requesting {c.describe()} (safe head {safe_last})")
    for line in waiting:
        context.log.info(f"waiting: {line}")
    return dg.SensorResult(
        run_requests=[run_request(c, safe_last, "chain_head_sensor", f"{c.key}@{tick}")
                      for c in chosen],
        dynamic_partitions_requests=add, cursor=str(tick))


@dg.schedule(
    name="catch_up_schedule",
    cron_schedule="*/15 * * * *",
    job=catch_up_job,
    description="Every 15 minutes: add new block-range partitions and request runs for the "
                "blocks the lake lacks up to the safe head, like chain_head_sensor (an "
                "alternative to it).",
)
def catch_up_schedule(context: dg.ScheduleEvaluationContext, rpc: RpcResource,
                      lake: LakeResource):
    safe_last = _safe_last(rpc)
    if isinstance(safe_last, dg.SkipReason):
        return safe_last
    instance = context.instance
    new_keys, known = new_partition_keys(instance, safe_last, context.log)
    if new_keys:  # schedules cannot return partition requests: add them directly
        instance.add_dynamic_partitions(BLOCK_RANGES.name, new_keys)
    chosen, waiting = choose([c for c in plan(lake.lake(), safe_last) if c.key in known],
                             in_flight_runs(instance))
    if not chosen:
        return dg.SkipReason("waiting: " + "; ".join(waiting) if waiting else
                             f"no new safe block: the lake holds every block up to {safe_last}")
    stamp = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time \
        else str(safe_last)
    return [run_request(c, safe_last, "catch_up_schedule", f"{c.key}@{stamp}") for c in chosen]
