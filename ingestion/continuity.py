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
``traces``         one row per block number of the *traces window* (below) present in ``blocks``,
                   ``transactions`` or ``traces``; a top-level trace is one with a
                   ``transaction_index`` and an empty ``trace_address``:
                   - every transaction has exactly one top-level trace with its
                     ``transaction_index`` and ``transaction_hash``;
                   - the top-level traces of a block number its ``transaction_count`` (a missing
                     block row counts as -1): a block with transactions but no traces fails;
                   - a top-level trace's ``status`` equals its transaction's ``receipt_status``
                     (not checked where that is null: before Byzantium);
                   - every trace of a transaction carries a (block, index, hash) that exists;
                   - every row carries its block's hash and the chain id;
                   - the distinct trace indexes are 0..n-1 (no gap), and no
                     ``(block_number, trace_index)`` occurs twice.

The traces window: traces were added to chainlake later than the other tables, a node may serve
no tracing API, and a run may write only some tables (``--datasets``), so the ``traces`` table may
be absent, empty or hold only part of the lake. Its checks apply to the blocks of the range from
the lowest to the highest block the table holds (from its Delta file statistics): there a missing
trace is a failure like any other; outside it the report says the traces were not checked
(``ContinuityReport.not_checked`` when no block of the range is in the window, a note when only
some are) — that is not a failure. A traces table that does not exist is no failure either
(ingestion may never have written one), nor is one in ``deleted_tables``: it holds no window.

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

A core child table (``transactions``, ``logs``) that does not exist (directory deleted, or no
``_delta_log``) is a failed outcome ``table exists`` naming every block of the range: ingestion
always creates those tables, and without it a deleted ``logs`` table would pass.

``tables`` restricts the expectations to those about some of the tables (the Dagster checks on
``bronze/traces`` run apart from the others): ``blocks`` is always read (the windows, the hashes),
``transactions`` when its or the traces' expectations run, ``logs`` and ``traces`` only for their
own. The traces read takes only the columns the suite needs (no input, output, addresses).

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

import gc
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from ingestion.coverage import file_spans
from ingestion.schemas import TABLES
from ingestion.sink import range_dataset

if TYPE_CHECKING:
    from ingestion.sink import BronzeLake

TABLE_ORDER = ("blocks", "transactions", "logs", "traces")
CORE_TABLES = ("blocks", "transactions", "logs")  # ingestion always creates these
ROWS_PER_WINDOW = 500_000  # rows of the tables validated at once (~0.5 GB at peak)
MIN_WINDOW = 1_000  # blocks
_COLUMNS = {
    "blocks": ["chain_id", "block_number", "block_hash", "parent_hash", "block_timestamp",
               "transaction_count"],
    "transactions": ["chain_id", "block_number", "block_hash", "transaction_index",
                     "transaction_hash"],
    "logs": ["chain_id", "block_number", "block_hash", "transaction_index", "transaction_hash",
             "log_index"],
    "traces": ["chain_id", "block_number", "block_hash", "transaction_index", "transaction_hash",
               "trace_address", "status", "trace_index"],
}
_RECEIPT_STATUS = "receipt_status"  # read from transactions for the windows the traces cover


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
    # Tables whose expectations did not run over any block of the range, with the reason
    # (traces outside the traces window): not a failure.
    not_checked: dict[str, str] = field(default_factory=dict)
    # The blocks [a, b) of the range the traces expectations ran over (None: none), and the
    # blocks [lowest, highest + 1) the traces table holds (None: absent or empty).
    traces_checked: tuple[int, int] | None = None
    traces_window: tuple[int, int] | None = None
    tables: tuple[str, ...] = TABLE_ORDER  # the tables whose expectations were asked for

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
        if "blocks" not in self.tables:  # the links were not checked
            boundary = "expectations about " + ", ".join(self.tables) + " only"
        lines.append(f"  {chain}; {boundary}; rows read: "
                     + ", ".join(f"{self.rows.get(t, 0):,} {t}" for t in TABLE_ORDER) + took)
        lines.extend(f"  note: {n}" for n in self.notes)
        lines.extend(f"  skip  {table:<12} not checked: {why}"
                     for table, why in self.not_checked.items())
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


