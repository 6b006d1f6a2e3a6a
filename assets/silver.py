"""Silver assets: ``silver/token_transfers``, ``silver/contracts``, ``silver/tokens``.

Thin wiring over ``ingestion.silver`` (which builds and checks them without Dagster):

- ``silver/token_transfers`` (deps ``bronze/logs``): ERC-20/721/1155 transfers decoded from logs;
- ``silver/contracts`` (deps ``bronze/traces``): one row per contract creation that took effect;
- ``silver/tokens`` (deps ``silver/contracts``): ERC-20/721 metadata read with ``eth_call`` at
  each token contract's creation block.

All three are partitioned like bronze (``block_ranges``), run a backfill as one run
(``BackfillPolicy.single_run()``) and report one materialization per partition with its row
counts. Each has a blocking check (``ingestion.silver.check_*``): every transfer log decoded
exactly once and nothing else; one contract per successful create trace; one token row per
ERC-20/721 contract created in the range. A failure names the first offending keys.

**When they run: in the same run as bronze.** The sensor's and the schedule's job
(``bronze_catch_up``, ``sensors/catchup.py``) selects bronze and silver together, so a
head-following run ingests the new blocks, runs the bronze continuity checks and then builds
silver for the same partitions, in one process and one run: silver is fresh seconds after
bronze, and the run queue holds one run per catch-up instead of two. Declarative automation
(``AutomationCondition.eager()`` on silver) was the alternative: every bronze materialization
would then start a second run, paying a run's fixed cost (code location load, step processes:
20-25 s here) for a step of under a second, doubling the runs in the queue and the instance's
event log, and needing the automation daemon and its own concurrency rules beside the sensor's
lanes. In the same run the bronze checks being blocking also means that silver is never built
from bronze that failed continuity. A silver failure fails the run; the next head-following run
of the partition builds again everything the failed one missed (below).

**Cost per head-following run.** Each run re-materializes the open tip partition; rebuilding
its whole range every time would grow with the partition. The build is watermarked by the
partition key: it rebuilds only the blocks whose source rows changed since it last built the
partition, read from the source table's Delta history (every chainlake commit records the block
range it replaced), so a tip run decodes the new blocks only (and a reorg repaired in bronze is
rebuilt, being a range replace like any other). A materialization of a complete partition
finds nothing changed and writes nothing.

**Which blocks.** A step reads only its partitions' block ranges, clipped at the start to
``CHAINLAKE_START_BLOCK`` and at the end to the bronze stored tip + 1 (like the bronze checks);
the checks read the run's range from its tags (``dagster/partition``, or the partition-range
tags of a backfill run), see ``assets/checks.py``.

Without a tracing API the bronze run does not materialize ``bronze/traces``, and Dagster skips
``silver/contracts`` and ``silver/tokens`` (their upstream was not materialized) while
``silver/token_transfers`` runs.
"""

import dataclasses
from collections.abc import Callable

import dagster as dg

from assets.bronze import (
    OWNERS,
    RETRY_POLICY,
    bronze_key,
    is_refusal,
    requests_per_second,
    run_kind,
)
from assets.checks import blocks_to_check, run_block_range
from assets.partitions import BLOCK_RANGES, check_run_keys
from assets.resources import LakeResource, RpcResource
from ingestion import settings
from ingestion.coverage import ranges_text
from ingestion.ingest import explain_failure
from ingestion.ranges import BlockSpan
from ingestion.schemas import SILVER_TABLES, type_label
from ingestion.silver import (
    CheckReport,
    SilverBuild,
    SilverLake,
    build_contracts,
    build_token_transfers,
    build_tokens,
    check_contracts,
    check_token_transfers,
    check_tokens,
)
from ingestion.sink import BronzeLake

GROUP = "silver"
# Run tag: ``full`` rebuilds the run's partitions from bronze whatever their watermark says (a
# silver table changed by hand, a fixed decoder), e.g. a backfill launched with this tag.
REBUILD_TAG = "chainlake/silver_rebuild"


SILVER_SELECTION = ",".join(f"silver/{name}" for name in SILVER_TABLES)


def silver_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["silver", table])


def table_name(table: str) -> str:
    return f"silver.{table}"


