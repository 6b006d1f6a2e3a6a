"""Blocking asset checks: the great-expectations continuity suite after each bronze run.

One ``@multi_asset_check`` (``bronze_continuity``) runs ``ingestion.continuity.validate_range``
once — reading each table once — and reports one check named ``continuity`` on each of
``bronze/blocks``, ``bronze/transactions`` and ``bronze/logs`` (in the UI each asset shows its
own check and its own failures). The checks are blocking: a failure stops every asset
downstream of the bronze tables in the same run, and fails the run.

The ``continuity`` check of ``bronze/traces`` is a second op, ``bronze_traces_continuity``:
``bronze/traces`` is skippable (a run that does not ingest traces does not materialize it), and
Dagster skips a check step when an asset it is on was not materialized by its run — in one op
with the others, a run without traces would silently skip the checks of blocks, transactions
and logs too. Apart, only the traces check is skipped then. It reads blocks and transactions
again (a few columns) besides the traces, over the traces window only: outside the blocks the
traces table holds it passes, saying the traces were not checked.

Both ops can be subset (``can_subset=True``): a run selecting only some of the checks (or a
subset of the bronze assets) gets the results of those, from expectations about those tables
only (``context.selected_asset_check_keys``).

``CONTINUITY_CHECKS`` is both ops, for ``Definitions(asset_checks=...)``.

They run in the same run as the materialization: Dagster includes an asset's checks in every
run that selects the asset (UI materializations, backfills, ``dagster asset materialize``, the
sensor and schedule job), and in ``dg.materialize([bronze_ingest, bronze_continuity], ...)``.

Which blocks: those of the run's partitions, read from the run's tags (``dagster/partition``, or
``dagster/asset_partition_range_start``/``_end`` for a ranged backfill run), clipped at the start
to ``CHAINLAKE_START_BLOCK`` (what the asset ingests) and at the end to the stored tip + 1 (the
tip partition is open), plus the boundary block before the range. A run without partition tags
(a check launched on its own from the UI) validates the whole stored range.
"""

from collections.abc import Mapping

import dagster as dg

from assets.bronze import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG, bronze_key
from assets.resources import LakeResource
from ingestion import settings
from ingestion.continuity import (
    CORE_TABLES,
    ContinuityReport,
    ExpectationOutcome,
    NothingToValidate,
    validate_range,
)
from ingestion.ranges import BlockSpan, parse_key
from ingestion.sink import BronzeLake

CHECK_NAME = "continuity"
MAX_EXAMPLES = 20

_DESCRIPTIONS = {
    "blocks": "Block numbers unique and contiguous (also across the boundary with the block "
              "before the range), parent_hash = previous block_hash, timestamps non-decreasing, "
              "one chain id.",
    "transactions": "transaction_count = transaction rows per block, transaction indexes "
                    "0..n-1, rows carry their block's hash and the chain id.",
    "logs": "Log indexes 0..m-1 per block, every log's transaction exists, rows carry their "
            "block's hash and the chain id.",
    "traces": "Over the traces window (the blocks the traces table holds; outside it the traces "
              "are not checked, which passes): every transaction has exactly one top-level "
              "trace (trace_address [], its index and hash), top-level traces = "
              "transaction_count per block (a block with transactions but no traces fails), a "
              "top-level trace's status = its receipt_status (where not null), every trace's "
              "transaction exists, trace indexes 0..n-1 and unique per block, rows carry their "
              "block's hash and the chain id.",
}


