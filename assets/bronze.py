"""Bronze assets: one multi-asset run fills blocks, transactions, logs (and traces, when the node
serves a tracing API; ``CHAINLAKE_DATASETS`` chooses) for its block ranges, fetching each block once.

A run's partitions are ingested by one Spark ``availableNow`` query per run of contiguous
partitions (a backfill of 50 partitions is one query), up to the safe head captured when it
starts. A single partition has its own checkpoint (``<lake>/_checkpoints/partition-<key>``), a
range of them that of the range (``ingest-<start>-<end>``): the open tip partition is simply
materialized again later and continues where it stopped, a completed one re-materialized finds
nothing new, and a scope without checkpoint starts at the first block the lake lacks. Writes
replace exactly their block range, so any re-run leaves the tables identical.

Before anything else a run checks its partition keys (a key added by hand in the UI that is not
one of this deployment's ranges is refused, naming it). A transient failure (node unreachable, a
range that did not link up, a Spark worker lost) is retried in the same run with exponential
backoff (``RETRY_POLICY``); a refusal (another chain, a deep reorg, an unusable lake, bad
options or keys) fails at once. A retry that finds another run still ingesting the same
partition waits for it (``ingestion.checkpoint.scope_lock``) and then finds what is left.

Runs come in two kinds, read from the run tag ``chainlake/run_kind``: ``tip`` (the sensor's
head-following runs) and ``history`` (backfills, the sensor healing old gaps; a run with a
backfill or partition-range tag counts as history). ``config/dagster.yaml`` gives each kind its
own lane (a run-tag concurrency limit of 1), and ``CHAINLAKE_TIP_REQUESTS_PER_SECOND`` /
``CHAINLAKE_HISTORY_REQUESTS_PER_SECOND`` (or the run tag ``chainlake/requests_per_second``) its
own JSON-RPC rate, so a multi-day backfill never stops head-following.

Materialization metadata: per partition (a backfill run reports each of its partitions' own
figures) the block range, whether it is the open tip partition, blocks and rows written, blocks/s,
seconds per stage (fetch, transform, write: summed over Spark tasks; commit), JSON MB read and the
rows the table holds for the range; per run the table's total rows (``dagster/row_count``), its
URI and name, the stored tip, the lag behind the head observed after the write, the Delta
version, reorgs repaired and which partitions the run covered.
"""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg

from assets.partitions import BLOCK_RANGES, PartitionKeyError, check_run_keys
from assets.resources import LakeResource, RpcResource, SparkResource
from ingestion import continuity, settings
from ingestion.coverage import HISTORY, TIP, FileSpan, file_spans, rows_in_range, table_rows
from ingestion.errors import RefusedError
from ingestion.ingest import (
    IngestResult,
    default_scope,
    explain_failure,
    follow_head,
    run_ingest,
)
from ingestion.lake_path import LakePathError, check_lake_writable
from ingestion.ranges import BlockSpan
from ingestion.rpc import ChainIdMismatchError
from ingestion.schemas import CORE_TABLES, TABLES
from ingestion.sink import BronzeLake
from ingestion.source import SourceOptionError
from ingestion.transform import TransformError

# Every bronze run is in this pool (declared on the asset: Dagster computes a run's pools from its
# ops when the run is created, so one asset has one pool whatever launched it). Its limit is 2 —
# one tip lane plus one history lane (the run-tag limits in config/dagster.yaml) — set in the
# instance by chain_head_sensor when not set by hand: `dagster instance concurrency set
# chainlake_ingest N`.
POOL = "chainlake_ingest"
POOL_LIMIT = 2
GROUP = "bronze"
OWNERS = ["team:chainlake"]

# Run tags.
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
BACKFILL_TAG = "dagster/backfill"
RUN_KIND_TAG = "chainlake/run_kind"  # tip | history: the run's lane (config/dagster.yaml)
OPEN_PARTITION_TAG = "chainlake/open_partition"  # the open tip partition the run ingests into
REQUESTS_PER_SECOND_TAG = "chainlake/requests_per_second"  # this run's JSON-RPC rate
RUN_KINDS = (TIP, HISTORY)