def _asset_metadata(table: str) -> dict:
    columns = [dg.TableColumn(c.name, type_label(c.type), description=c.doc,
                              constraints=dg.TableColumnConstraints(nullable=c.nullable))
               for c in SILVER_TABLES[table].columns]
    return {"dagster/column_schema": dg.TableSchema(columns=columns),
            "dagster/table_name": table_name(table),
            "primary_key": ", ".join(SILVER_TABLES[table].key)}


def _description(table: str, source: str) -> str:
    return (f"{SILVER_TABLES[table].doc} Delta table `silver/{table}` under the lake root, "
            f"built from {source} of the same block range; primary key "
            + ", ".join(f"`{k}`" for k in SILVER_TABLES[table].key) + ".")


def _clip(span: BlockSpan, tip: int | None) -> tuple[int, int] | None:
    """The partition's blocks to build: from ``CHAINLAKE_START_BLOCK``, up to the stored tip
    (the same clipping as the bronze checks' ``blocks_to_check``); None when none is stored."""
    if tip is None:
        return None
    start, end = max(span.start, settings.start_block_from_env()), min(span.end, tip + 1)
    return (start, end) if start < end else None


def _partition_metadata(span: BlockSpan, build: SilverBuild | None) -> dict:
    if build is None:
        return {"block_range": dg.MetadataValue.text(f"blocks {span.start}..{span.end - 1}"),
                "rebuilt_blocks": dg.MetadataValue.text("none: no bronze block stored"),
                "rows_written": 0, "dagster/partition_row_count": 0}
    return {
        "block_range": dg.MetadataValue.text(f"blocks {build.start}..{build.end - 1}"),
        "rebuilt_blocks": dg.MetadataValue.text(
            ranges_text(build.rebuilt) if build.rebuilt else "none: nothing changed in the source"),
        "rows_written": build.rows_written,
        "build_seconds": round(build.seconds, 3),
        "dagster/partition_row_count": build.rows_in_range,
    }


def _materialize(context: dg.AssetExecutionContext, lake_uri: str, table: str,
                 build: Callable[[int, int, str, bool], SilverBuild]) -> dg.MaterializeResult:
    """Build ``table`` for each partition of the run (watermarked by the partition key; all of
    it with the run tag ``chainlake/silver_rebuild=full``) and report one materialization per
    partition."""
    full = context.run.tags.get(REBUILD_TAG) == "full"
    try:
        spans = check_run_keys(context.partition_keys)
        tip = BronzeLake(lake_uri).stored_tip()
        for span in spans:
            blocks = _clip(span, tip)
            # The watermark is the partition's: a full rebuild records a fresh one too.
            done = build(*blocks, span.key, full) if blocks is not None else None
            if done is not None:
                context.log.info(done.describe())
            context.add_asset_metadata(_partition_metadata(span, done),
                                       asset_key=silver_key(table), partition_key=span.key)
    except Exception as err:
        if is_refusal(err):
            raise dg.Failure(description=f"refused (not retried): {explain_failure(err)}",
                             allow_retries=False) from err
        raise
    silver = SilverLake(lake_uri)
    dt = silver.table(table)
    return dg.MaterializeResult(asset_key=silver_key(table), metadata={
        "dagster/row_count": dt.to_pyarrow_dataset().count_rows() if dt is not None else 0,
        "dagster/uri": dg.MetadataValue.text(silver.table_uri(table)),
        "dagster/table_name": dg.MetadataValue.text(table_name(table)),
        "delta_version": dg.MetadataValue.text(str(dt.version()) if dt is not None else "none"),
    })


def _asset(table: str, dep: dg.AssetKey, source: str, description_extra: str = ""):
    """The silver asset of ``table`` (a one-spec multi-asset: the same policies as bronze's)."""
    spec = dg.AssetSpec(
        silver_key(table),
        deps=[dep],
        description=_description(table, source) + description_extra,
        group_name=GROUP,
        kinds={"delta"},
        owners=OWNERS,
        partitions_def=BLOCK_RANGES,
        metadata=_asset_metadata(table),
    )
    return dg.multi_asset(
        name=f"silver_{table}",
        specs=[spec],
        partitions_def=BLOCK_RANGES,
        # A backfill is one run: each partition is built in turn (its own watermark).
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=RETRY_POLICY,
    )


