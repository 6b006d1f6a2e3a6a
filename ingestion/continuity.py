"""Block continuity of the bronze tables, checked with great-expectations 1.x (pandas engine).

``validate_range(lake, start, end)`` reads only the rows of blocks ``[start - 1, end)`` (Delta
file statistics prune the rest), builds prepared pandas frames and runs one GX expectation suite
per frame in an ephemeral context (in memory, no usage statistics, no network, no progress
bars). Every frame has one row per block, so an expectation's unexpected rows *are* the
offending blocks:

``block_numbers``  stored block numbers of the range, each with the previous stored number, plus
                   one marker row for ``end`` (the block after the range):
                   - numbers unique (``ExpectColumnValuesToBeUnique``);
                   - contiguous: ``gap_before = number - previous - 1`` is at most 0, which also
                     covers blocks missing at either end of the range. The previous block of the
                     range's first block is the *boundary* block ``start - 1`` when blocks before
                     the range are stored: a missing boundary block is a gap.
``blocks``         stored block rows with the previous row's hash and timestamp alongside:
                   - ``parent_hash`` equals the previous block's ``block_hash`` (also across the
                     range boundary); timestamps non-decreasing; every row has the chain id.
``transactions``   one row per block number present in ``blocks`` or ``transactions``:
                   - ``transaction_count`` equals the number of transaction rows (a missing block
                     row counts as -1, so orphaned transactions fail);
                   - transaction indexes are 0..n-1 (no gap, no duplicate key);
                   - every row carries its block's hash and the chain id.
``logs``           one row per block number with log rows:
                   - log indexes are 0..m-1 (no gap, no duplicate key);
                   - every log's transaction (block, index, hash) exists;
                   - every row carries its block's hash and the chain id.

Hashes are compared as integer codes from one Arrow dictionary (equal exactly when the strings
are), not as 66-character Python strings. Results use GX's ``SUMMARY`` format with
``partial_unexpected_count=max_examples``. Every prepared frame is indexed by block number, and
GX's pandas engine names unexpected rows by the frame index, so ``partial_unexpected_index_list``
is the first offending block numbers — the same as ``unexpected_index_column_names=
["block_number"]``, which GX 1.24 fills with a Python loop over *every* unexpected row (a
million-block lake failing everywhere took 18 s that way, 4 s this way), and without
materializing every unexpected row as ``COMPLETE`` would.

Examples versus the complete set: each outcome names its first ``max_examples`` blocks (and, for
contiguity, its first ``max_examples`` gaps whole, rendered as ranges ``2961..2999``). GX's pandas
engine computes the index of *every* unexpected row anyway and only then cuts the list at
``partial_unexpected_count``, so ``validate_range(..., collect_all=True)`` raises that cap to the
frame's length and keeps every offending block (as ranges: a gap is every missing number, not
the block after it) — ``ContinuityReport.all_offending_ranges`` — with no extra pass over the
data; that is what ``chainlake repair`` re-ingests. Only GX's handling of the longer lists costs
time, about 4 µs per offending row (300,000 blocks with three expectations failing on every row:
+2–3 s); a validation without ``collect_all`` is unchanged.

A child table that does not exist (directory deleted, or no ``_delta_log``) is a failed
outcome ``table exists`` naming every block of the range: ingestion always creates all three
tables, and without it a deleted ``logs`` table would pass.

Memory stays bounded on long ranges: the range is validated in windows of consecutive blocks
(sized from the Delta file statistics to about ``ROWS_PER_WINDOW`` rows); each window is linked
to the block before it exactly like the range, so the result is the same as one pass.

The range ``[start, end)`` is validated as given: a block of it that is not stored is a failure
(named). ``None`` means the stored range (lowest to highest stored block). A lake without blocks,
or a range that does not overlap the stored blocks at all, raises ``NothingToValidate`` (a
``ValueError`` naming the range). ``chain_id=None`` requires every row to carry the chain id of
the majority of the range's blocks.

No Dagster imports here: ``assets/checks.py`` and ``chainlake validate`` are thin wrappers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

if TYPE_CHECKING:
    from ingestion.sink import BronzeLake

TABLE_ORDER = ("blocks", "transactions", "logs")
ROWS_PER_WINDOW = 500_000  # rows of the three tables validated at once (~0.5 GB at peak)
MIN_WINDOW = 1_000  # blocks
_COLUMNS = {
    "blocks": ["chain_id", "block_number", "block_hash", "parent_hash", "block_timestamp",
               "transaction_count"],
    "transactions": ["chain_id", "block_number", "block_hash", "transaction_index",
                     "transaction_hash"],
    "logs": ["chain_id", "block_number", "block_hash", "transaction_index", "transaction_hash",
             "log_index"],
}


class NothingToValidate(ValueError):  # noqa: N818 - reads better at the call site
    """The lake has no blocks, or the requested range does not overlap the stored blocks."""


@dataclass(frozen=True)
class ExpectationOutcome:
    name: str  # e.g. "parent hash links"
    table: str  # the bronze table the expectation is about
    success: bool
    offending_blocks: list[int]  # first offending block numbers, ascending (at most max_examples)
    unexpected_count: int  # offending blocks (for contiguity: gaps)
    detail: str  # the GX expectation and what it found
    # Missing blocks named whole, as ranges [a, b): the first max_examples gaps of the
    # contiguity check, or the whole range for a table that does not exist.
    gaps: tuple[tuple[int, int], ...] = ()
    # Every offending block as coalesced ranges [a, b): only with validate_range(collect_all=True).
    all_offending: tuple[tuple[int, int], ...] | None = None

    def blocks_text(self) -> str:
        """The offending blocks as text: gaps as whole ranges (``2961..2999``), else compacted."""
        if self.gaps:
            return ranges_text(self.gaps)
        return _compact(self.offending_blocks)


@dataclass
class ContinuityReport:
    start: int | None  # validated blocks [start, end)
    end: int | None
    outcomes: list[ExpectationOutcome]
    rows: dict[str, int]  # rows of the range read per table (boundary block not counted)
    chain_id: int | None = None  # the chain id every row had to carry
    boundary: int | None = None  # the block before the range that the range was linked to
    lake: str = ""
    seconds: float = 0.0
    windows: int = 1
    notes: list[str] = field(default_factory=list)
    missing_tables: list[str] = field(default_factory=list)  # bronze tables that do not exist

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    @property
    def offending_blocks(self) -> list[int]:
        """Sorted union of the offending blocks named by every failing expectation."""
        return sorted({b for o in self.failures for b in o.offending_blocks})

    @property
    def all_offending_ranges(self) -> list[tuple[int, int]]:
        """*Every* offending block of every failing expectation, as coalesced ranges ``[a, b)``
        (missing blocks included, each gap whole). Needs ``validate_range(collect_all=True)``."""
        if any(o.all_offending is None for o in self.failures):
            raise ValueError("the complete offending set was not collected: "
                             "validate with collect_all=True")
        return coalesce(r for o in self.failures for r in o.all_offending or ())

    @property
    def all_offending_blocks(self) -> list[int]:
        """:attr:`all_offending_ranges` expanded to block numbers (ascending)."""
        return [b for a, e in self.all_offending_ranges for b in range(a, e)]

    def offending_text(self, outcomes: Iterable[ExpectationOutcome] | None = None) -> str:
        """Offending blocks named by the failing ``outcomes`` (default: all), gaps as whole
        ranges: ``7, 12..15, 2961..2999``."""
        failed = [o for o in (self.outcomes if outcomes is None else outcomes) if not o.success]
        named = [(b, b + 1) for o in failed for b in o.offending_blocks]
        return ranges_text(coalesce([*named, *(g for o in failed for g in o.gaps)]))

    def outcomes_for(self, table: str) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if o.table == table]

    def render(self) -> str:
        """The readable report ``chainlake validate`` prints."""
        where = f" in {self.lake}" if self.lake else ""
        lines = [f"Continuity of blocks [{self.start}, {self.end}){where}"]
        boundary = (f"linked to block {self.boundary} before it" if self.boundary is not None
                    else "no stored block before it")
        chain = f"chain id {self.chain_id}" if self.chain_id is not None else "no chain id"
        took = f" in {self.seconds:.1f}s" if self.seconds else ""
        lines.append(f"  {chain}; {boundary}; rows read: "
                     + ", ".join(f"{self.rows.get(t, 0):,} {t}" for t in TABLE_ORDER) + took)
        lines.extend(f"  note: {n}" for n in self.notes)
        width = max((len(o.name) for o in self.outcomes), default=0)
        for o in self.outcomes:
            line = f"  {'ok  ' if o.success else 'FAIL'}  {o.table:<12} {o.name:<{width}}"
            if o.success:
                lines.append(line.rstrip())
            else:
                what = "missing blocks" if o.gaps else "blocks"
                lines.append(f"{line}  {what} {o.blocks_text()}")
                lines.append(f"{'':8}{o.detail}")
        if self.success:
            lines.append(f"PASSED: {len(self.outcomes)} expectations")
        else:
            lines.append(f"FAILED: {len(self.failures)} of {len(self.outcomes)} expectations; "
                         f"offending blocks: {self.offending_text()}")
        return "\n".join(lines)


def _compact(numbers: Iterable[int]) -> str:
    """``1, 2, 3, 7, 9, 10`` → ``1..3, 7, 9..10``."""
    parts: list[str] = []
    run: list[int] = []
    for n in [*sorted(set(numbers)), None]:
        if n is not None and run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}..{run[-1]}")
        run = [n] if n is not None else []
    return ", ".join(parts) if parts else "-"


def ranges_text(ranges: Iterable[tuple[int, int]]) -> str:
    """``[(1, 4), (7, 8)]`` (half-open) → ``1..3, 7``."""
    parts = [str(a) if b - a == 1 else f"{a}..{b - 1}" for a, b in ranges]
    return ", ".join(parts) if parts else "-"


def coalesce(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ranges ``[a, b)`` with overlapping and adjacent ones merged."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(r for r in ranges if r[1] > r[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _runs(numbers: np.ndarray) -> list[tuple[int, int]]:
    """Block numbers (any order, duplicates allowed) as ranges ``[a, b)`` of consecutive ones."""
    if len(numbers) == 0:
        return []
    unique = np.unique(numbers.astype(np.int64))
    breaks = np.flatnonzero(np.diff(unique) != 1) + 1
    starts = unique[np.r_[0, breaks]]
    ends = unique[np.r_[breaks - 1, len(unique) - 1]] + 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


# --- reading ---------------------------------------------------------------------------------


def _window_size(lake: BronzeLake, stored: tuple[int, int]) -> int:
    """Blocks per window for about ``ROWS_PER_WINDOW`` rows, from the stored rows per block."""
    span = stored[1] - stored[0] + 1
    records = 0
    for name in TABLE_ORDER:
        stats = lake.file_stats(name)
        if stats is not None and stats.num_rows:
            records += pc.sum(stats.column("num_records")).as_py() or 0
    per_block = max(records / span, 1.0)
    return max(MIN_WINDOW, int(ROWS_PER_WINDOW / per_block))


def _where(lo: int, hi: int) -> pads.Expression:
    return (pads.field("block_number") >= lo) & (pads.field("block_number") < hi)


def _read(lake: BronzeLake, name: str, lo: int, hi: int) -> pa.Table:
    """The columns the suite needs of the rows of blocks ``[lo, hi)`` (pruned by file stats)."""
    return lake.read_range(name, lo, hi, _COLUMNS[name])


def _majority_chain_id(lake: BronzeLake, start: int, end: int) -> int | None:
    """The chain id of most blocks of the range (ties: the smallest), streaming one column."""
    dt = lake.table("blocks")
    counts: dict[int, int] = {}
    for batch in dt.to_pyarrow_dataset().to_batches(columns=["chain_id"], filter=_where(start, end)):
        for item in pc.value_counts(batch.column(0)).to_pylist():
            counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
    if not counts:
        return None
    top = max(counts.values())
    return min(c for c, n in counts.items() if n == top)


def _codes(columns: list[pa.ChunkedArray]) -> list[pa.ChunkedArray]:
    """Integer codes for hex strings, equal exactly when the strings are (one dictionary)."""
    chunks = [chunk for column in columns for chunk in column.chunks]
    encoded = pa.chunked_array(chunks, type=pa.string()).dictionary_encode()
    indices = pa.chunked_array([chunk.indices for chunk in encoded.chunks], type=pa.int32())
    out, at = [], 0
    for column in columns:
        codes = indices.slice(at, len(column))
        at += len(column)
        out.append(pc.fill_null(codes, -1).cast(pa.int64()))
    return out


def _to_pandas(raw: dict[str, pa.Table]) -> dict[str, pd.DataFrame]:
    """pandas frames of the raw tables with hashes as codes, sorted by block and index."""
    blocks, txs, logs = raw["blocks"], raw["transactions"], raw["logs"]
    block_codes = _codes([blocks["block_hash"], blocks["parent_hash"], txs["block_hash"],
                          logs["block_hash"]])
    tx_codes = _codes([txs["transaction_hash"], logs["transaction_hash"]])
    replaced = {
        "blocks": {"block_hash": block_codes[0], "parent_hash": block_codes[1]},
        "transactions": {"block_hash": block_codes[2], "transaction_hash": tx_codes[0]},
        "logs": {"block_hash": block_codes[3], "transaction_hash": tx_codes[1]},
    }
    frames = {}
    for name, table in raw.items():
        for column, codes in replaced[name].items():
            table = table.set_column(table.schema.get_field_index(column), column, codes)
        frame = table.to_pandas()
        keys = ["block_number"] + [k for k in ("transaction_index", "log_index") if k in frame]
        frames[name] = frame.sort_values(keys, kind="stable", ignore_index=True)
    return frames


# --- prepared frames -------------------------------------------------------------------------


def _blocks_frame(raw: pd.DataFrame, start: int, previous: int | None) -> pd.DataFrame:
    """Block rows of ``[start, ...)`` with the previous stored row's number, hash and timestamp.

    ``raw`` may begin with the boundary block ``start - 1``. Without it, ``previous`` is the
    number the range's first block must follow (``None``: nothing is stored before it).
    """
    frame = raw.copy()
    frame["prev_number"] = raw["block_number"].shift(1)
    frame["prev_hash"] = raw["block_hash"].shift(1)
    frame["prev_timestamp"] = raw["block_timestamp"].shift(1)
    has_boundary = bool(len(raw)) and int(raw["block_number"].iloc[0]) == start - 1
    frame = frame[frame["block_number"] >= start].reset_index(drop=True)
    if not has_boundary and len(frame):
        frame.loc[0, "prev_number"] = start - 1 if previous is None else previous
        frame.loc[0, "prev_hash"] = None
        frame.loc[0, "prev_timestamp"] = pd.NaT
    frame["prev_number"] = frame["prev_number"].astype("int64")
    frame["gap_before"] = frame["block_number"] - frame["prev_number"] - 1
    # Only a block whose predecessor is stored (number - 1) can be linked by hash.
    frame.loc[frame["gap_before"] != 0, "prev_hash"] = None
    return frame


def _numbers_frame(blocks: pd.DataFrame, end: int | None, previous: int | None,
                   start: int) -> pd.DataFrame:
    """Block numbers with the previous stored number; a marker row for ``end`` when given."""
    frame = blocks[["block_number", "prev_number", "gap_before"]]
    if end is not None:
        last = int(blocks["block_number"].max()) if len(blocks) else \
            (start - 1 if previous is None else previous)
        marker = pd.DataFrame({"block_number": [end], "prev_number": [last],
                               "gap_before": [end - last - 1]})
        frame = pd.concat([frame, marker], ignore_index=True)
    return frame


def _index_errors(frame: pd.DataFrame, column: str) -> pd.Series:
    """Per block: True when its indexes are not exactly 0..n-1 (frame sorted by them)."""
    expected = frame.groupby("block_number", sort=False).cumcount()
    wrong = frame[column].to_numpy() != expected.to_numpy()
    return pd.Series(wrong, index=frame["block_number"]).groupby(level=0).any()


def _per_block(frame: pd.DataFrame, index_column: str, chain_id: int | None,
               block_hashes: pd.Series) -> pd.DataFrame:
    """Aggregate a child table per block: rows, index errors, wrong chain id, stale block hash."""
    numbers = frame["block_number"]
    hashes = numbers.map(block_hashes)
    per = pd.DataFrame({
        "block_number": numbers.to_numpy(),
        "stale": (hashes.isna() | (hashes != frame["block_hash"])).to_numpy(),
        "wrong_chain": (frame["chain_id"] != chain_id).to_numpy(),
    })
    agg = per.groupby("block_number").agg(rows=("stale", "size"), stale_rows=("stale", "sum"),
                                          wrong_chain_rows=("wrong_chain", "sum"))
    agg["indexes_ok"] = ~_index_errors(frame, index_column).reindex(agg.index, fill_value=False)
    return agg


def _transactions_frame(blocks: pd.DataFrame, txs: pd.DataFrame, chain_id: int | None,
                        block_hashes: pd.Series) -> pd.DataFrame:
    agg = _per_block(txs, "transaction_index", chain_id, block_hashes)
    counts = blocks.drop_duplicates("block_number").set_index("block_number")["transaction_count"]
    index = counts.index.union(agg.index)
    return pd.DataFrame({
        "block_number": index.to_numpy(),
        # -1: the block row is missing, so its transaction rows are orphans.
        "transaction_count": counts.reindex(index, fill_value=-1).to_numpy(),
        "transaction_rows": agg["rows"].reindex(index, fill_value=0).to_numpy(),
        "transaction_indexes_ok": agg["indexes_ok"].reindex(index, fill_value=True).to_numpy(),
        "stale_block_hash_rows": agg["stale_rows"].reindex(index, fill_value=0).to_numpy(),
        "wrong_chain_id_rows": agg["wrong_chain_rows"].reindex(index, fill_value=0).to_numpy(),
    })


def _logs_frame(logs: pd.DataFrame, txs: pd.DataFrame, chain_id: int | None,
                block_hashes: pd.Series) -> pd.DataFrame:
    agg = _per_block(logs, "log_index", chain_id, block_hashes)
    keys = txs[["block_number", "transaction_index", "transaction_hash"]].drop_duplicates(
        ["block_number", "transaction_index"]).rename(columns={"transaction_hash": "tx_hash"})
    joined = logs[["block_number", "transaction_index", "transaction_hash"]].merge(
        keys, on=["block_number", "transaction_index"], how="left")
    orphan = joined["tx_hash"].isna() | (joined["tx_hash"] != joined["transaction_hash"])
    orphans = orphan.groupby(joined["block_number"]).sum()
    return pd.DataFrame({
        "block_number": agg.index.to_numpy(),
        "log_rows": agg["rows"].to_numpy(),
        "log_indexes_ok": agg["indexes_ok"].to_numpy(),
        "logs_without_transaction": orphans.reindex(agg.index, fill_value=0).to_numpy(),
        "stale_block_hash_rows": agg["stale_rows"].to_numpy(),
        "wrong_chain_id_rows": agg["wrong_chain_rows"].to_numpy(),
    })


# --- the suites ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    """One expectation of a suite, and how to name its offending blocks."""

    name: str
    table: str  # the bronze table it is about
    frame: str  # the prepared frame it runs on
    build: Callable[[Any], Any]  # great_expectations.expectations -> Expectation
    explain: str
    gaps: bool = False  # unexpected rows name the block *after* missing blocks


def _checks(chain_id: int | None) -> list[_Check]:
    chain = [chain_id] if chain_id is not None else []
    no_rows = "(or no block row)"
    return [
        _Check("block numbers unique", "blocks", "block_numbers",
               lambda x: x.ExpectColumnValuesToBeUnique(column="block_number"),
               "duplicate block rows"),
        _Check("block numbers contiguous", "blocks", "block_numbers",
               lambda x: x.ExpectColumnValuesToBeBetween(column="gap_before", max_value=0),
               "missing blocks", gaps=True),
        _Check("parent hash links", "blocks", "blocks",
               lambda x: x.ExpectColumnPairValuesToBeEqual(
                   column_A="parent_hash", column_B="prev_hash",
                   ignore_row_if="either_value_is_missing"),
               "parent_hash differs from the previous block's block_hash"),
        _Check("timestamps non-decreasing", "blocks", "blocks",
               lambda x: x.ExpectColumnPairValuesAToBeGreaterThanB(
                   column_A="block_timestamp", column_B="prev_timestamp", or_equal=True,
                   ignore_row_if="either_value_is_missing"),
               "block_timestamp earlier than the previous block's"),
        _Check("chain id", "blocks", "blocks",
               lambda x: x.ExpectColumnValuesToBeInSet(column="chain_id", value_set=chain),
               f"chain_id is not {chain_id}"),
        _Check("transaction count matches rows", "transactions", "transactions",
               lambda x: x.ExpectColumnPairValuesToBeEqual(
                   column_A="transaction_count", column_B="transaction_rows"),
               "transaction_count differs from the transaction rows (-1: block row missing)"),
        _Check("transaction indexes 0..n-1", "transactions", "transactions",
               lambda x: x.ExpectColumnValuesToBeInSet(column="transaction_indexes_ok",
                                                       value_set=[True]),
               "transaction_index not exactly 0..n-1 (gap or duplicate)"),
        _Check("transactions carry block hash", "transactions", "transactions",
               lambda x: x.ExpectColumnValuesToBeBetween(column="stale_block_hash_rows",
                                                         max_value=0),
               f"block_hash differs from the blocks table's {no_rows}"),
        _Check("transactions chain id", "transactions", "transactions",
               lambda x: x.ExpectColumnValuesToBeBetween(column="wrong_chain_id_rows",
                                                         max_value=0),
               f"chain_id is not {chain_id}"),
        _Check("log indexes 0..m-1", "logs", "logs",
               lambda x: x.ExpectColumnValuesToBeInSet(column="log_indexes_ok", value_set=[True]),
               "log_index not exactly 0..m-1 (gap or duplicate)"),
        _Check("log transactions exist", "logs", "logs",
               lambda x: x.ExpectColumnValuesToBeBetween(column="logs_without_transaction",
                                                         max_value=0),
               "a log's (transaction_index, transaction_hash) is not in transactions"),
        _Check("logs carry block hash", "logs", "logs",
               lambda x: x.ExpectColumnValuesToBeBetween(column="stale_block_hash_rows",
                                                         max_value=0),
               f"block_hash differs from the blocks table's {no_rows}"),
        _Check("logs chain id", "logs", "logs",
               lambda x: x.ExpectColumnValuesToBeBetween(column="wrong_chain_id_rows", max_value=0),
               f"chain_id is not {chain_id}"),
    ]


FRAMES = ("block_numbers", "blocks", "transactions", "logs")


class _Suites:
    """One ephemeral GX context with one suite + validation definition per prepared frame."""

    def __init__(self, checks: list[_Check], max_examples: int) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        self.context = gx.get_context(mode="ephemeral", project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False)))
        self.max_examples = max_examples
        source = self.context.data_sources.add_pandas("chainlake_bronze")
        self.checks = checks
        self.validations: dict[str, Any] = {}
        self.expectation_ids: dict[str, list[str]] = {}
        for frame in FRAMES:
            suite = self.context.suites.add(gx.ExpectationSuite(
                name=f"continuity_{frame}",
                expectations=[c.build(gxe) for c in checks if c.frame == frame]))
            self.expectation_ids[frame] = [e.id for e in suite.expectations]
            batch = source.add_dataframe_asset(frame).add_batch_definition_whole_dataframe("all")
            self.validations[frame] = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=f"continuity_{frame}", data=batch, suite=suite))

    def run(self, frames: dict[str, pd.DataFrame], collect_all: bool = False) -> list[Any]:
        """Expectation results, in the order of ``self.checks``.

        ``collect_all``: name every unexpected row, not only the first ``max_examples``. GX's
        pandas engine lists the index of every unexpected row anyway and then cuts the list at
        ``partial_unexpected_count`` (unexpected *values* stay capped at 200), so raising the
        cap to the frame's length costs no extra pass over the data (see the module docstring).
        """
        by_id: dict[str, Any] = {}
        for frame in FRAMES:
            data = frames[frame]
            data.index = data["block_number"].to_numpy()  # unexpected rows come out as blocks
            count = max(self.max_examples, len(data)) if collect_all else self.max_examples
            outcome = self.validations[frame].run(
                batch_parameters={"dataframe": data},
                result_format={"result_format": "SUMMARY",
                               "partial_unexpected_count": count,
                               "return_unexpected_index_query": False})
            by_id.update({r.expectation_config.id: r for r in outcome.results})
        ordered = []
        position = dict.fromkeys(FRAMES, 0)
        for check in self.checks:
            ordered.append(by_id[self.expectation_ids[check.frame][position[check.frame]]])
            position[check.frame] += 1
        return ordered


@dataclass
class _Tally:
    """One expectation's results summed over windows."""

    check: _Check
    collect_all: bool = False  # keep every offending block (in ranges), not only examples
    success: bool = True
    blocks: list[int] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)  # first max_examples gaps
    ranges: list[tuple[int, int]] = field(default_factory=list)  # with collect_all
    count: int = 0
    described: str = ""
    error: str = ""

    def add(self, result: Any, max_examples: int, numbers: pd.DataFrame) -> None:
        """Add one window's result; ``numbers`` is its ``block_numbers`` frame (for gaps).

        With ``collect_all`` the result names every unexpected row (see ``_Suites.run``) and
        every offending block is kept, as ranges."""
        config = result.expectation_config
        args = {k: v for k, v in config.kwargs.items()
                if k in ("column", "column_A", "column_B", "max_value", "value_set")}
        self.described = f"{config.type}({', '.join(f'{k}={v!r}' for k, v in args.items())})"
        if result.exception_info and result.exception_info.get("raised_exception"):
            self.success = False
            self.error = str(result.exception_info.get("exception_message"))
            return
        if result.success:
            return
        self.success = False
        info = result.result or {}
        self.count += int(info.get("unexpected_count") or 0)
        named = np.asarray(info.get("partial_unexpected_index_list") or [], dtype=np.int64)
        found = _gap_ranges(numbers, named) if self.check.gaps else _runs(named)
        if self.collect_all:
            self.ranges.extend(found)
        if self.check.gaps:
            self.gaps = sorted({*self.gaps, *found})[:max_examples]
        for a, b in found:  # a gap may be long: take no more blocks of it than can be named
            self.blocks.extend(range(a, min(b, a + max_examples)))
        self.blocks = sorted(set(self.blocks))[:max_examples]

    def outcome(self) -> ExpectationOutcome:
        c = self.check
        if self.error:
            detail = f"{self.described} raised: {self.error}"
        elif self.success:
            detail = self.described
        else:
            unit = "gap(s)" if c.gaps else "block(s)"
            detail = f"{self.count:,} {unit}: {c.explain} [{self.described}]"
        return ExpectationOutcome(
            c.name, c.table, self.success, list(self.blocks), self.count, detail,
            gaps=tuple(self.gaps),
            all_offending=tuple(coalesce(self.ranges)) if self.collect_all else None)


