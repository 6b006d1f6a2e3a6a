"""Bronze Delta tables written with delta-rs: every write replaces exactly the block range it covers.

Replacing ``[start, end)`` with the rows of those blocks (one predicate overwrite per table) is
idempotent: re-running a micro-batch, a partition, a backfill or a reorg repair gives the same
table, whatever a checkpoint says. Within one range the child tables are written before
``blocks``, so a block row present means its transactions and logs are present too.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake
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

    def replace_range(self, name: str, rows: pa.Table, start: int, end: int) -> WriteResult:
        """Make the table's rows for blocks ``[start, end)`` exactly ``rows``, in one commit."""
        if end <= start:
            raise ValueError(f"empty block range [{start}, {end})")
        numbers = rows.column("block_number")
        if len(rows) and (pc.min(numbers).as_py() < start
                          or pc.max(numbers).as_py() >= end):
            raise ValueError(f"{name}: rows outside the range [{start}, {end}) being replaced")
        # delta-rs silently coerces some wrong types: cast to the declared schema first.
        data = rows.select(TABLES[name].arrow_schema.names).cast(TABLES[name].arrow_schema)
        predicate = f"block_number >= {start} AND block_number < {end}"
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                write_deltalake(self.table_uri(name), data, mode="overwrite", predicate=predicate)
                break
            except CommitFailedError as err:  # a concurrent writer committed first: retry
                if attempt == COMMIT_ATTEMPTS:
                    raise
                log.info("%s: commit conflict on [%d, %d), retrying: %s", name, start, end, err)
                time.sleep(random.uniform(0.05, 0.2) * attempt)
        return WriteResult(name, len(data), DeltaTable(self.table_uri(name)).version())

    def write_bundle(self, bundle: pa.Table, start: int, end: int) -> dict[str, WriteResult]:
        """Split a block bundle into the three tables and replace ``[start, end)`` in each."""
        tables = split_bundle(bundle)
        return {name: self.replace_range(name, tables[name], start, end) for name in WRITE_ORDER}