def _window_size(lake: BronzeLake, stored: tuple[int, int], tables: Iterable[str]) -> int:
    """Blocks per window for about ``ROWS_PER_WINDOW`` rows, from the stored rows per block of
    each table read, over the blocks it spans (traces may cover only part of the lake, densely)."""
    per_block = 0.0
    for name in tables:
        files = file_spans(lake.file_stats(name))
        records = sum(max(f.rows, 0) for f in files)
        if not records:
            continue
        known = [f for f in files if f.known]
        lo = min((f.lo for f in known), default=stored[0])
        hi = max((f.hi for f in known), default=stored[1])
        per_block += records / max(hi - lo + 1, 1)
    return max(MIN_WINDOW, int(ROWS_PER_WINDOW / max(per_block, 1.0)))


def traces_window(lake: BronzeLake) -> tuple[int, int] | None:
    """Blocks ``[lowest, highest + 1)`` the ``traces`` table holds, from its Delta file
    statistics (its ``block_number`` column is read only for files without them); None when
    the table does not exist or is empty."""
    files = [f for f in file_spans(lake.file_stats("traces")) if f.rows != 0]
    if not files:
        return None
    if all(f.known for f in files):
        return min(f.lo for f in files), max(f.hi for f in files) + 1
    numbers = lake.table("traces").to_pyarrow_dataset().to_table(columns=["block_number"])[0]
    if len(numbers) == 0:
        return None
    return pc.min(numbers).as_py(), pc.max(numbers).as_py() + 1


def _where(lo: int, hi: int) -> pads.Expression:
    return (pads.field("block_number") >= lo) & (pads.field("block_number") < hi)


def _read(lake: BronzeLake, name: str, lo: int, hi: int, extra: tuple[str, ...] = ()) -> pa.Table:
    """The columns the suite needs of the rows of blocks ``[lo, hi)`` (pruned by file stats)."""
    if hi <= lo:
        return _empty(name, extra)
    return lake.read_range(name, lo, hi, [*_COLUMNS[name], *extra])


def _empty(name: str, extra: tuple[str, ...] = ()) -> pa.Table:
    return TABLES[name].arrow_schema.empty_table().select([*_COLUMNS[name], *extra])


def _majority_chain_id(lake: BronzeLake, start: int, end: int) -> int | None:
    """The chain id of most blocks of the range (ties: the smallest), streaming one column."""
    dt = lake.table("blocks")
    counts: dict[int, int] = {}
    for batch in range_dataset(dt, start, end).to_batches(columns=["chain_id"],
                                                          filter=_where(start, end)):
        for item in pc.value_counts(batch.column(0)).to_pylist():
            counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
    if not counts:
        return None
    top = max(counts.values())
    return min(c for c, n in counts.items() if n == top)


def _codes(columns: list[pa.ChunkedArray]) -> list[pa.ChunkedArray]:
    """Integer codes for hex strings, equal exactly when the strings are (one dictionary)."""
    chunks = [_as_fixed_width(chunk) for column in columns for chunk in column.chunks]
    if len({chunk.type for chunk in chunks}) > 1:  # mixed widths: strings after all
        chunks = [chunk.cast(pa.string()) if chunk.type != pa.string() else chunk
                  for chunk in chunks]
    encoded = pa.chunked_array(chunks, type=chunks[0].type if chunks else pa.string()) \
        .dictionary_encode()
    indices = pa.chunked_array([chunk.indices for chunk in encoded.chunks], type=pa.int32())
    out, at = [], 0
    for column in columns:
        codes = indices.slice(at, len(column))
        at += len(column)
        out.append(pc.fill_null(codes, -1).cast(pa.int64()))
    return out