def _missing_table(lake: BronzeLake, name: str, start: int, end: int, max_examples: int,
                   collect_all: bool) -> ExpectationOutcome:
    """A failed outcome for a child table that does not exist: every block lacks its rows.

    (Ingestion always creates all three tables, empty or not, so a missing one was deleted.
    Without this, a missing ``logs`` table would pass and a missing ``transactions`` table would
    name only the blocks with transactions.)"""
    return ExpectationOutcome(
        "table exists", name, False, list(range(start, min(end, start + max_examples))),
        end - start, f"{lake.table_uri(name)} is not a Delta table (deleted, or no _delta_log): "
                     f"the {name} rows of every block are missing",
        gaps=((start, end),), all_offending=((start, end),) if collect_all else None)


def _gap_ranges(numbers: pd.DataFrame, after: np.ndarray) -> list[tuple[int, int]]:
    """The missing blocks before each block of ``after`` (rows of the contiguity check that
    failed), as ranges ``[previous + 1, block)`` from the ``block_numbers`` frame."""
    if len(after) == 0:
        return []
    rows = numbers[numbers.index.isin(after)]
    previous = rows.groupby(level=0)["prev_number"].min()
    return [(int(p) + 1, int(b)) for b, p in zip(previous.index, previous.to_numpy(), strict=True)
            if b > p + 1]


