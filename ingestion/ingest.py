"""One ingestion run: a Spark ``availableNow`` query of the `evm` bundle stream into bronze tables.

The same code path serves ``chainlake ingest`` and the Dagster assets. Each micro-batch is one
contiguous block range (admission control bounds its size); ``foreachBatch`` collects it as
Arrow, splits it into blocks / transactions / logs and range-replaces each bronze table. The
checkpoint (one per scope, under the lake root) makes a rerun resume where the last one stopped.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.compute as pc

from ingestion.checkpoint import resume_point
from ingestion.reorg import find_divergence
from ingestion.schemas import TABLES
from ingestion.sink import WRITE_ORDER, BronzeLake, WriteResult
from ingestion.source import BUNDLE_NAME, ChainView, SourceOptions, observe_chain

log = logging.getLogger("chainlake.ingest")


@dataclass(frozen=True)
class BatchProgress:
    batch_id: int
    start: int
    end: int
    rows: dict[str, int]
    versions: dict[str, int]
    seconds: float  # since the run started

    @classmethod
    def of(cls, batch_id: int, start: int, end: int, written: dict[str, WriteResult],
           seconds: float) -> BatchProgress:
        return cls(batch_id=batch_id, start=start, end=end,
                   rows={name: w.rows for name, w in written.items()},
                   versions={name: w.version for name, w in written.items()},
                   seconds=seconds)

    @property
    def blocks(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class ReorgRepair:
    """A reorg found below the stored tip and repaired before the run went on."""

    ancestor: int  # last block common to the lake and the node's chain
    depth: int  # stored blocks that were not on the node's chain
    replaced: tuple[int, int]  # blocks [a, b) re-ingested from the node's chain
    removed: tuple[int, int] | None  # blocks [a, b) dropped: beyond the new chain's safe head


@dataclass
class IngestResult:
    start_block: int
    target_end: int  # exclusive end the run aimed for (end_block or the safe head)
    chain: ChainView
    batches: list[BatchProgress] = field(default_factory=list)
    seconds: float = 0.0
    reorg: ReorgRepair | None = None
    rewound_to: int | None = None  # the checkpoint was ahead of the lake: restarted here

    @property
    def blocks(self) -> int:
        return sum(b.blocks for b in self.batches)

    @property
    def next_block(self) -> int | None:
        """First block not yet written by this run's scope, if the run wrote anything."""
        return self.batches[-1].end if self.batches else None

    def rows(self, table: str) -> int:
        return sum(b.rows.get(table, 0) for b in self.batches)

    @property
    def blocks_per_second(self) -> float:
        return self.blocks / self.seconds if self.seconds > 0 else 0.0

    def versions(self) -> dict[str, int]:
        return dict(self.batches[-1].versions) if self.batches else {}


def default_scope(start_block: int, end_block: int | None) -> str:
    """Checkpoint scope of a range: runs over the same range share (and resume) it."""
    end = f"{end_block:012d}" if end_block is not None else "head"
    return f"ingest-{start_block:012d}-{end}"


def preflight(opts: SourceOptions) -> ChainView:
    """Check the options and the node before Spark starts; raises with a clear message."""
    opts.validate()
    return observe_chain(opts)


def pin_to_chain(opts: SourceOptions, view: ChainView) -> SourceOptions:
    """Options that every later read of the run uses: the chain id and confirmations the
    preflight resolved, so a node swapped mid-run fails instead of mixing chains."""
    return replace(opts, confirmations=view.confirmations, chain_id=view.chain_id)


