"""Silver tables, built from bronze: ``silver/{token_transfers,contracts,tokens}`` (no Dagster).

Each silver table is a function of one source table over a block range:

* ``token_transfers`` = :func:`decode_token_transfers` of ``bronze/logs``;
* ``contracts`` = :func:`contracts_from_traces` of ``bronze/traces``;
* ``tokens`` = :func:`fetch_tokens` (``eth_call`` at the creation block) of the ERC-20/721 rows of
  ``silver/contracts``, keyed by the contract's creation block.

**Same machinery as bronze.** :class:`SilverLake` is :class:`BronzeLake` over the ``silver``
layer: tables are created once, race-free, before any write, stamped with the chain identity of
the lake's bronze tables (a silver table of another chain is refused), and every write replaces
exactly a block range ``[a, b)`` in one commit (retried on conflicts). So building a range again
gives the same table, whatever ran before, and a reorg repaired in bronze is repaired in silver by
building its range again.

**Bounded memory.** A range is built in windows of about :data:`WINDOW_ROWS` source rows, cut
from the source table's per-file statistics (rows and block span of each file, no data read):
one window is read, derived and replaced at a time.

**Only what changed** (``watermark=``, what the Dagster assets use). Following the head, the open
partition is built again by every run; decoding its whole range each time would grow with the
partition. Every chainlake commit records the block range it replaced (``chainlake.replacedBlocks``
in the commit info), so a build can ask the source table's Delta history which of its blocks
changed since the source version it last built from, and rebuild just those. That version is
kept in the silver table itself, as a Delta application transaction ``(app id = the watermark's
name, version = source version)`` committed with the build's last window (or alone, when nothing
changed). A source commit that may have changed rows without saying which (anything but
chainlake's range replaces, compaction and property changes), or history the log no longer
holds, makes the build rebuild its whole range. A build that stops half-way has not moved its
watermark: the next one redoes its work (idempotently).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import TableNotFoundError

from ingestion.coverage import Range, coalesce, file_spans, ranges_text, rows_in_range
from ingestion.datasets.contracts import contracts_from_traces
from ingestion.datasets.token_transfers import decode_token_transfers, transfer_rows_per_log
from ingestion.datasets.tokens import fetch_tokens
from ingestion.identity import ChainIdentity, check_node_serves
from ingestion.schemas import SILVER_TABLES
from ingestion.sink import (
    WRITER_APP_ID,
    BronzeLake,
    LakeError,
    WriteResult,
    _with_retries,
    commits_since,
    replaced_range,
)

if TYPE_CHECKING:
    from ingestion.coverage import FileSpan
    from ingestion.rpc import RpcClient

log = logging.getLogger("chainlake.silver")

__all__ = [
    "SOURCES",
    "WINDOW_ROWS",
    "CheckReport",
    "SilverBuild",
    "SilverLake",
    "SourceChangedError",
    "build_contracts",
    "build_token_transfers",
    "build_tokens",
    "changed_ranges",
    "check_contracts",
    "check_token_transfers",
    "check_tokens",
    "compare_contracts",
    "compare_token_transfers",
    "compare_tokens",
    "row_windows",
]

# Source rows read at once (bronze logs are ~0.5 KB a row in memory: ~250 MB a window).
WINDOW_ROWS = 500_000
# Offending keys a check report lists.
MAX_EXAMPLES = 20

# (layer, table) each silver table is derived from.
SOURCES: dict[str, tuple[str, str]] = {
    "token_transfers": ("bronze", "logs"),
    "contracts": ("bronze", "traces"),
    "tokens": ("silver", "contracts"),
}

OPERATION_KEY = "chainlake.operation"  # commit info: what a commit that replaced no range did
WATERMARK_OPERATION = "watermark"
# Commits that change no row: chainlake's compaction (ingestion.maintenance), watermark-only
# commits, and Delta operations on metadata.
_NO_ROW_CHANGE = {"compact", WATERMARK_OPERATION}
_METADATA_OPERATIONS = {"CREATE TABLE", "SET TBLPROPERTIES", "VACUUM START", "VACUUM END",
                        "OPTIMIZE", "UPDATE TABLE METADATA", "ADD CONSTRAINT"}

# The traces a contracts window needs: successful creates, and every transaction's root trace
# (its sender is the contract's ``transaction_from_address``).
_TRACE_COLUMNS = ["chain_id", "block_number", "block_hash", "block_timestamp", "transaction_index",
                  "transaction_hash", "from_address", "to_address", "output", "trace_type",
                  "status", "trace_address"]


def _creates_or_roots(traces: pa.RecordBatch) -> pa.RecordBatch:
    successful_create = pc.and_(pc.equal(traces["trace_type"], "create"),
                                pc.equal(traces["status"], 1))
    root = pc.equal(pc.list_value_length(traces["trace_address"]), 0)
    return traces.filter(pc.fill_null(pc.or_(successful_create, root), False))


class SourceChangedError(RuntimeError):
    """The node's chain no longer has a block the lake built from (a reorg in progress): retry
    once bronze has repaired it."""


class SilverLake(BronzeLake):
    """The lake root's ``silver/<table>`` Delta tables (``schemas.SILVER_TABLES``).

    Everything :class:`BronzeLake` does for its tables (race-free creation, schema checks,
    ``read_range``, ``replace_range``, ``file_stats``) applies; ``bronze`` is the same root's
    bronze layer, whose chain identity the silver tables carry.
    """

    layer = "silver"
    tables = SILVER_TABLES

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.bronze = BronzeLake(self.root)

    def layer_of(self, layer: str) -> BronzeLake:
        return self.bronze if layer == "bronze" else self

    def prepare_silver(self) -> ChainIdentity | None:
        """Create the missing silver tables (before any write), with the bronze tables' chain
        identity; ``LakeError`` when silver already belongs to another chain than bronze."""
        identity = self.bronze.identity()
        stored = self.identity()
        if identity is not None and stored is not None and stored != identity:
            raise LakeError(f"the silver tables of {self.root} hold {stored.describe()}, the "
                            f"bronze tables {identity.describe()}: delete {self.root}/silver and "
                            f"build it again")
        if identity is not None:
            self.prepare(identity)
        else:  # no bronze yet: empty tables, the identity is recorded once bronze has one
            for name in self.tables:
                if self.table(name) is None:
                    self._create(name, None)
        return identity or stored

    def watermark(self, name: str, app_id: str) -> int | None:
        """The source version a build recorded under ``app_id`` (None: never built)."""
        dt = self.table(name)
        return None if dt is None else dt.transaction_version(app_id)

    def record_watermark(self, name: str, app_id: str, version: int) -> int:
        """Commit only ``(app_id, version)``, no data (a build that found nothing to rebuild)."""
        uri = self.table_uri(name)

        def commit() -> None:
            DeltaTable(uri).create_write_transaction(
                [], mode="append", schema=self.tables[name].arrow_schema,
                commit_properties=CommitProperties(
                    app_transactions=[Transaction(WRITER_APP_ID, time.time_ns()),
                                      Transaction(app_id, version)],
                    custom_metadata={OPERATION_KEY: WATERMARK_OPERATION}))

        _with_retries(commit, f"{name}: watermark {app_id}")
        return DeltaTable(uri).version()


# ---------------------------------------------------------------------------------------------
# Planning a build: which blocks to rebuild, in which windows.


def changed_ranges(uri: str, since: int | None, start: int, end: int
                   ) -> tuple[int | None, list[Range]]:
    """(the source's version now, blocks of ``[start, end)`` its commits after ``since``
    replaced); everything when ``since`` is None or some commit's effect is unknown."""
    try:
        version = DeltaTable(uri).version()
    except TableNotFoundError:  # no source table: nothing to read, everything to (re)build
        return None, [(start, end)]
    if since is None:
        return version, [(start, end)]
    found = commits_since(uri, since)  # more than MAX_HISTORY_COMMITS: rebuild, as exact
    if found is None:
        log.info("%s: history since version %d not available: rebuilding [%d, %d)", uri, since,
                 start, end)
        return version, [(start, end)]
    version, entries = found
    changed: list[Range] = []
    for entry in entries:
        replaced = replaced_range(entry)
        if replaced is None:
            if (entry.get(OPERATION_KEY) in _NO_ROW_CHANGE
                    or entry.get("operation") in _METADATA_OPERATIONS):
                continue
            log.info("%s: version %s (%s) changed rows without saying which: rebuilding "
                     "[%d, %d)", uri, entry.get("version"), entry.get("operation"), start, end)
            return version, [(start, end)]
        a, b = max(replaced[0], start), min(replaced[1], end)
        if a < b:
            changed.append((a, b))
    return version, coalesce(changed)