def _spec(name: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(CHECK_NAME, asset=bronze_key(name), blocking=True,
                             description=f"great-expectations continuity suite: "
                                         f"{_DESCRIPTIONS[name]}")


CHECK_SPECS = [_spec(name) for name in CORE_TABLES]
TRACES_CHECK_SPECS = [_spec("traces")]


def run_block_range(tags: Mapping[str, str]) -> BlockSpan | None:
    """Blocks covered by a run's partition (or partition range) tags; None without them."""
    if tags.get(PARTITION_TAG):
        return parse_key(tags[PARTITION_TAG])
    if tags.get(RANGE_START_TAG) and tags.get(RANGE_END_TAG):
        first, last = parse_key(tags[RANGE_START_TAG]), parse_key(tags[RANGE_END_TAG])
        return BlockSpan(min(first.start, last.start), max(first.end, last.end))
    return None


def blocks_to_check(lake: BronzeLake, span: BlockSpan | None) -> tuple[int, int] | None:
    """``[start, end)`` to validate for a run's range: clipped to what the asset ingests and to
    the stored tip + 1; the whole stored range without a span; None when nothing is stored."""
    stored = lake.stored_bounds()
    if stored is None:
        return None
    if span is None:
        return stored[0], stored[1] + 1
    start = max(span.start, settings.start_block_from_env())
    end = min(span.end, stored[1] + 1)
    return (start, end) if start < end else None


def _markdown(outcomes: list[ExpectationOutcome]) -> str:
    rows = ["| expectation | result | offending blocks | detail |", "|---|---|---|---|"]
    for o in outcomes:
        blocks = o.blocks_text()  # gaps as whole ranges: 2961..2999
        rows.append(f"| {o.name} | {'passed' if o.success else '**FAILED**'} | {blocks} | "
                    f"{o.detail.replace('|', '/')} |")
    return "\n".join(rows)


def _text(value: int | None) -> dg.TextMetadataValue:
    return dg.MetadataValue.text("none" if value is None else str(value))


def check_results(report: ContinuityReport) -> list[dg.AssetCheckResult]:
    """One ``continuity`` result per bronze table the report was asked about."""
    results = []
    for name in report.tables:
        if name in report.not_checked:
            results.append(_not_checked(report, name))
            continue
        outcomes = report.outcomes_for(name)
        failed = [o for o in outcomes if not o.success]
        offending = sorted({b for o in failed for b in o.offending_blocks})
        # Numbers become plots in the UI: only measures are numbers (rows validated);
        # identifiers (chain id, block numbers) are text, "none" rather than -1.
        metadata = {
            "block_range": dg.MetadataValue.text(f"[{report.start}, {report.end})"),
            "boundary_block": _text(report.boundary),
            "rows_validated": report.rows.get(name, 0),
            "chain_id": _text(report.chain_id),
            "failed_expectations": dg.MetadataValue.text(", ".join(o.name for o in failed) or "-"),
            "offending_blocks": dg.MetadataValue.text(report.offending_text(outcomes)),
            "first_offending_block": _text(offending[0] if offending else None),
            "expectations": dg.MetadataValue.md(_markdown(outcomes)),
        }
        if name == "traces":
            metadata["traces_checked_blocks"] = _span_text(report.traces_checked)
            metadata["traces_window"] = _span_text(report.traces_window)
        if failed:
            description = "; ".join(f"{o.name}: blocks {o.blocks_text()}" for o in failed)
        else:
            description = f"{len(outcomes)} expectations passed over blocks [{report.start}, {report.end})"
        results.append(dg.AssetCheckResult(
            asset_key=bronze_key(name), check_name=CHECK_NAME, passed=not failed,
            severity=dg.AssetCheckSeverity.ERROR, metadata=metadata, description=description))
    return results


def _span_text(span: tuple[int, int] | None) -> dg.TextMetadataValue:
    return dg.MetadataValue.text("none" if span is None else f"[{span[0]}, {span[1]})")


def _not_checked(report: ContinuityReport, name: str) -> dg.AssetCheckResult:
    """Passed: the table's expectations covered no block of the range (traces outside their
    window), which is not a failure."""
    reason = report.not_checked[name]
    metadata = {
        "block_range": dg.MetadataValue.text(f"[{report.start}, {report.end})"),
        "not_checked": dg.MetadataValue.text(reason),
        "rows_validated": 0,
    }
    if name == "traces":
        metadata["traces_checked_blocks"] = _span_text(None)
        metadata["traces_window"] = _span_text(report.traces_window)
    return dg.AssetCheckResult(asset_key=bronze_key(name), check_name=CHECK_NAME, passed=True,
                               severity=dg.AssetCheckSeverity.ERROR, metadata=metadata,
                               description=f"not checked: {reason}")


def _nothing_stored(reason: str, tables: tuple[str, ...]) -> list[dg.AssetCheckResult]:
    return [dg.AssetCheckResult(asset_key=bronze_key(name), check_name=CHECK_NAME, passed=True,
                                description=reason,
                                metadata={"nothing_to_validate": dg.MetadataValue.text(reason)})
            for name in tables]


def _selected(context: dg.AssetCheckExecutionContext, tables: tuple[str, ...]) -> tuple[str, ...]:
    """The tables of ``tables`` whose ``continuity`` check the run selected."""
    keys = context.selected_asset_check_keys
    return tuple(name for name in tables
                 if dg.AssetCheckKey(bronze_key(name), CHECK_NAME) in keys)


def _continuity(context: dg.AssetCheckExecutionContext, lake: LakeResource,
                tables: tuple[str, ...]):
    """The results of the selected checks of ``tables``, from one ``validate_range``."""
    tables = _selected(context, tables)
    if not tables:
        return
    bronze = lake.lake()
    span = run_block_range(context.run.tags)
    blocks = blocks_to_check(bronze, span)
    if blocks is None:
        reason = f"nothing stored in {span if span is not None else 'the lake'} to validate"
        context.log.info(reason)
        yield from _nothing_stored(reason, tables)
        return
    try:
        report = validate_range(bronze, *blocks, max_examples=MAX_EXAMPLES, tables=tables)
    except NothingToValidate as err:
        context.log.info(str(err))
        yield from _nothing_stored(str(err), tables)
        return
    context.log.info(report.render())
    yield from check_results(report)


@dg.multi_asset_check(
    name="bronze_continuity",
    specs=CHECK_SPECS,
    can_subset=True,
    description="great-expectations continuity suite over the run's block range and the block "
                "before it (ingestion/continuity.py).",
)
def bronze_continuity(context: dg.AssetCheckExecutionContext, lake: LakeResource):
    yield from _continuity(context, lake, CORE_TABLES)


@dg.multi_asset_check(
    name="bronze_traces_continuity",
    specs=TRACES_CHECK_SPECS,
    can_subset=True,
    description="great-expectations continuity suite of the traces over the run's block range, "
                "inside the traces window (ingestion/continuity.py). Apart from "
                "bronze_continuity: a run that does not materialize bronze/traces skips only "
                "this one.",
)
def bronze_traces_continuity(context: dg.AssetCheckExecutionContext, lake: LakeResource):
    yield from _continuity(context, lake, ("traces",))


CONTINUITY_CHECKS = [bronze_continuity, bronze_traces_continuity]