def _as_fixed_width(chunk: pa.Array) -> pa.Array:
    """The same strings as ``fixed_size_binary`` when they all have one length (hashes always
    do, unless null), else ``chunk``: dictionary-encoding fixed-width values is ~3x faster
    (no offsets to follow), and equal bytes are equal strings."""
    n = len(chunk)
    if n == 0 or chunk.null_count or chunk.type != pa.string():
        return chunk
    offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32, count=n + 1,
                            offset=4 * chunk.offset)
    width = int(offsets[1] - offsets[0])
    if width == 0 or int(offsets[-1] - offsets[0]) != width * n \
            or not np.all(np.diff(offsets) == width):
        return chunk
    data = chunk.buffers()[2].slice(int(offsets[0]), width * n)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, data])


def _to_pandas(raw: dict[str, pa.Table]) -> dict[str, pd.DataFrame]:
    """pandas frames of the raw tables with hashes as codes, sorted by block and index.

    ``traces`` (when present) have ``trace_address`` replaced by its length ``depth`` and a
    null ``transaction_index`` (rewards) by -1."""
    children = [name for name in raw if name != "blocks"]
    blocks = raw["blocks"]
    block_codes = _codes([blocks["block_hash"], blocks["parent_hash"],
                          *(raw[name]["block_hash"] for name in children)])
    tx_codes = _codes([raw[name]["transaction_hash"] for name in children])
    replaced = {"blocks": {"block_hash": block_codes[0], "parent_hash": block_codes[1]}}
    for i, name in enumerate(children):
        replaced[name] = {"block_hash": block_codes[2 + i], "transaction_hash": tx_codes[i]}
    frames = {}
    for name, table in raw.items():
        for column, codes in replaced[name].items():
            table = table.set_column(table.schema.get_field_index(column), column, codes)
        if name == "traces":
            at = table.schema.get_field_index("trace_address")
            table = table.set_column(at, "depth", pc.list_value_length(table["trace_address"])
                                     .cast(pa.int64()))
            at = table.schema.get_field_index("transaction_index")
            table = table.set_column(at, "transaction_index",
                                     pc.fill_null(table["transaction_index"], -1))
        frame = table.to_pandas()
        keys = ["block_number"] + (["trace_index"] if name == "traces" else
                                   [k for k in ("transaction_index", "log_index") if k in frame])
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
               block_hashes: pd.Series, distinct: bool = False) -> pd.DataFrame:
    """Aggregate a child table per block: rows, index errors, wrong chain id, stale block hash.

    ``distinct``: the index errors are those of the distinct indexes (a gap; duplicates are
    counted apart, as ``duplicate_rows``)."""
    numbers = frame["block_number"]
    hashes = numbers.map(block_hashes)
    per = pd.DataFrame({
        "block_number": numbers.to_numpy(),
        "stale": (hashes.isna() | (hashes != frame["block_hash"])).to_numpy(),
        "wrong_chain": (frame["chain_id"] != chain_id).to_numpy(),
    })
    agg = per.groupby("block_number").agg(rows=("stale", "size"), stale_rows=("stale", "sum"),
                                          wrong_chain_rows=("wrong_chain", "sum"))
    if distinct:
        twice = frame.duplicated(["block_number", index_column])
        agg["duplicate_rows"] = twice.groupby(numbers).sum().reindex(agg.index, fill_value=0)
        frame = frame[~twice.to_numpy()]
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