@_asset("token_transfers", bronze_key("logs"), "the bronze logs")
def silver_token_transfers(context: dg.AssetExecutionContext, lake: LakeResource):
    return _materialize(context, lake.uri, "token_transfers",
                        lambda a, b, key, full: build_token_transfers(
                            lake.uri, a, b, watermark=key, full=full))


@_asset("contracts", bronze_key("traces"), "the bronze traces",
        " Skipped when the run did not materialize bronze/traces (no tracing API).")
def silver_contracts(context: dg.AssetExecutionContext, lake: LakeResource):
    return _materialize(context, lake.uri, "contracts",
                        lambda a, b, key, full: build_contracts(lake.uri, a, b, watermark=key,
                                                                full=full))


@_asset("tokens", silver_key("contracts"), "the ERC-20/721 rows of silver/contracts",
        " Metadata read with eth_call at each token's creation block (the `rpc` resource).")
def silver_tokens(context: dg.AssetExecutionContext, lake: LakeResource, rpc: RpcResource):
    tags = context.run.tags
    rate = requests_per_second(tags, run_kind(tags))  # the run's lane's JSON-RPC rate
    opts = rpc.source_options(0, None)
    if rate is not None:
        opts = dataclasses.replace(opts, rpc_requests_per_second=rate)
    return _materialize(context, lake.uri, "tokens",
                        lambda a, b, key, full: build_tokens(lake.uri, opts.client, a, b,
                                                             watermark=key, full=full))


SILVER_ASSETS = [silver_token_transfers, silver_contracts, silver_tokens]


# ---------------------------------------------------------------------------------------------
# Blocking checks.


def _check_result(report: CheckReport) -> dg.AssetCheckResult:
    counts = {k: v for k, v in report.counts.items() if k != "offending_keys"}
    return dg.AssetCheckResult(
        passed=report.passed, severity=dg.AssetCheckSeverity.ERROR,
        description=report.describe(),
        metadata={
            "block_range": dg.MetadataValue.text(f"[{report.start}, {report.end})"),
            **counts,  # measures: rows and logs counted
            "offending_keys": report.counts.get("offending_keys", 0),
            "first_offending_keys": dg.MetadataValue.text("\n".join(report.offending) or "-"),
        })


def _run_check(context: dg.AssetCheckExecutionContext, lake: LakeResource,
               check: Callable[[str, int, int], CheckReport]) -> dg.AssetCheckResult:
    bronze = lake.lake()
    span = run_block_range(context.run.tags)
    blocks = blocks_to_check(bronze, span)
    if blocks is None:
        reason = f"nothing stored in {span if span is not None else 'the lake'} to check"
        return dg.AssetCheckResult(passed=True, description=reason,
                                   metadata={"nothing_to_check": dg.MetadataValue.text(reason)})
    report = check(bronze.root, *blocks)
    context.log.info(report.describe())
    return _check_result(report)


@dg.asset_check(asset=silver_key("token_transfers"), name="decoded_exactly_once", blocking=True,
                description="Every bronze log of the run's blocks whose topic 0 and topic count "
                            "make it a transfer has exactly the rows its decoding gives (batch "
                            "indexes 0..n-1), and no other log has any.")
def token_transfers_decoded_exactly_once(context: dg.AssetCheckExecutionContext,
                                         lake: LakeResource):
    return _run_check(context, lake, check_token_transfers)


@dg.asset_check(asset=silver_key("contracts"), name="one_per_create_trace", blocking=True,
                description="One contracts row per successful create trace of the run's blocks "
                            "(same block, transaction, trace address and address), none other.")
def contracts_one_per_create_trace(context: dg.AssetCheckExecutionContext, lake: LakeResource):
    return _run_check(context, lake, check_contracts)


@dg.asset_check(asset=silver_key("tokens"), name="one_per_token_contract", blocking=True,
                description="One tokens row per ERC-20/721 contract created in the run's blocks, "
                            "at its creation block, with its flags; none other.")
def tokens_one_per_token_contract(context: dg.AssetCheckExecutionContext, lake: LakeResource):
    return _run_check(context, lake, check_tokens)


SILVER_CHECKS = [token_transfers_decoded_exactly_once, contracts_one_per_create_trace,
                 tokens_one_per_token_contract]
