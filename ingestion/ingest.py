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
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from ingestion.sink import BronzeLake
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

    @property
    def blocks(self) -> int:
        return self.end - self.start


@dataclass
class IngestResult:
    start_block: int
    target_end: int  # exclusive end the run aimed for (end_block or the safe head)
    chain: ChainView
    batches: list[BatchProgress] = field(default_factory=list)
    seconds: float = 0.0

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
    """
    opts = SourceOptions(**{**opts.__dict__, "dataset": BUNDLE_NAME})
    view = preflight(opts)
    target = view.safe_end if opts.end_block is None else min(view.safe_end, opts.end_block)
    result = IngestResult(start_block=opts.start_block, target_end=target, chain=view)
    started = time.monotonic()

    def write_batch(df, batch_id: int) -> None:
        bundle: pa.Table = df.toArrow()
        if bundle.num_rows == 0:
            return
        numbers = bundle.column("block_number")
        start, end = pc.min(numbers).as_py(), pc.max(numbers).as_py() + 1
        if bundle.num_rows != end - start:  # the source guarantees contiguous ranges
            raise RuntimeError(f"batch {batch_id}: {bundle.num_rows} blocks for range "
                               f"[{start}, {end}); refusing to write a range with gaps")
        written = lake.write_bundle(bundle, start, end)
        progress = BatchProgress(
            batch_id=batch_id, start=start, end=end,
            rows={name: w.rows for name, w in written.items()},
            versions={name: w.version for name, w in written.items()},
            seconds=time.monotonic() - started,
        )
        result.batches.append(progress)
        if on_batch is not None:
            on_batch(progress)

    checkpoint = lake.checkpoint_uri(scope or default_scope(opts.start_block, opts.end_block))
    query = (
        spark.readStream.format("evm")
        .options(**opts.as_spark_options())
        .option("confirmations", str(view.confirmations))
        .option("chain_id", str(view.chain_id))
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