def _traces_frame(blocks: pd.DataFrame, txs: pd.DataFrame, traces: pd.DataFrame,
                  chain_id: int | None, block_hashes: pd.Series, lo: int, hi: int
                  ) -> pd.DataFrame:
    """One row per block of ``[lo, hi)`` (the window's part of the traces window) present in
    ``blocks``, ``transactions`` or ``traces``; ``traces`` holds only rows of ``[lo, hi)``."""
    blocks = blocks[(blocks["block_number"] >= lo) & (blocks["block_number"] < hi)]
    txs = txs[(txs["block_number"] >= lo) & (txs["block_number"] < hi)]
    counts = blocks.drop_duplicates("block_number").set_index("block_number")["transaction_count"]
    agg = _per_block(traces, "trace_index", chain_id, block_hashes, distinct=True)
    keys = ["block_number", "transaction_index", "transaction_hash"]
    scoped = traces[traces["transaction_index"] >= 0]
    top = scoped[scoped["depth"] == 0]
    top_counts = top.groupby("block_number").size()
    # Each transaction: how many top-level traces carry its (index, hash), and their status.
    tops = top.groupby(keys).agg(top_traces=("status", "size"), status=("status", "first"))
    per_tx = txs[[*keys, _RECEIPT_STATUS]].merge(tops, left_on=keys, right_index=True, how="left")
    without_one = per_tx["top_traces"].fillna(0) != 1
    mismatch = (per_tx[_RECEIPT_STATUS].notna() & per_tx["status"].notna()
                & (per_tx[_RECEIPT_STATUS] != per_tx["status"]))
    by_block = pd.DataFrame({"without_one": without_one.to_numpy(),
                             "mismatch": mismatch.to_numpy()},
                            index=per_tx["block_number"].to_numpy()).groupby(level=0).sum()
    # Each trace of a transaction: is there a transaction of that (index, hash)?
    known = txs[keys[:2] + ["transaction_hash"]].drop_duplicates(keys[:2]).rename(
        columns={"transaction_hash": "tx_hash"})
    joined = scoped[keys].merge(known, on=keys[:2], how="left")
    orphan = joined["tx_hash"].isna() | (joined["tx_hash"] != joined["transaction_hash"])
    orphans = orphan.groupby(joined["block_number"]).sum()
    index = counts.index.union(agg.index).union(pd.Index(txs["block_number"].unique()))
    return pd.DataFrame({
        "block_number": index.to_numpy(),
        # -1: the block row is missing.
        "transaction_count": counts.reindex(index, fill_value=-1).to_numpy(),
        "top_level_traces": top_counts.reindex(index, fill_value=0).to_numpy(),
        "transactions_without_one_top_level_trace":
            by_block["without_one"].reindex(index, fill_value=0).to_numpy(),
        "status_mismatches": by_block["mismatch"].reindex(index, fill_value=0).to_numpy(),
        "traces_without_transaction": orphans.reindex(index, fill_value=0).to_numpy(),
        "trace_indexes_ok": agg["indexes_ok"].reindex(index, fill_value=True).to_numpy(),
        "duplicate_trace_index_rows": agg["duplicate_rows"].reindex(index, fill_value=0).to_numpy(),
        "stale_block_hash_rows": agg["stale_rows"].reindex(index, fill_value=0).to_numpy(),
        "wrong_chain_id_rows": agg["wrong_chain_rows"].reindex(index, fill_value=0).to_numpy(),
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


def _of_the_block_and_chain(table: str, chain_id: int | None) -> list[_Check]:
    """A child table's rows carry their block's hash and the lake's chain id (each frame counts
    the rows that do not, per block)."""
    return [
        _Check(f"{table} carry block hash", table, table,
               lambda x: x.ExpectColumnValuesToBeBetween(column="stale_block_hash_rows",
                                                         max_value=0),
               "block_hash differs from the blocks table's (or no block row)"),
        _Check(f"{table} chain id", table, table,
               lambda x: x.ExpectColumnValuesToBeBetween(column="wrong_chain_id_rows",
                                                         max_value=0),
               f"chain_id is not {chain_id}"),
    ]


def _checks(chain_id: int | None, tables: Iterable[str] = TABLE_ORDER) -> list[_Check]:
    """The expectations about ``tables``, in report order."""
    chain = [chain_id] if chain_id is not None else []
    every = [
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
        *_of_the_block_and_chain('transactions', chain_id),
        _Check("log indexes 0..m-1", "logs", "logs",
               lambda x: x.ExpectColumnValuesToBeInSet(column="log_indexes_ok", value_set=[True]),
               "log_index not exactly 0..m-1 (gap or duplicate)"),
        _Check("log transactions exist", "logs", "logs",
               lambda x: x.ExpectColumnValuesToBeBetween(column="logs_without_transaction",
                                                         max_value=0),
               "a log's (transaction_index, transaction_hash) is not in transactions"),
        *_of_the_block_and_chain('logs', chain_id),
        _Check("one top-level trace per transaction", "traces", "traces",
               lambda x: x.ExpectColumnValuesToBeBetween(
                   column="transactions_without_one_top_level_trace", max_value=0),
               "a transaction without exactly one top-level trace (trace_address [], its "
               "transaction_index and transaction_hash)"),
        _Check("top-level traces match transaction count", "traces", "traces",
               lambda x: x.ExpectColumnPairValuesToBeEqual(
                   column_A="transaction_count", column_B="top_level_traces"),
               "top-level traces differ from transaction_count (no traces for a block with "
               "transactions; -1: block row missing)"),
        _Check("trace status matches receipt", "traces", "traces",
               lambda x: x.ExpectColumnValuesToBeBetween(column="status_mismatches", max_value=0),
               "a top-level trace's status differs from its transaction's receipt_status"),
        _Check("trace transactions exist", "traces", "traces",
               lambda x: x.ExpectColumnValuesToBeBetween(column="traces_without_transaction",
                                                         max_value=0),
               "a trace's (transaction_index, transaction_hash) is not in transactions"),
        *_of_the_block_and_chain('traces', chain_id),
        _Check("trace indexes 0..n-1", "traces", "traces",
               lambda x: x.ExpectColumnValuesToBeInSet(column="trace_indexes_ok", value_set=[True]),
               "trace_index not 0..n-1 (a gap)"),
        _Check("trace indexes unique", "traces", "traces",
               lambda x: x.ExpectColumnValuesToBeBetween(column="duplicate_trace_index_rows",
                                                         max_value=0),
               "(block_number, trace_index) occurs more than once"),
    ]
    wanted = set(tables)
    return [c for c in every if c.table in wanted]


FRAMES = ("block_numbers", "blocks", "transactions", "logs", "traces")


_imported = False  # great_expectations imported (and the heap frozen) in this process
_preloading: threading.Thread | None = None
_preload_lock = threading.Lock()


def _import_great_expectations() -> None:
    """Import GX once per process (validation imports it here, or ``preload`` ahead)."""
    global _imported
    if _imported:
        return
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations.expectations  # noqa: F401
    from great_expectations.data_context.types.base import DataContextConfig  # noqa: F401

    # GX's modules bring ~400,000 objects that live as long as the process. Frozen (moved out
    # of the collector's generations; reference counting still frees them), they cost no later
    # full collection a walk, and the interpreter's exit skips its collections over them: a
    # Dagster run's process exited 1.2 s after its run ended, 0.05 s frozen.
    gc.freeze()
    _imported = True


def preload() -> None:
    """Start importing great_expectations in a background thread.

    The import is most of a validation's fixed cost (~2.8 CPU-s and as many seconds), and a
    Dagster run validates right after it ingests. Started when ingestion starts, the import
    overlaps Spark's start and the micro-batches, during which the ingesting thread mostly
    waits on the JVM. Validation waits for this thread before it imports anything itself: GX's
    modules cannot be imported from two threads at once.
    """
    global _preloading
    with _preload_lock:
        if _preloading is None:
            _preloading = threading.Thread(target=_import_great_expectations,
                                           name="chainlake-gx-preload", daemon=True)
            _preloading.start()


def _await_preload() -> None:
    with _preload_lock:
        thread = _preloading
    if thread is not None:
        thread.join()


class _Suites:
    """One ephemeral GX context with one suite + validation definition per prepared frame."""

    def __init__(self, checks: list[_Check], max_examples: int) -> None:
        _await_preload()
        _import_great_expectations()
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
        self.frames = [f for f in FRAMES if any(c.frame == f for c in checks)]
        for frame in self.frames:
            suite = self.context.suites.add(gx.ExpectationSuite(
                name=f"continuity_{frame}",
                expectations=[c.build(gxe) for c in checks if c.frame == frame]))
            self.expectation_ids[frame] = [e.id for e in suite.expectations]
            batch = source.add_dataframe_asset(frame).add_batch_definition_whole_dataframe("all")
            self.validations[frame] = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=f"continuity_{frame}", data=batch, suite=suite))

    def run(self, frames: dict[str, pd.DataFrame], collect_all: bool = False) -> list[Any]:
        """Expectation results, in the order of ``self.checks``; None for the checks of a frame
        that ``frames`` lacks (not validated in this window: traces outside their window).

        ``collect_all``: name every unexpected row, not only the first ``max_examples``. GX's
        pandas engine lists the index of every unexpected row anyway and then cuts the list at
        ``partial_unexpected_count`` (unexpected *values* stay capped at 200), so raising the
        cap to the frame's length costs no extra pass over the data (see the module docstring).
        """
        by_id: dict[str, Any] = {}
        for frame in self.frames:
            if frame not in frames:
                continue
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
        position = dict.fromkeys(self.frames, 0)
        for check in self.checks:
            ordered.append(by_id.get(self.expectation_ids[check.frame][position[check.frame]]))
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
    """A failed outcome for a core child table that does not exist: every block lacks its rows.

    (Ingestion always creates the core tables, empty or not, so a missing one was deleted.
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
                   deleted_tables: tuple[str, ...] = (),
                   tables: Iterable[str] | None = None) -> ContinuityReport:
    """Run the continuity suites over blocks ``[start, end)`` and the boundary before ``start``.

    ``None`` bounds default to the stored range; ``window`` (blocks validated at once) defaults
    to about ``ROWS_PER_WINDOW`` rows. Raises ``NothingToValidate`` (a ``ValueError``) when the
    lake holds no blocks or the range does not overlap them, ``ValueError`` when ``end <= start``.

    Each outcome names its first ``max_examples`` offending blocks (and, for contiguity, its
    first ``max_examples`` gaps whole). ``collect_all=True`` also keeps *every* offending block
    (``ExpectationOutcome.all_offending``, ``ContinuityReport.all_offending_ranges``), from the
    same GX results: what ``chainlake repair`` re-ingests. ``deleted_tables`` count as missing
    even if they exist (repair recreates a deleted table, empty, before it validates); for
    ``traces`` that means no traces window (nothing checked). ``tables``: run only the
    expectations about these tables (default: all of ``TABLE_ORDER``).

    The traces expectations run over the blocks of the range inside the traces window (see the
    module docstring); ``ContinuityReport.not_checked`` says why when there are none.
    """
    began = time.monotonic()
    if max_examples < 1:
        raise ValueError("max_examples must be >= 1")
    selected = tuple(TABLE_ORDER) if tables is None else tuple(t for t in TABLE_ORDER if t in tables)
    unknown = set(tables or ()) - set(TABLE_ORDER)
    if unknown or not selected:
        raise ValueError(f"tables must be some of {', '.join(TABLE_ORDER)}, got "
                         f"{', '.join(sorted(unknown)) or 'none'}")
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
    notes = [f"the lake's highest stored block is {last}"] if end > last + 1 else []
    not_checked: dict[str, str] = {}
    held = traced = None  # the traces window, and its part of the range
    if "traces" in selected:
        held = None if "traces" in deleted_tables else traces_window(lake)
        if held is not None and held[0] < end and held[1] > start:
            traced = (max(start, held[0]), min(end, held[1]))
        not_checked_why = _traces_coverage(lake, held, traced, start, end,
                                           "traces" in deleted_tables)
        if traced is None:
            not_checked["traces"] = not_checked_why
        elif not_checked_why:
            notes.append(not_checked_why)
    active = tuple(t for t in selected if t not in not_checked)
    if chain_id is None:
        chain_id = _majority_chain_id(lake, start, end)
    read = {"blocks", *active} | ({"transactions"} if {"logs", "traces"} & set(active) else set())
    size = window if window is not None else _window_size(lake, stored, read)
    # Only traces expectations: only the blocks of the traces window need reading.
    first_lo, last_hi = traced if set(active) <= {"traces"} and traced else (start, end)
    checks = _checks(chain_id, active)
    suites = _Suites(checks, max_examples) if checks else None
    tallies = [_Tally(c, collect_all=collect_all) for c in checks]
    rows = dict.fromkeys(TABLE_ORDER, 0)
    # The block the range's first block must follow when the boundary block is not stored:
    # with blocks stored before the range, block start - 1 is missing (a gap).
    previous = start - 2 if first < start else None
    boundary = None
    windows = 0
    for lo in range(first_lo, last_hi if active else first_lo, size):
        hi = min(lo + size, last_hi)
        # The part of this window the traces expectations cover (empty: none).
        t_lo, t_hi = (max(lo, traced[0]), min(hi, traced[1])) if traced else (lo, lo)
        in_traces = t_hi > t_lo
        raw_tables = {"blocks": _read(lake, "blocks", max(lo - 1, 0), hi)}
        if {"transactions", "logs"} & set(active) or in_traces:
            raw_tables["transactions"] = _read(lake, "transactions", lo, hi,
                                               (_RECEIPT_STATUS,) if in_traces else ())
        if "logs" in active:
            raw_tables["logs"] = _read(lake, "logs", lo, hi)
        if in_traces:
            raw_tables["traces"] = _read(lake, "traces", t_lo, t_hi)
        raw = _to_pandas(raw_tables)
        blocks = _blocks_frame(raw["blocks"], lo, previous)
        if lo == start and len(raw["blocks"]) and int(raw["blocks"]["block_number"].iloc[0]) == lo - 1:
            boundary = lo - 1
        hashes = blocks.drop_duplicates("block_number").set_index("block_number")["block_hash"]
        frames = {
            "block_numbers": _numbers_frame(blocks, end if hi == end else None, previous, lo),
            "blocks": blocks,
        }
        if "transactions" in active:
            frames["transactions"] = _transactions_frame(blocks, raw["transactions"], chain_id,
                                                         hashes)
        if "logs" in active:
            frames["logs"] = _logs_frame(raw["logs"], raw["transactions"], chain_id, hashes)
        if in_traces:
            frames["traces"] = _traces_frame(blocks, raw["transactions"], raw["traces"], chain_id,
                                             hashes, t_lo, t_hi)
        results = suites.run(frames, collect_all) if suites is not None else []
        for tally, result in zip(tallies, results, strict=True):
            if result is not None:
                tally.add(result, max_examples, frames["block_numbers"])
        rows["blocks"] += len(blocks)
        for name in ("transactions", "logs", "traces"):
            rows[name] += len(raw[name]) if name in raw else 0
        if len(blocks):
            previous = int(blocks["block_number"].max())
        windows += 1
    missing = [name for name in CORE_TABLES if name in selected
               and (name in deleted_tables or lake.table(name) is None)]
    absent = [_missing_table(lake, name, start, end, max_examples, collect_all) for name in missing]
    outcomes = absent + [t.outcome() for t in tallies]
    return ContinuityReport(start=start, end=end, outcomes=outcomes,
                            rows=rows, chain_id=chain_id, boundary=boundary, lake=lake.root,
                            seconds=time.monotonic() - began, windows=windows, notes=notes,
                            missing_tables=missing, not_checked=not_checked,
                            traces_checked=traced, traces_window=held, tables=selected)


def _traces_coverage(lake: BronzeLake, held: tuple[int, int] | None,
                     traced: tuple[int, int] | None, start: int, end: int, deleted: bool) -> str:
    """Why the traces of (part of) ``[start, end)`` are not checked; "" when all of it is."""
    if held is None:
        if deleted or lake.table("traces") is None:
            return f"{lake.table_uri('traces')} does not exist (no traces ingested)"
        return "the traces table holds no rows (no traces ingested)"
    holds = f"the traces table holds blocks {held[0]}..{held[1] - 1}"
    if traced is None:
        return f"blocks [{start}, {end}) are outside the traces window: {holds}"
    if traced == (start, end):
        return ""
    outside = ranges_text(r for r in ((start, traced[0]), (traced[1], end)) if r[1] > r[0])
    return f"traces checked over blocks [{traced[0]}, {traced[1]}) only ({holds}); not over {outside}"
