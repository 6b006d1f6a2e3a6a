"""Bronze Delta tables written with delta-rs: every write replaces exactly the block range it covers.

Replacing ``[start, end)`` with the rows of those blocks (one predicate overwrite per table) is
idempotent: re-running a micro-batch, a partition, a backfill or a reorg repair gives the same
table, whatever a checkpoint says. Within one range the child tables are written before
``blocks``, so a block row present means its transactions and logs are present too.

Layout: no partition columns (they would add a column to every table and, at tens of blocks per
micro-batch, many tiny directories). Each micro-batch writes its own files covering one
contiguous block range, and Delta keeps per-file min/max statistics of ``block_number``, so a
range replace reads and rewrites only the files whose range overlaps it; every other file is
untouched (``tests/integration/test_sink.py`` checks the removed files). Run ``optimize`` with
Z-order on ``block_number`` to compact small files of a long-running stream.

Exactly once, cheaply: the ``blocks`` commit of a streaming micro-batch also records a Delta
application transaction ``(app_id = the query's id, version = batch id)``. A replayed batch
whose version is already recorded is skipped without fetching anything to write; a batch that
crashed half-way (children written, blocks not) is simply written again.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from ingestion.schemas import TABLES
from ingestion.transform import split_bundle

log = logging.getLogger("chainlake.sink")

# Children first, blocks last: see module docstring.
WRITE_ORDER = ("transactions", "logs", "blocks")
COMMIT_ATTEMPTS = 8


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def normalize_uri(uri: str) -> str:
    """Absolute local path (so Spark, delta-rs and workers agree), or the URI unchanged."""
    if not is_local(uri):
        return uri.rstrip("/")
    return str(Path(uri.removeprefix("file://")).expanduser().resolve())


@dataclass(frozen=True)
class WriteResult:
    table: str
    rows: int
    version: int


class BronzeLake:
    """The lake root: ``bronze/{blocks,transactions,logs}`` and ``_checkpoints/<scope>``."""

    def __init__(self, root: str) -> None:
        self.root = normalize_uri(root)

    def table_uri(self, name: str) -> str:
        if name not in TABLES:
            raise ValueError(f"unknown bronze table {name!r}")
        return f"{self.root}/bronze/{name}"

    def checkpoint_uri(self, scope: str) -> str:
        return f"{self.root}/_checkpoints/{scope}"

    def table(self, name: str) -> DeltaTable | None:
        try:
            return DeltaTable(self.table_uri(name))
        except TableNotFoundError:
            return None

    def read(self, name: str) -> pa.Table:
        """The whole table as Arrow (declared schema), empty if it does not exist yet."""
        dt = self.table(name)
        schema = TABLES[name].arrow_schema
        if dt is None:
            return schema.empty_table()
        return dt.to_pyarrow_table().select(schema.names).cast(schema)

    def file_stats(self, name: str) -> pa.Table | None:
        """The table's live files with their statistics (``min.block_number``, ``num_records``…)."""
        dt = self.table(name)
        return None if dt is None else pa.table(dt.get_add_actions(flatten=True))

    def stored_bounds(self) -> tuple[int, int] | None:
        """Lowest and highest block number in ``blocks``, from file statistics (no data read)."""
        stats = self.file_stats("blocks")
        if stats is None or stats.num_rows == 0:
            return None
        lo, hi = stats.column("min.block_number"), stats.column("max.block_number")
        if lo.null_count or hi.null_count:  # files without statistics: read the column
            numbers = self.table("blocks").to_pyarrow_dataset().to_table(
                columns=["block_number"])[0]
            if len(numbers) == 0:
                return None
            return pc.min(numbers).as_py(), pc.max(numbers).as_py()
        return pc.min(lo).as_py(), pc.max(hi).as_py()

    def stored_tip(self) -> int | None:
        """Highest block number in the ``blocks`` table."""
        bounds = self.stored_bounds()
        return None if bounds is None else bounds[1]

    def read_range(self, name: str, start: int, end: int, columns: list[str] | None = None
                   ) -> pa.Table:
        """Rows of blocks ``[start, end)`` (file statistics prune the rest), declared types."""
        dt = self.table(name)
        schema = TABLES[name].arrow_schema
        wanted = columns or schema.names
        if dt is None:
            return schema.empty_table().select(wanted)
        rows = dt.to_pyarrow_dataset().to_table(
            columns=wanted,
            filter=(pc.field("block_number") >= start) & (pc.field("block_number") < end))
        return rows.cast(pa.schema([schema.field(c) for c in wanted]))

    def block_hashes(self, start: int, end: int) -> dict[int, str]:
        """Stored ``block_number -> block_hash`` for blocks ``[start, end)``."""
        rows = self.read_range("blocks", start, end, ["block_number", "block_hash"])
        return dict(zip(rows.column("block_number").to_pylist(),
                        rows.column("block_hash").to_pylist(), strict=True))

    def committed_batch(self, app_id: str) -> int | None:
        """Last streaming batch id recorded for ``app_id`` in the ``blocks`` table."""
        dt = self.table("blocks")
        return None if dt is None else dt.transaction_version(app_id)

    def replace_range(self, name: str, rows: pa.Table, start: int, end: int,
                      app_transaction: tuple[str, int] | None = None) -> WriteResult:
        """Make the table's rows for blocks ``[start, end)`` exactly ``rows``, in one commit."""
        uri = self.table_uri(name)  # ValueError for an unknown table, before anything else
        if end <= start:
            raise ValueError(f"empty block range [{start}, {end})")
        # delta-rs silently coerces some wrong types: cast to the declared schema first (the range
        # check below must compare numbers, not e.g. the text "10" with 9).
        data = rows.select(TABLES[name].arrow_schema.names).cast(TABLES[name].arrow_schema)
        numbers = data.column("block_number")
        if len(data) and (pc.min(numbers).as_py() < start
                          or pc.max(numbers).as_py() >= end):
            raise ValueError(f"{name}: rows outside the range [{start}, {end}) being replaced")
        predicate = f"block_number >= {start} AND block_number < {end}"
        properties = None
        if app_transaction is not None:
            app_id, version = app_transaction
            properties = CommitProperties(app_transactions=[Transaction(app_id, version)])
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                write_deltalake(uri, data, mode="overwrite", predicate=predicate,
                                commit_properties=properties)
                break
            except CommitFailedError as err:  # a concurrent writer committed first: retry
                if attempt == COMMIT_ATTEMPTS:
                    raise
                log.info("%s: commit conflict on [%d, %d), retrying: %s", name, start, end, err)
                time.sleep(random.uniform(0.05, 0.2) * attempt)
        return WriteResult(name, len(data), DeltaTable(uri).version())

    def write_bundle(self, bundle: pa.Table, start: int, end: int,
                     app_transaction: tuple[str, int] | None = None) -> dict[str, WriteResult]:
        """Split a block bundle into the three tables and replace ``[start, end)`` in each.

        ``app_transaction`` is recorded with the last commit (``blocks``), see module docstring.
        """
        tables = split_bundle(bundle)
        return {
            name: self.replace_range(name, tables[name], start, end,
                                     app_transaction if name == "blocks" else None)
            for name in WRITE_ORDER
        }
