"""Bronze assets: one multi-asset run fills blocks, transactions and logs for its block ranges.

Each partition is one Spark ``availableNow`` run of the `evm` bundle stream over its range, up to
the safe head, with its own checkpoint (``<lake>/_checkpoints/partition-<key>``): the open tip
partition is simply materialized again later and continues where it stopped, and a completed
one re-materialized finds nothing new. Writes replace exactly their block range, so any re-run
leaves the tables identical.
"""

import time

import dagster as dg

from assets.partitions import BLOCK_RANGES
from assets.resources import LakeResource, RpcResource, SparkResource
from ingestion import settings
from ingestion.ingest import IngestResult, run_ingest
from ingestion.lake_path import check_lake_writable
from ingestion.ranges import parse_key
from ingestion.schemas import TABLES

POOL = "chainlake_ingest"  # one ingestion run at a time: never two runs on one node or range
GROUP = "bronze"


def bronze_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["bronze", table])


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
        description=f"{TABLES[name].doc} Delta table at <lake>/bronze/{name}.",
        group_name=GROUP,
        kinds={"spark", "delta"},
        partitions_def=BLOCK_RANGES,
        metadata={"dagster/column_schema": _column_schema(name),
                  "primary_key": ", ".join(TABLES[name].key)},
    )
    for name in TABLES
]


@dg.multi_asset(
    name="bronze_ingest",
    specs=BRONZE_SPECS,
    partitions_def=BLOCK_RANGES,
    # A backfill of history runs as one run over all its partitions (one Spark session, one
    # query per partition), instead of paying Spark start-up per partition.
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=POOL,
)
def bronze_ingest(context: dg.AssetExecutionContext, rpc: RpcResource, spark: SparkResource,
                  lake: LakeResource):
    """Ingest the selected block ranges from the node into the bronze Delta tables."""
    bronze = lake.lake()
    check_lake_writable(bronze.root)  # a file, a read-only or full disk: now, not in Spark
    session = spark.session()
    first_block = settings.start_block_from_env()
    results: list[IngestResult] = []
    started = time.monotonic()
    for key in context.partition_keys:
        span = parse_key(key)
        start = max(span.start, first_block)
        if start >= span.end:
            continue
        opts = rpc.source_options(start, span.end)

        def log_batch(p, key=key) -> None:
            context.log.info(f"{key}: blocks [{p.start}, {p.end}) — {p.rows['transactions']} txs, "
                             f"{p.rows['logs']} logs, Delta v{p.versions['blocks']}")

        result = run_ingest(session, opts, bronze, scope=f"partition-{key}", on_batch=log_batch)
        if result.reorg is not None:
            context.log.warning(f"reorg of depth {result.reorg.depth} below the stored tip: "
                                f"re-ingested blocks {result.reorg.replaced} from the node")
        context.log.info(f"{key}: {result.blocks} new blocks up to {result.target_end - 1} "
                         f"(head {result.chain.head}, {result.chain.confirmations} confirmations)")
        results.append(result)
    seconds = time.monotonic() - started
    head = results[-1].chain.head if results else None
    tip = bronze.stored_tip()
    blocks = sum(r.blocks for r in results)
    reorgs = [r.reorg for r in results if r.reorg is not None]
    for name in TABLES:
        table = bronze.table(name)
        yield dg.MaterializeResult(
            asset_key=bronze_key(name),
            metadata={
                "block_range": dg.MetadataValue.text(_describe(context.partition_keys)),
                "partitions": len(context.partition_keys),
                "blocks_ingested": blocks,
                "rows_written": sum(r.rows(name) for r in results),
                "blocks_per_second": round(blocks / seconds, 1) if seconds else 0.0,
                "stored_tip_block": tip if tip is not None else -1,
                "lag_behind_head": (head - tip) if head is not None and tip is not None else -1,
                "delta_version": table.version() if table is not None else -1,
                "reorg_depth": max((r.depth for r in reorgs), default=0),
                "reorg_replaced_blocks": dg.MetadataValue.text(
                    ", ".join(f"[{r.replaced[0]}, {r.replaced[1]})" for r in reorgs) or "none"),
                "table_uri": dg.MetadataValue.path(bronze.table_uri(name)),
            },
        )


def _describe(keys: list[str]) -> str:
    spans = sorted(parse_key(k) for k in keys)
    return f"blocks {spans[0].start}..{spans[-1].end - 1} ({len(spans)} partitions)"