RETRY_POLICY = dg.RetryPolicy(
    max_retries=settings.INGEST_RETRIES, delay=settings.INGEST_RETRY_DELAY_S,
    backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)

# Errors that retrying cannot fix: the input (node, lake, options, keys) is wrong.
_REFUSALS = (RefusedError, LakePathError, SourceOptionError, ChainIdMismatchError, TransformError,
             PartitionKeyError)
_REFUSAL_NAMES = {cls.__name__ for cls in _REFUSALS} | {
    "ChainIdentityError", "DeepReorgError", "LakeError"}  # as named inside Spark's errors


# The bronze multi-asset is one Spark query per run: it cannot be subset, so a selection (CLI,
# backfill) names all its tables; traces are then skipped when the node cannot serve them.
BRONZE_SELECTION = ",".join(f"bronze/{name}" for name in TABLES)


def bronze_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["bronze", table])


def table_name(table: str) -> str:
    return f"bronze.{table}"


def _column_schema(table: str) -> dg.TableSchema:
    from ingestion.schemas import type_label

    return dg.TableSchema(columns=[
        dg.TableColumn(c.name, type_label(c.type), description=c.doc,
                       constraints=dg.TableColumnConstraints(nullable=c.nullable))
        for c in TABLES[table].columns
    ])


BRONZE_SPECS = [
    dg.AssetSpec(
        bronze_key(name),
        description=(f"{TABLES[name].doc} Delta table `bronze/{name}` under the lake root "
                     f"(`{settings.ENV_LAKE_URI}`, the `lake` resource), partitioned by block "
                     "range; primary key " + ", ".join(f"`{k}`" for k in TABLES[name].key) + "."),
        group_name=GROUP,
        kinds={"spark", "delta"},
        owners=OWNERS,
        partitions_def=BLOCK_RANGES,
        # Traces come with the other tables when the node serves a tracing API (one fetch of
        # each block per run), and are skipped otherwise.
        skippable=name not in CORE_TABLES,
        metadata={"dagster/column_schema": _column_schema(name),
                  "dagster/table_name": table_name(name),
                  "primary_key": ", ".join(TABLES[name].key)},
    )
    for name in TABLES
]


def run_kind(tags: Mapping[str, str]) -> str | None:
    """``tip`` or ``history`` from the run's tags (a backfill or a partition-range run is
    history); None for a run nobody classified (e.g. one partition materialized from the UI)."""
    kind = tags.get(RUN_KIND_TAG)
    if kind:
        if kind not in RUN_KINDS:
            raise SourceOptionError(f"run tag {RUN_KIND_TAG} must be one of {', '.join(RUN_KINDS)}, "
                                    f"got {kind!r}")
        return kind
    if tags.get(BACKFILL_TAG) or tags.get(RANGE_START_TAG):
        return HISTORY
    return None


def requests_per_second(tags: Mapping[str, str], kind: str | None) -> float | None:
    """The run's JSON-RPC rate: the run tag, else the setting for its kind, else None (the
    ``rpc`` resource's own)."""
    try:
        explicit = tags.get(REQUESTS_PER_SECOND_TAG)
        if explicit:
            return settings.positive_rate(explicit, f"run tag {REQUESTS_PER_SECOND_TAG}")
        return settings.requests_per_second_for(kind)
    except ValueError as err:
        raise SourceOptionError(str(err)) from None


def is_refusal(error: BaseException) -> bool:
    """Would retrying fail the same way (bad node, lake, options or keys)?"""
    if isinstance(error, _REFUSALS):
        return True
    return explain_failure(error).split(":", 1)[0] in _REFUSAL_NAMES