def row_windows(files: Iterable[FileSpan], start: int, end: int, max_rows: int = WINDOW_ROWS
                ) -> list[Range]:
    """``[start, end)`` cut into consecutive windows of at most about ``max_rows`` rows, from
    file statistics (each file's rows spread evenly over its block span); a window has at least
    one block. Without statistics for some file: the whole range."""
    if end <= start:
        return []
    touching = [f for f in files if f.overlaps(start, end)]
    if any(not f.known or f.rows < 0 for f in touching):
        return [(start, end)]
    points = sorted({start, end} | {min(max(p, start), end) for f in touching
                                    for p in (f.lo, f.hi + 1)})
    windows: list[Range] = []
    first, rows = start, 0.0
    for a, b in zip(points, points[1:], strict=False):
        density = sum(f.rows / (f.hi - f.lo + 1) for f in touching if f.lo < b and f.hi >= a)
        at = a
        while at < b:
            room = max_rows - rows
            fits = b - at if density == 0 else int(room // density)
            if fits >= b - at:
                rows += density * (b - at)
                at = b
            elif fits == 0 and at == first:  # one block alone exceeds the bound: it is a window
                windows.append((first, at + 1))
                first, rows, at = at + 1, 0.0, at + 1
            else:
                cut = at + max(fits, 0)
                if cut > first:
                    windows.append((first, cut))
                first, rows, at = cut, 0.0, cut
    if first < end:
        windows.append((first, end))
    return windows


# ---------------------------------------------------------------------------------------------
# Building.


@dataclass(frozen=True)
class SilverBuild:
    """What building one silver table over blocks ``[start, end)`` did."""

    table: str
    start: int
    end: int
    rebuilt: tuple[Range, ...]  # block ranges replaced (all of [start, end) unless watermarked)
    windows: int  # commits with data
    rows_written: int
    rows_in_range: int  # rows the table holds for [start, end) afterwards
    source_version: int | None  # version of the source table the build read
    version: int | None  # the silver table's version afterwards
    seconds: float
    calls: dict[str, int] = field(default_factory=dict)  # tokens: contracts called

    def describe(self) -> str:
        done = ranges_text(self.rebuilt) if self.rebuilt else "nothing changed"
        return (f"silver/{self.table} [{self.start}, {self.end}): rebuilt {done} in "
                f"{self.windows} window(s), {self.rows_written:,} rows written, "
                f"{self.rows_in_range:,} rows in the range, {self.seconds:.1f}s")


def _build(silver: SilverLake, name: str, start: int, end: int,
           derive: Callable[[int, int], pa.Table], *, watermark: str | None, full: bool,
           max_rows: int) -> SilverBuild:
    """Replace ``[start, end)`` of silver ``name`` (or, with ``watermark`` and not ``full``, the
    parts its source changed since the last build under that name) window by window with
    ``derive(a, b)``; with ``watermark``, record the source version built from."""
    if end <= start:
        raise ValueError(f"empty block range [{start}, {end})")
    began = time.monotonic()
    silver.prepare_silver()
    layer, source_name = SOURCES[name]
    source = silver.layer_of(layer)
    app_id = f"chainlake.silver.{source_name}.{watermark}" if watermark else None
    since = silver.watermark(name, app_id) if app_id and not full else None
    source_version, ranges = changed_ranges(source.table_uri(source_name), since, start, end)
    files = file_spans(source.file_stats(source_name))
    windows = [w for a, b in ranges for w in row_windows(files, a, b, max_rows)]
    rows = 0
    result: WriteResult | None = None
    for i, (a, b) in enumerate(windows):
        data = derive(a, b)
        last = i == len(windows) - 1
        # The watermark goes with the last window: a build that stops before it has not
        # recorded anything, and its successor redoes the work.
        marker = (app_id, source_version) if last and app_id and source_version is not None \
            else None
        result = silver.replace_range(name, data, a, b, app_transaction=marker)
        rows += len(data)
        log.info("silver/%s: blocks [%d, %d): %d rows, v%d", name, a, b, len(data), result.version)
    version = result.version if result is not None else None
    if not windows and app_id and source_version is not None \
            and source_version != silver.watermark(name, app_id):
        version = silver.record_watermark(name, app_id, source_version)
    return SilverBuild(
        table=name, start=start, end=end, rebuilt=tuple(ranges),
        windows=len(windows), rows_written=rows,
        rows_in_range=rows_in_range(silver, name, start, end), source_version=source_version,
        version=version if version is not None else _version(silver, name),
        seconds=time.monotonic() - began)


def _version(lake: BronzeLake, name: str) -> int | None:
    dt = lake.table(name)
    return None if dt is None else dt.version()


def build_token_transfers(lake_root: str, start: int, end: int, *, watermark: str | None = None,
                          full: bool = False, max_rows: int = WINDOW_ROWS) -> SilverBuild:
    """Make ``silver/token_transfers`` for blocks ``[start, end)`` the transfers decoded from
    ``bronze/logs`` of those blocks.

    With ``watermark`` (a name, e.g. the partition key) only the blocks whose logs changed since
    the last build under that name are rebuilt, unless ``full``; the source version built from
    is recorded under it (see the module docstring). ``max_rows``: source rows per window."""
    silver = SilverLake(lake_root)

    def derive(a: int, b: int) -> pa.Table:
        return decode_token_transfers(silver.bronze.read_range("logs", a, b))

    return _build(silver, "token_transfers", start, end, derive, watermark=watermark,
                  full=full, max_rows=max_rows)


def _creation_traces(bronze: BronzeLake, start: int, end: int) -> pa.Table:
    """Successful create traces and root traces of blocks ``[start, end)``, declared types."""
    dt = bronze.table("traces")
    schema = pa.schema([bronze.tables["traces"].arrow_schema.field(c) for c in _TRACE_COLUMNS])
    if dt is None:
        return schema.empty_table()
    bronze.check_schema("traces", dt)
    # Only block_number goes into the scan's filter: delta-rs turns the missing statistics of
    # other columns (bronze files carry integer statistics only) into bounds that reject every
    # file. The rest is filtered batch by batch, so memory holds only the rows kept.
    in_range = (pc.field("block_number") >= start) & (pc.field("block_number") < end)
    batches = [_creates_or_roots(batch) for batch in dt.to_pyarrow_dataset().to_batches(
        columns=_TRACE_COLUMNS, filter=in_range)]
    return pa.Table.from_batches(batches, schema=batches[0].schema).cast(schema) if batches \
        else schema.empty_table()


def build_contracts(lake_root: str, start: int, end: int, *, watermark: str | None = None,
                    full: bool = False, max_rows: int = WINDOW_ROWS) -> SilverBuild:
    """Make ``silver/contracts`` for blocks ``[start, end)`` the contract creations of the
    ``bronze/traces`` of those blocks (``watermark``, ``full``, ``max_rows``: as for
    :func:`build_token_transfers`).

    ``LakeError`` when the lake has no ``bronze/traces`` table (a node without a tracing API):
    an empty contracts table would claim that no contract was created."""
    silver = SilverLake(lake_root)
    if silver.bronze.table("traces") is None:
        raise LakeError(f"{silver.bronze.table_uri('traces')} does not exist (the node serves no "
                        f"tracing API?): silver/contracts is built from it")

    def derive(a: int, b: int) -> pa.Table:
        return contracts_from_traces(_creation_traces(silver.bronze, a, b))

    return _build(silver, "contracts", start, end, derive, watermark=watermark,
                  full=full, max_rows=max_rows)


ClientFactory = Callable[[], AbstractContextManager["RpcClient"]]


def build_tokens(lake_root: str, rpc_client_factory: ClientFactory, start: int, end: int, *,
                 watermark: str | None = None, full: bool = False,
                 max_rows: int = WINDOW_ROWS) -> SilverBuild:
    """Make ``silver/tokens`` for blocks ``[start, end)`` the metadata of the ERC-20/721
    contracts ``silver/contracts`` has created in those blocks, read with ``eth_call`` at each
    creation block (``fetch_tokens``); rows keyed by that block (``watermark``, ``full``,
    ``max_rows``: as for :func:`build_token_transfers`, the source being ``silver/contracts``).

    ``rpc_client_factory()`` gives an ``RpcClient`` context (e.g. ``SourceOptions.client``). The
    node must serve the lake's chain (``ChainIdentityError`` otherwise), and still have the
    creation blocks the contracts came from when the calls are done (``SourceChangedError``
    otherwise: a reorg bronze has not repaired yet), so rows never mix two forks.
    """
    silver = SilverLake(lake_root)
    identity = silver.bronze.identity() or silver.identity()
    called = Counter[str]()

    with rpc_client_factory() as client:
        if identity is not None:  # the calls must read the lake's chain, as ingestion does
            client.check_chain_id(identity.chain_id)
            check_node_serves(client, identity.chain_id, identity, silver.root)

        def derive(a: int, b: int) -> pa.Table:
            contracts = silver.read_range(
                "contracts", a, b, ["chain_id", "address", "block_number", "block_hash",
                                    "is_erc20", "is_erc721"])
            tokens_of = contracts.filter(pc.fill_null(
                pc.or_(contracts["is_erc20"], contracts["is_erc721"]), False))
            if tokens_of.num_rows == 0:
                return silver.tables["tokens"].arrow_schema.empty_table()
            chain_id = identity.chain_id if identity else tokens_of["chain_id"][0].as_py()
            rows = fetch_tokens(client, tokens_of.drop_columns(["block_hash"]), chain_id)
            _check_blocks_unchanged(client, tokens_of)
            called["contracts"] += tokens_of.num_rows
            return rows

        build = _build(silver, "tokens", start, end, derive, watermark=watermark,
                       full=full, max_rows=max_rows)
    return dataclasses.replace(build, calls=dict(called))


def _check_blocks_unchanged(client: RpcClient, contracts: pa.Table) -> None:
    """``SourceChangedError`` when the node's block at a contract's creation height is not the
    one the contract was read from (the calls just made may have read another fork)."""
    expected = dict(zip(contracts["block_number"].to_pylist(),
                        contracts["block_hash"].to_pylist(), strict=True))
    numbers = sorted(expected)
    for i in range(0, len(numbers), 100):
        chunk = numbers[i:i + 100]
        for number, block in zip(chunk, client.get_blocks(chunk, full_transactions=False),
                                 strict=True):
            if block["hash"].lower() != expected[number]:
                raise SourceChangedError(
                    f"block {number} is now {block['hash'].lower()} on the node, the lake has "
                    f"{expected[number]}: a reorg bronze has not repaired yet; retry after it")


# ---------------------------------------------------------------------------------------------
# Checks: pure comparisons of silver rows with what their source says, and their lake readers.


@dataclass(frozen=True)
class CheckReport:
    """The outcome of one silver check over blocks ``[start, end)``."""

    table: str
    start: int
    end: int
    passed: bool
    counts: dict[str, int]
    offending: tuple[str, ...]  # the first offending keys, each with what is wrong
    rule: str

    def describe(self) -> str:
        if self.passed:
            return f"{self.rule}: passed over blocks [{self.start}, {self.end})"
        more = self.counts.get("offending_keys", len(self.offending)) - len(self.offending)
        return (f"{self.rule}: FAILED over blocks [{self.start}, {self.end}): "
                + "; ".join(self.offending) + (f"; and {more} more" if more > 0 else ""))


def _merge(table: str, rule: str, start: int, end: int, parts: list[tuple[dict[str, int], list[str]]],
           max_examples: int) -> CheckReport:
    counts: Counter[str] = Counter()
    offending: list[str] = []
    for part_counts, part_offending in parts:
        counts.update(part_counts)
        offending.extend(part_offending)
    counts["offending_keys"] = counts.get("offending_keys", 0)
    return CheckReport(table, start, end, counts["offending_keys"] == 0, dict(counts),
                       tuple(offending[:max_examples]), rule)


TRANSFERS_RULE = ("every bronze log that is a transfer (topic 0 and topic count) is decoded "
                  "exactly once, into its rows, and nothing else is")


def compare_token_transfers(logs: pa.Table, transfers: pa.Table, max_examples: int = MAX_EXAMPLES
                            ) -> tuple[dict[str, int], list[str]]:
    """Counts and offending keys: ``logs`` (rows of bronze logs) against ``transfers`` (silver:
    ``block_number``, ``log_index``, ``batch_index``).

    Each log must have exactly ``transfer_rows_per_log`` rows (0 for a log that is no transfer
    or is a malformed one), with batch indexes ``0..n-1`` once each; a row of a log bronze does
    not have is offending too."""
    per_log = transfer_rows_per_log(logs)
    expected = pa.table({"block_number": logs["block_number"], "log_index": logs["log_index"],
                         "expected": pc.fill_null(per_log, 0)})
    found = transfers.group_by(["block_number", "log_index"]).aggregate(
        [("batch_index", "count"), ("batch_index", "count_distinct"), ("batch_index", "min"),
         ("batch_index", "max")])
    joined = expected.join(found, ["block_number", "log_index"], join_type="full outer")
    offending: list[str] = []
    bad = 0
    for row in joined.sort_by([("block_number", "ascending"), ("log_index", "ascending")]
                              ).to_pylist():
        want = row["expected"]
        got = row["batch_index_count"] or 0
        if want is None:
            problem = f"{got} row(s) for a log bronze does not have"
        elif got != want:
            problem = f"{got} row(s), expected {want}"
        elif got and (row["batch_index_count_distinct"] != got or row["batch_index_min"] != 0
                      or row["batch_index_max"] != got - 1):
            problem = f"batch indexes not 0..{got - 1} once each"
        else:
            continue
        bad += 1
        if len(offending) < max_examples:
            offending.append(f"block {row['block_number']} log {row['log_index']}: {problem}")
    counts = {"logs": logs.num_rows,
              "transfer_logs": int(pc.sum(pc.greater(expected["expected"], 0)).as_py() or 0),
              "malformed_transfer_logs": per_log.null_count,
              "expected_rows": int(pc.sum(expected["expected"]).as_py() or 0),
              "rows": transfers.num_rows, "offending_keys": bad}
    return counts, offending


def _check_windows(lake: BronzeLake, source: str, start: int, end: int) -> list[Range]:
    return row_windows(file_spans(lake.file_stats(source)), start, end) if end > start else []


def check_token_transfers(lake_root: str, start: int, end: int,
                          max_examples: int = MAX_EXAMPLES) -> CheckReport:
    """:func:`compare_token_transfers` over blocks ``[start, end)`` of the lake."""
    silver = SilverLake(lake_root)
    parts = []
    for a, b in _check_windows(silver.bronze, "logs", start, end):
        logs = silver.bronze.read_range("logs", a, b)  # the decoder's own count needs it all
        transfers = silver.read_range("token_transfers", a, b,
                                      ["block_number", "log_index", "batch_index"])
        parts.append(compare_token_transfers(logs, transfers, max_examples))
    return _merge("token_transfers", TRANSFERS_RULE, start, end, parts, max_examples)


def _trace_key(block: int, tx: int | None, trace_address: list[int]) -> str:
    path = ",".join(map(str, trace_address))
    return f"block {block} tx {tx} trace [{path}]"


CONTRACTS_RULE = "one contracts row per successful create trace (status 1), at its address"


def compare_contracts(traces: pa.Table, contracts: pa.Table, max_examples: int = MAX_EXAMPLES
                      ) -> tuple[dict[str, int], list[str]]:
    """Counts and offending keys: the successful ``create`` traces of ``traces`` (bronze
    columns ``block_number``, ``transaction_index``, ``trace_address``, ``to_address``,
    ``trace_type``, ``status``) against ``contracts`` rows (same key, ``address``)."""
    creates = traces.filter(pc.fill_null(pc.and_(pc.equal(traces["trace_type"], "create"),
                                                 pc.equal(traces["status"], 1)), False))
    want = {_trace_key(b, t, p): a for b, t, p, a in zip(
        *(creates[c].to_pylist() for c in ("block_number", "transaction_index", "trace_address",
                                           "to_address")), strict=True)}
    got: dict[str, list[str]] = {}
    for b, t, p, a in zip(*(contracts[c].to_pylist() for c in (
            "block_number", "transaction_index", "trace_address", "address")), strict=True):
        got.setdefault(_trace_key(b, t, p), []).append(a)
    problems: list[tuple[str, str]] = []
    for key, address in want.items():
        rows = got.get(key, [])
        if len(rows) != 1:
            problems.append((key, f"{len(rows)} rows for the create of {address}"))
        elif rows[0] != address:
            problems.append((key, f"address {rows[0]}, the trace created {address}"))
    problems += [(key, f"{len(rows)} row(s) ({rows[0]}) without a successful create trace")
                 for key, rows in got.items() if key not in want]
    problems.sort()
    counts = {"create_traces": len(want), "rows": contracts.num_rows,
              "offending_keys": len(problems)}
    return counts, [f"{key}: {what}" for key, what in problems[:max_examples]]


def check_contracts(lake_root: str, start: int, end: int,
                    max_examples: int = MAX_EXAMPLES) -> CheckReport:
    """:func:`compare_contracts` over blocks ``[start, end)`` of the lake."""
    silver = SilverLake(lake_root)
    parts = []
    for a, b in _check_windows(silver.bronze, "traces", start, end):
        traces = _creation_traces(silver.bronze, a, b)
        contracts = silver.read_range("contracts", a, b, ["block_number", "transaction_index",
                                                          "trace_address", "address"])
        parts.append(compare_contracts(traces, contracts, max_examples))
    return _merge("contracts", CONTRACTS_RULE, start, end, parts, max_examples)


TOKENS_RULE = ("one tokens row per ERC-20/721 contract created in the range, at its creation "
               "block, with its flags")


def compare_tokens(contracts: pa.Table, tokens: pa.Table, max_examples: int = MAX_EXAMPLES
                   ) -> tuple[dict[str, int], list[str]]:
    """Counts and offending keys: the ERC-20/721 rows of ``contracts`` (``address``,
    ``block_number``, ``is_erc20``, ``is_erc721``) against ``tokens`` (the same columns)."""
    def flags(table: pa.Table) -> list[tuple[str, int, bool | None, bool | None]]:
        return list(zip(*(table[c].to_pylist() for c in ("address", "block_number", "is_erc20",
                                                         "is_erc721")), strict=True))

    want = {(a, b): (e20, e721) for a, b, e20, e721 in flags(contracts) if e20 or e721}
    got: dict[tuple[str, int], list[tuple[bool | None, bool | None]]] = {}
    for a, b, e20, e721 in flags(tokens):
        got.setdefault((a, b), []).append((e20, e721))
    problems: list[tuple[int, str, str]] = []
    for (address, block), wanted in want.items():
        rows = got.get((address, block), [])
        if len(rows) != 1:
            problems.append((block, address, f"{len(rows)} rows"))
        elif rows[0] != wanted:
            problems.append((block, address, f"flags (is_erc20, is_erc721) {rows[0]}, the "
                                             f"contract has {wanted}"))
    problems += [(block, address, f"{len(rows)} row(s) for no ERC-20/721 contract created there")
                 for (address, block), rows in got.items() if (address, block) not in want]
    problems.sort()
    counts = {"token_contracts": len(want), "rows": tokens.num_rows,
              "offending_keys": len(problems)}
    return counts, [f"block {b} address {a}: {what}" for b, a, what in problems[:max_examples]]


def check_tokens(lake_root: str, start: int, end: int,
                 max_examples: int = MAX_EXAMPLES) -> CheckReport:
    """:func:`compare_tokens` over blocks ``[start, end)`` of the lake."""
    silver = SilverLake(lake_root)
    columns = ["address", "block_number", "is_erc20", "is_erc721"]
    parts = []
    for a, b in _check_windows(silver, "contracts", start, end):
        parts.append(compare_tokens(silver.read_range("contracts", a, b, columns),
                                    silver.read_range("tokens", a, b, columns), max_examples))
    return _merge("tokens", TOKENS_RULE, start, end, parts, max_examples)