def validate_range(lake: BronzeLake, start: int | None = None, end: int | None = None, *,
                   chain_id: int | None = None, max_examples: int = 20,
                   window: int | None = None, collect_all: bool = False,
                   deleted_tables: tuple[str, ...] = ()) -> ContinuityReport:
    """Run the continuity suites over blocks ``[start, end)`` and the boundary before ``start``.

    ``None`` bounds default to the stored range; ``window`` (blocks validated at once) defaults
    to about ``ROWS_PER_WINDOW`` rows. Raises ``NothingToValidate`` (a ``ValueError``) when the
    lake holds no blocks or the range does not overlap them, ``ValueError`` when ``end <= start``.

    Each outcome names its first ``max_examples`` offending blocks (and, for contiguity, its
    first ``max_examples`` gaps whole). ``collect_all=True`` also keeps *every* offending block
    (``ExpectationOutcome.all_offending``, ``ContinuityReport.all_offending_ranges``), from the
    same GX results: what ``chainlake repair`` re-ingests. ``deleted_tables`` count as missing
    even if they exist (repair recreates a deleted table, empty, before it validates).
    """
    began = time.monotonic()
    if max_examples < 1:
        raise ValueError("max_examples must be >= 1")
    stored = lake.stored_bounds()
    if stored is None:
        raise NothingToValidate(f"nothing to validate: no blocks stored in {lake.table_uri('blocks')}")
    first, last = stored
    start = first if start is None else start
    end = last + 1 if end is None else end
    if start < 0 or end <= start:
        raise ValueError(f"empty or invalid block range [{start}, {end})")
    if end <= first or start > last:
        raise NothingToValidate(f"nothing to validate: blocks [{start}, {end}) do not overlap the "
                                f"stored blocks [{first}, {last + 1})")
    if chain_id is None:
        chain_id = _majority_chain_id(lake, start, end)
    size = window if window is not None else _window_size(lake, stored)
    checks = _checks(chain_id)
    suites = _Suites(checks, max_examples)
    tallies = [_Tally(c, collect_all=collect_all) for c in checks]
    rows = dict.fromkeys(TABLE_ORDER, 0)
    # The block the range's first block must follow when the boundary block is not stored:
    # with blocks stored before the range, block start - 1 is missing (a gap).
    previous = start - 2 if first < start else None
    boundary = None
    windows = 0
    for lo in range(start, end, size):
        hi = min(lo + size, end)
        raw = _to_pandas({"blocks": _read(lake, "blocks", max(lo - 1, 0), hi),
                          "transactions": _read(lake, "transactions", lo, hi),
                          "logs": _read(lake, "logs", lo, hi)})
        blocks = _blocks_frame(raw["blocks"], lo, previous)
        if lo == start and len(raw["blocks"]) and int(raw["blocks"]["block_number"].iloc[0]) == lo - 1:
            boundary = lo - 1
        hashes = blocks.drop_duplicates("block_number").set_index("block_number")["block_hash"]
        frames = {
            "block_numbers": _numbers_frame(blocks, end if hi == end else None, previous, lo),
            "blocks": blocks,
            "transactions": _transactions_frame(blocks, raw["transactions"], chain_id, hashes),
            "logs": _logs_frame(raw["logs"], raw["transactions"], chain_id, hashes),
        }
        for tally, result in zip(tallies, suites.run(frames, collect_all), strict=True):
            tally.add(result, max_examples, frames["block_numbers"])
        rows["blocks"] += len(blocks)
        rows["transactions"] += len(raw["transactions"])
        rows["logs"] += len(raw["logs"])
        if len(blocks):
            previous = int(blocks["block_number"].max())
        windows += 1
    notes = [f"the lake's highest stored block is {last}"] if end > last + 1 else []
    missing = [name for name in TABLE_ORDER
               if name in deleted_tables or lake.table(name) is None]
    absent = [_missing_table(lake, name, start, end, max_examples, collect_all) for name in missing]
    return ContinuityReport(start=start, end=end,
                            outcomes=absent + [t.outcome() for t in tallies],
                            rows=rows, chain_id=chain_id, boundary=boundary, lake=lake.root,
                            seconds=time.monotonic() - began, windows=windows, notes=notes,
                            missing_tables=missing)