@dataclass
class PartitionRun:
    """What one run did for one of its partitions."""

    span: BlockSpan
    result: IngestResult | None  # None: nothing to ingest (before CHAINLAKE_START_BLOCK)
    seconds: float = 0.0

    @property
    def open(self) -> bool:
        """Reaches past the safe head the run stopped at: more blocks will come."""
        return self.result is not None and self.result.target_end < self.span.end

    def state(self) -> str:
        a, b = self.span.start, self.span.end - 1
        if self.result is None:
            return (f"nothing to ingest: blocks {a}..{b} lie before "
                    f"{settings.ENV_START_BLOCK}={settings.start_block_from_env()}")
        first, safe = max(a, settings.start_block_from_env()), self.result.target_end
        if self.open:
            done = f"blocks {first}..{safe - 1}" if safe > first else "no block yet"
            return (f"open (tip partition): holds {done} of {a}..{b}, up to the safe head "
                    f"{safe - 1}; {self.span.end - safe:,} blocks are not safe yet, later runs "
                    f"add them")
        return f"complete: blocks {a}..{b} (the safe head was {safe - 1})"

    def stage_seconds(self) -> dict[str, float]:
        total = {"fetch": 0.0, "transform": 0.0, "write": 0.0, "commit": 0.0}
        for batch in self.result.batches if self.result else []:
            for stage, seconds in batch.stages.items():
                total[stage] = total.get(stage, 0.0) + seconds
        return total

    def json_bytes(self) -> int:
        return sum(b.json_bytes for b in self.result.batches) if self.result else 0


@dg.multi_asset(
    name="bronze_ingest",
    specs=BRONZE_SPECS,
    partitions_def=BLOCK_RANGES,
    # A backfill of history runs as one run over all its partitions: one Spark session and one
    # query per run of contiguous partitions, instead of paying start-up per partition.
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=POOL,
    retry_policy=RETRY_POLICY,
)
def bronze_ingest(context: dg.AssetExecutionContext, rpc: RpcResource, spark: SparkResource,
                  lake: LakeResource):
    """Ingest the selected block ranges from the node into the bronze Delta tables."""
    try:
        results = _ingest(context, rpc, spark, lake)
    except Exception as err:
        if is_refusal(err):
            raise dg.Failure(description=f"refused (not retried): {explain_failure(err)}",
                             allow_retries=False) from err
        if context.retry_number < settings.INGEST_RETRIES:
            context.log.warning(f"transient failure, retried with backoff "
                                f"(attempt {context.retry_number + 2} of "
                                f"{settings.INGEST_RETRIES + 1}): {explain_failure(err)}")
        raise
    yield from results