def run_ingest(
    spark,
    opts: SourceOptions,
    lake: BronzeLake,
    *,
    scope: str | None = None,
    on_batch: Callable[[BatchProgress], None] | None = None,
) -> IngestResult:
    """Run one ``availableNow`` query over ``[opts.start_block, opts.end_block)``.

    Stops at ``end_block`` or at the safe head captured when the run began, whichever is lower.
    First, if the lake's stored tip is no longer on the node's chain, the reorged blocks are
    re-ingested (see ``repair_reorg``); if the scope's checkpoint claims blocks the lake lacks,
    it is rewound (see ``ingestion.checkpoint``).
    """
    view = preflight(opts)
    opts = pin_to_chain(replace(opts, dataset=BUNDLE_NAME), view)
    started = time.monotonic()
    reorg = repair_reorg(spark, opts, lake, view)
    checkpoint = lake.checkpoint_uri(scope or default_scope(opts.start_block, opts.end_block))
    rewound_to = resume_point(lake, checkpoint, opts.start_block)
    if rewound_to is not None:
        opts = replace(opts, start_block=rewound_to)
    target = view.safe_end if opts.end_block is None else min(view.safe_end, opts.end_block)
    result = IngestResult(start_block=opts.start_block, target_end=target, chain=view,
                          reorg=reorg, rewound_to=rewound_to)

    def write_batch(df, batch_id: int) -> None:
        # The query id survives restarts on the same checkpoint; a replayed batch that the lake
        # already recorded (crash after the last commit, before Spark's) is skipped.
        app_id = "chainlake-" + (spark.sparkContext.getLocalProperty("sql.streaming.queryId") or "")
        committed = lake.committed_batch(app_id)
        if committed is not None and committed >= batch_id:
            log.info("batch %d already committed to the lake; skipping the replay", batch_id)
            return
        bundle: pa.Table = df.toArrow()
        if bundle.num_rows == 0:
            return
        numbers = bundle.column("block_number")
        start, end = pc.min(numbers).as_py(), pc.max(numbers).as_py() + 1
        if bundle.num_rows != end - start:  # the source guarantees contiguous ranges
            raise RuntimeError(f"batch {batch_id}: {bundle.num_rows} blocks for range "
                               f"[{start}, {end}); refusing to write a range with gaps")
        written = lake.write_bundle(bundle, start, end, app_transaction=(app_id, batch_id))
        progress = BatchProgress.of(batch_id, start, end, written, time.monotonic() - started)
        result.batches.append(progress)
        if on_batch is not None:
            on_batch(progress)

    query = (
        spark.readStream.format("evm")
        .options(**opts.as_spark_options())
        .load()
        .writeStream.queryName(f"chainlake-{scope or 'ingest'}")
        .foreachBatch(write_batch)
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .start()
    )
    try:
        query.awaitTermination()
    finally:
        if query.isActive:
            query.stop()
    result.seconds = time.monotonic() - started
    return result


def reingest_range(spark, opts: SourceOptions, lake: BronzeLake, start: int, end: int,
                   on_batch: Callable[[BatchProgress], None] | None = None) -> list[BatchProgress]:
    """Batch-read blocks ``[start, end)`` from the node and range-replace them in the lake.

    No checkpoint: used to repair (reorgs, ``chainlake repair``), where the range is known.
    Chunks of ``max_blocks_per_trigger`` bound memory like the stream's micro-batches.
    """
    done: list[BatchProgress] = []
    started = time.monotonic()
    for a in range(start, end, opts.max_blocks_per_trigger):
        b = min(a + opts.max_blocks_per_trigger, end)
        chunk = replace(opts, dataset=BUNDLE_NAME, start_block=a, end_block=b)
        bundle = spark.read.format("evm").options(**chunk.as_spark_options()).load().toArrow()
        written = lake.write_bundle(bundle, a, b)
        progress = BatchProgress.of(len(done), a, b, written, time.monotonic() - started)
        done.append(progress)
        if on_batch is not None:
            on_batch(progress)
    return done


def repair_reorg(spark, opts: SourceOptions, lake: BronzeLake, view: ChainView
                 ) -> ReorgRepair | None:
    """If the stored tip is off the node's chain, re-ingest from the common ancestor.

    Blocks above the ancestor are replaced with the node's up to its safe head; stored blocks
    beyond the safe head (a shorter new chain) are removed, to be ingested when they are safe.
    """
    opts = pin_to_chain(opts, view)
    with opts.client() as client:
        divergence = find_divergence(lake, client, head=view.head)
    if divergence is None:
        return None
    first, stored_end = divergence.first_replaced, divergence.stored_tip + 1
    replace_end = min(stored_end, view.safe_end)
    if replace_end > first:
        reingest_range(spark, opts, lake, first, replace_end)
    removed = None
    if replace_end < stored_end:
        start = max(first, replace_end)
        for name in WRITE_ORDER:
            lake.replace_range(name, TABLES[name].arrow_schema.empty_table(), start, stored_end)
        removed = (start, stored_end)
    repair = ReorgRepair(ancestor=divergence.ancestor, depth=divergence.depth,
                         replaced=(first, max(first, replace_end)), removed=removed)
    log.warning("reorg of depth %d repaired: re-ingested blocks [%d, %d)%s", repair.depth,
                *repair.replaced, f", removed [{removed[0]}, {removed[1]})" if removed else "")
    return repair


# Errors raised inside Spark tasks reach the driver wrapped in Java and Python tracebacks.
_OUR_ERRORS = (
    "ChainIdMismatchError", "MissingBlockError", "RpcTransportError", "RpcResponseError",
    "RpcError", "TransformError", "InconsistentChainError", "BlockNotAvailableError",
    "SourceOptionError",
)
_ERROR_LINE = re.compile(r"(?:[\w.]+\.)?(" + "|".join(_OUR_ERRORS) + r"): (.+)")


def explain_failure(error: BaseException) -> str:
    """The one line that says why a run failed, dug out of Spark's wrapping when needed."""
    text = str(error)
    match = _ERROR_LINE.search(text)
    if match:
        return f"{match.group(1)}: {match.group(2).strip()}"
    first = next((line for line in text.splitlines() if line.strip()), type(error).__name__)
    return f"{type(error).__name__}: {first.strip()}"