def _ingest(context: dg.AssetExecutionContext, rpc: RpcResource, spark: SparkResource,
            lake: LakeResource) -> list[dg.MaterializeResult]:
    tags = context.run.tags
    spans = check_run_keys(context.partition_keys)
    kind = run_kind(tags)
    rate = requests_per_second(tags, kind)
    bronze = lake.lake()
    check_lake_writable(bronze.root)  # a file, a read-only or full disk: now, not in Spark
    # A tip run follows the head (a bad setting fails here, before Spark), never near the tip
    # runs' maximum run time, past which run monitoring would fail the run.
    follow_s = (min(settings.tip_follow_seconds_from_env(),
                    settings.run_max_runtime_from_env(TIP) // 2) if kind == TIP else 0)
    # The JVM boots while the run checks the node and the lake and its head start fetches.
    session = spark.on_demand().start_in_background()
    continuity.preload()  # the run's blocking checks validate next: import GX meanwhile
    first_block = settings.start_block_from_env()
    if rate is not None:
        context.log.info(f"{kind or 'this'} run: at most {rate:g} JSON-RPC requests/s per task")
    runs: list[PartitionRun] = []
    for group in contiguous_groups(spans, first_block):
        start, end = max(group[0].start, first_block), group[-1].end
        if start >= end:  # before CHAINLAKE_START_BLOCK: nothing to ingest
            runs.extend(PartitionRun(span, None) for span in group)
            continue
        opts = rpc.source_options(start, end)
        # Tasks keep the configured size, not the partition's: each task is a new Python worker
        # (~0.6 CPU-s; a local session reuses none: it runs without PySpark's fork daemon,
        # for memory; the warm server runs it), and rows per partition are counted from the
        # lake, not from the tasks.
        opts = dataclasses.replace(
            opts,
            rpc_requests_per_second=rate if rate is not None else opts.rpc_requests_per_second)
        opts.validate()
        # One Spark query per run of contiguous partitions: a backfill pays the query's fixed
        # cost once, not per partition. Its checkpoint scope is that of the range (a single
        # partition keeps its own, so the open tip partition resumes where it stopped).
        label = group[0].key if len(group) == 1 else f"{group[0].key} … {group[-1].key}"
        scope = (f"partition-{group[0].key}" if len(group) == 1
                 else default_scope(start, end))

        def log_batch(p, label=label) -> None:
            rows = ", ".join(f"{n} {t}" for t, n in p.rows.items() if t != "blocks")
            context.log.info(f"{label}: blocks [{p.start}, {p.end}) — {rows}, Delta "
                             f"v{p.versions['blocks']}; {p.describe_stages()}")

        result = run_ingest(session, opts, bronze, scope=scope, on_batch=log_batch)
        if follow_s and len(group) == 1 and result.target_end < end:
            context.log.info(f"{label}: following the head for up to {follow_s}s")
            result = follow_head(session, opts, bronze, result, seconds=follow_s, scope=scope,
                                 on_batch=log_batch)
        if result.reorg is not None:
            context.log.warning(f"reorg of depth {result.reorg.depth} below the stored tip: "
                                f"re-ingested blocks {result.reorg.replaced} from the node")
        context.log.info(f"{label}: {result.blocks} new blocks up to {result.target_end - 1} "
                         f"(head {result.chain.head}, {result.chain.confirmations} confirmations)")
        for i, span in enumerate(group):
            part = result.within(span.start, span.end)
            if i == 0:  # the run's reorg repair is reported once
                part = dataclasses.replace(part, reorg=result.reorg)
            runs.append(PartitionRun(span, part, part.seconds))
    head, measured = _head_after_write(rpc, runs)
    tip = bronze.stored_tip()
    # The run tag says which partition stays open after this run ("none": the sensor thought it
    # would be open, but the safe head reached its end by the time the run started).
    open_keys = [r.span.key for r in runs if r.open]
    marked = open_keys[-1] if open_keys else ("none" if OPEN_PARTITION_TAG in tags else None)
    if marked is not None and tags.get(OPEN_PARTITION_TAG) != marked:
        context.instance.add_run_tags(context.run.run_id, {OPEN_PARTITION_TAG: marked})
    out = []
    written = {t for r in runs if r.result is not None for t in r.result.tables}
    for name in TABLES:
        if name not in written and name not in CORE_TABLES:
            continue  # traces from a node without a tracing API: not materialized (skippable)
        files = file_spans(bronze.file_stats(name))  # the Delta log once per table
        for run in runs:
            context.add_asset_metadata(_partition_metadata(bronze, name, run, files),
                                       asset_key=bronze_key(name), partition_key=run.span.key)
        out.append(dg.MaterializeResult(
            asset_key=bronze_key(name),
            metadata=_run_metadata(bronze, name, runs, kind, tip, head, measured, files)))
    return out


def contiguous_groups(spans: list[BlockSpan], first_block: int = 0) -> list[list[BlockSpan]]:
    """The spans in block order, grouped into runs of adjacent ones; spans wholly before
    ``first_block`` form groups of their own (they have nothing to ingest)."""
    groups: list[list[BlockSpan]] = []
    for span in sorted(spans, key=lambda s: s.start):
        empty = span.end <= first_block
        last = groups[-1] if groups else None
        if (last is not None and last[-1].end == span.start and not empty
                and last[-1].end > first_block):
            last.append(span)
        else:
            groups.append([span])
    return groups


def _head_after_write(rpc: RpcResource, runs: list[PartitionRun]) -> tuple[int | None, bool]:
    """The node's head now, after the writes (True), or, if it cannot be asked, the highest head
    the run saw when it started (False)."""
    try:
        return rpc.observe().head, True
    except Exception:  # noqa: BLE001 - the data is written; the lag is only a figure
        heads = [r.result.chain.head for r in runs if r.result is not None]
        return (max(heads) if heads else None), False


def _partition_metadata(lake: BronzeLake, name: str, run: PartitionRun,
                        files: list[FileSpan]) -> dict:
    """This partition's own figures (numbers are plotted per partition in the UI)."""
    result = run.result
    blocks = result.blocks if result else 0
    stages = run.stage_seconds()
    metadata = {
        "block_range": dg.MetadataValue.text(f"blocks {run.span.start}..{run.span.end - 1}"),
        "partition_state": dg.MetadataValue.text(run.state()),
        "open_partition": dg.MetadataValue.bool(run.open),
        "blocks_ingested": blocks,
        "rows_written": _rows_written(lake, name, result, files),
        "blocks_per_second": round(blocks / run.seconds, 1) if run.seconds > 0 else 0.0,
        **{f"{stage}_seconds": round(seconds, 3) for stage, seconds in stages.items()},
        "json_mb": round(run.json_bytes() / 1e6, 3),
        "dagster/partition_row_count": rows_in_range(lake, name, run.span.start, run.span.end,
                                                     files),
    }
    return metadata


def _rows_written(lake: BronzeLake, name: str, result: IngestResult | None,
                  files: list[FileSpan]) -> int:
    """Rows of the blocks this run wrote in this partition, counted in the lake (exact even when
    a Spark task straddled the partition's edge: tasks' own figures are then shared pro rata)."""
    if result is None:
        return 0
    return sum(rows_in_range(lake, name, b.start, b.end, files) for b in result.batches)


def _run_metadata(lake: BronzeLake, name: str, runs: list[PartitionRun], kind: str | None,
                  tip: int | None, head: int | None, measured: bool,
                  files: list[FileSpan]) -> dict:
    """Figures of the table and of the run as a whole (the same on each of its partitions)."""
    table = lake.table(name)
    reorgs = [r.result.reorg for r in runs if r.result is not None and r.result.reorg is not None]
    metadata = {
        "dagster/row_count": table_rows(lake, name, files),
        "dagster/table_name": dg.MetadataValue.text(table_name(name)),
        "dagster/uri": dg.MetadataValue.text(lake.table_uri(name)),
        "run_partitions": dg.MetadataValue.text(_describe(runs)),
        "run_kind": dg.MetadataValue.text(kind or "unclassified (no chainlake/run_kind tag)"),
        "stored_tip_block": dg.MetadataValue.text("none" if tip is None else str(tip)),
        "head_block": dg.MetadataValue.text(
            "unknown" if head is None else
            f"{head} ({'observed after the write' if measured else 'when the run started'})"),
        "delta_version": dg.MetadataValue.text(str(table.version()) if table is not None else "none"),
        "reorg_depth": max((r.depth for r in reorgs), default=0),
        "reorg_replaced_blocks": dg.MetadataValue.text(
            ", ".join(f"[{r.replaced[0]}, {r.replaced[1]})" for r in reorgs) or "none"),
    }
    if head is not None and tip is not None:
        # The run stops at the safe head it captured; the chain kept growing meanwhile. Never
        # negative: a node lagging behind the lake (a load balancer's stale backend) is 0 behind.
        metadata["lag_behind_head"] = max(0, head - tip)
    return metadata


def _describe(runs: list[PartitionRun]) -> str:
    spans = [r.span for r in runs]
    blocks = f"blocks {spans[0].start}..{spans[-1].end - 1}"
    if len(spans) == 1:
        return f"this run covered one partition, {spans[0].key} ({blocks})"
    return (f"this run covered {len(spans)} partitions, {spans[0].key} … {spans[-1].key} "
            f"({blocks}); the block, row and speed figures are this partition's own")
