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

Creation, once and race-free: tables are created (empty, with their declared schema and the
lake's chain identity, see ``ingestion.identity``) before any data write, by staging version 0
of the Delta log elsewhere and linking it into place, which fails for every writer but the first.
delta-rs alone would let two writers both "create" a missing table (the loser is retried as
version 1 with a new table id and its rows added, not replacing the winner's): rows doubled.

Exactly once, cheaply: the ``blocks`` commit of a streaming micro-batch also records a Delta
application transaction ``(app_id = the query's id, version = batch id)``. A replayed batch
whose version is already recorded is skipped without fetching anything to write; a batch that
crashed half-way (children written, blocks not) is simply written again.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction

from ingestion.errors import RefusedError
from ingestion.identity import ChainIdentity
from ingestion.schemas import TABLES, Table
from ingestion.staging import TableFile, TableFileWriter, delete_table_files, read_table_file
from ingestion.transform import split_bundle

if TYPE_CHECKING:
    import pyarrow.dataset as pads  # imports pandas: types only

log = logging.getLogger("chainlake.sink")

# Children first, blocks last: see module docstring.
WRITE_ORDER = ("transactions", "logs", "traces", "blocks")
COMMIT_ATTEMPTS = 20
# Every commit of chainlake carries an application transaction of this id, so any two commits
# racing on one table conflict and the loser retries on a fresh snapshot. delta-rs checks a
# predicate overwrite against concurrent appends, but not a commit of files written elsewhere
# (``commit_files``): two of those replacing the same fresh range would both commit.
WRITER_APP_ID = "chainlake.writer"
# Delta keeps log entries 30 days by default; versions older than the vacuum retention (7 days,
# ingestion.maintenance) are unreadable anyway once their files are gone, and a table following a
# 2 s chain commits ~1,000 times a day.
TABLE_PROPERTIES = {"delta.logRetentionDuration": "interval 7 days"}


class LakeError(RefusedError):
    """A table of the lake cannot be used as it is: unreadable Delta log, another schema, or
    tables that disagree about their chain."""


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


def range_dataset(dt: DeltaTable, start: int, end: int) -> pads.Dataset:
    """The table's files that may hold blocks ``[start, end)``, as a dataset (filter its rows).

    delta-rs prunes by the files' ``block_number`` statistics before a fragment is made: a plain
    ``to_pyarrow_dataset()`` costs ~0.7 ms of CPU per live file, and a table following a head
    has a file per micro-batch until maintenance compacts it (1,000 files: 0.72 s against
    0.015-0.06 s pruned, for every link check and range read). Files without statistics stay.
    """
    return dt.to_pyarrow_dataset(file_pruning_predicate=[("block_number", ">=", start),
                                                         ("block_number", "<", end)])


class BronzeLake:
    """The lake root: ``bronze/{blocks,transactions,logs,traces}`` and ``_checkpoints/<scope>``.

    ``layer`` and ``tables`` say which tables an instance handles (``ingestion.silver.SilverLake``
    is the same machinery over ``silver/``): creation, schema checks and range replaces.
    """

    layer: str = "bronze"
    tables: Mapping[str, Table] = TABLES

    def __init__(self, root: str) -> None:
        self.root = normalize_uri(root)

    def table_uri(self, name: str) -> str:
        if name not in self.tables:
            raise ValueError(f"unknown {self.layer} table {name!r}")
        return f"{self.root}/{self.layer}/{name}"

    def checkpoint_uri(self, scope: str) -> str:
        return f"{self.root}/_checkpoints/{scope}"

    def table(self, name: str) -> DeltaTable | None:
        """The Delta table, None if it does not exist; ``LakeError`` if its log is unreadable."""
        uri = self.table_uri(name)
        try:
            return DeltaTable(uri)
        except TableNotFoundError:
            return None
        except (DeltaError, OSError, ValueError) as err:
            raise LakeError(f"{uri}: cannot read the Delta log{_unreadable_version(uri)}: "
                            f"{_first_line(err)}") from None

    def exists(self) -> bool:
        """Does the lake hold any bronze table yet?"""
        return any(self.table(name) is not None for name in self.tables)

    def identity(self) -> ChainIdentity | None:
        """The chain recorded in the tables' metadata (None: no table has one yet)."""
        found: dict[str, ChainIdentity] = {}
        for name in self.tables:
            dt = self.table(name)
            if dt is None:
                continue
            try:
                identity = ChainIdentity.from_properties(dt.metadata().configuration)
            except ValueError as err:
                raise LakeError(f"{self.table_uri(name)}: {err}") from None
            if identity is not None:
                found[name] = identity
        if len(set(found.values())) > 1:
            raise LakeError(f"the tables of {self.root} disagree about their chain: " + "; ".join(
                f"{name}: {identity.describe()}" for name, identity in found.items()))
        return next(iter(found.values()), None)

    def prepare(self, identity: ChainIdentity) -> None:
        """Make every table exist with its declared schema and ``identity``, before any write.

        Missing tables are created race-free; existing ones must have the declared columns
        (``LakeError`` names the missing and mistyped ones) and no other chain identity; a table
        without an identity (made by an earlier version) gets it recorded. The caller has
        checked that ``identity`` is the node's and the lake's.
        """
        for name in self.tables:
            dt = self.table(name)
            if dt is None:
                self._create(name, identity)
                dt = self.table(name)
            self.check_schema(name, dt)
            configuration = dt.metadata().configuration
            missing = {**({} if ChainIdentity.from_properties(configuration) else
                          identity.properties()),
                       **{k: v for k, v in TABLE_PROPERTIES.items() if k not in configuration}}
            if missing:
                dt.alter.set_table_properties(missing, raise_if_not_exists=False)

    def check_schema(self, name: str, dt: DeltaTable) -> None:
        """``LakeError`` naming the columns of ``dt`` that are missing or of another type."""
        declared = DeltaSchema.from_arrow(self.tables[name].arrow_schema)
        stored = {f.name: f.type for f in dt.schema().fields}
        missing = [f.name for f in declared.fields if f.name not in stored]
        mistyped = [f"{f.name} ({_type_name(stored[f.name])}, expected {_type_name(f.type)})"
                    for f in declared.fields if f.name in stored and stored[f.name] != f.type]
        if missing or mistyped:
            problems = ([f"missing columns {', '.join(missing)}"] if missing else []) + (
                [f"mistyped columns {', '.join(mistyped)}"] if mistyped else [])
            raise LakeError(f"{self.table_uri(name)} does not have the {self.layer} {name} schema: "
                            + "; ".join(problems))

    def _create(self, name: str, identity: ChainIdentity | None) -> None:
        """Create the empty table once, whatever other writers do at the same moment."""
        uri = self.table_uri(name)
        configuration = {**TABLE_PROPERTIES, **(identity.properties() if identity else {})}
        table = self.tables[name]
        create = dict(schema=table.arrow_schema, name=name, description=table.doc,
                      configuration=configuration, raise_if_key_not_exists=False)
        if not is_local(uri):
            # Object stores: delta-rs's own put-if-absent of version 0 (its retry of a lost
            # creation as version 1 adds no rows: the table is empty).
            DeltaTable.create(uri, mode="ignore", **create)
            return
        first_commit = Path(uri) / "_delta_log" / f"{0:020d}.json"
        if first_commit.exists():
            return
        staging_root = Path(self.root) / "_staging"
        staging_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"create-{name}-", dir=staging_root))
        try:
            DeltaTable.create(str(staging), mode="error", **create)
            first_commit.parent.mkdir(parents=True, exist_ok=True)
            try:  # atomic, and fails if another writer linked its version 0 first
                os.link(staging / "_delta_log" / first_commit.name, first_commit)
                log.info("created %s", uri)
            except FileExistsError:
                log.info("%s was created by another writer at the same moment", uri)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def read(self, name: str) -> pa.Table:
        """The whole table as Arrow (declared schema), empty if it does not exist yet."""
        dt = self.table(name)
        schema = self.tables[name].arrow_schema
        if dt is None:
            return schema.empty_table()
        self.check_schema(name, dt)
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
        schema = self.tables[name].arrow_schema
        wanted = columns or schema.names
        if dt is None:
            return schema.empty_table().select(wanted)
        self.check_schema(name, dt)
        rows = range_dataset(dt, start, end).to_table(
            columns=wanted,
            filter=(pc.field("block_number") >= start) & (pc.field("block_number") < end))
        return rows.cast(pa.schema([schema.field(c) for c in wanted]))

    def block_hashes(self, start: int, end: int) -> dict[int, str]:
        """Stored ``block_number -> block_hash`` for blocks ``[start, end)``."""
        rows = self.read_range("blocks", start, end, ["block_number", "block_hash"])
        return dict(zip(rows.column("block_number").to_pylist(),
                        rows.column("block_hash").to_pylist(), strict=True))

    def stored_links(self, numbers: list[int]) -> dict[int, tuple[str, str]]:
        """Stored ``block_number -> (block_hash, parent_hash)`` for those of ``numbers`` stored."""
        dt = self.table("blocks")
        wanted = [n for n in numbers if n >= 0]
        if dt is None or not wanted:
            return {}
        rows = dt.to_pyarrow_dataset(file_pruning_predicate=[("block_number", "in", wanted)]
                                     ).to_table(columns=["block_number", "block_hash", "parent_hash"],
                                                filter=pc.field("block_number").isin(wanted))
        return {n: (h, p) for n, h, p in zip(*(rows.column(c).to_pylist() for c in rows.column_names),
                                              strict=True)}

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
        schema = self.tables[name].arrow_schema
        data = rows.select(schema.names).cast(schema)
        numbers = data.column("block_number")
        if len(data) and (pc.min(numbers).as_py() < start
                          or pc.max(numbers).as_py() >= end):
            raise ValueError(f"{name}: rows outside the range [{start}, {end}) being replaced")
        # Our own file and statistics, committed like a micro-batch's: delta-rs's writer clamps
        # DECIMAL bounds to 64 bits, and readers then prune files holding larger wei values.
        if self.table(name) is None:  # never let delta-rs create it: see module docstring
            self._create(name, self.identity())
        writer = TableFileWriter(uri, name, schema)
        try:
            for batch in data.to_batches():
                writer.add(batch)
            written = writer.close()
            return self.commit_files(name, [written] if written else [], start, end,
                                     app_transaction)
        except BaseException:
            writer.discard()
            raise

    def commit_files(self, name: str, files: list[TableFile], start: int, end: int,
                     app_transaction: tuple[str, int] | None = None,
                     info: dict[str, str] | None = None) -> WriteResult:
        """Make the table's rows for blocks ``[start, end)`` exactly those of ``files`` (written
        into the table's directory, see ``ingestion.staging``), in one commit.

        The commit adds the files and removes every live file inside the range; a file that
        straddles a range edge is rewritten with its rows outside the range. Retried on a fresh
        snapshot when another writer committed first. ``info`` goes into the commit's info.
        """
        uri = self.table_uri(name)
        if end <= start:
            raise ValueError(f"empty block range [{start}, {end})")
        for f in files:
            stats = json.loads(f.stats)
            lo, hi = stats["minValues"].get("block_number"), stats["maxValues"].get("block_number")
            if lo is None or hi is None or lo < start or hi >= end:
                raise ValueError(f"{name}: file {f.path} holds blocks outside [{start}, {end})")
        if self.table(name) is None:
            self._create(name, self.identity())
        rewritten: list[TableFile] = []

        def commit() -> None:
            delete_table_files(self.root, rewritten, self.layer)
            rewritten.clear()
            dt = DeltaTable(uri)
            removes = self._replaced_files(dt, name, start, end, rewritten)
            actions = [_add_action(f) for f in [*files, *rewritten]] + removes
            if actions or app_transaction is not None:
                dt.create_write_transaction(
                    actions, mode="append", schema=self.tables[name].arrow_schema,
                    commit_properties=_commit_properties(app_transaction, start, end, info))

        _with_retries(commit, f"{name}: [{start}, {end})")
        return WriteResult(name, sum(f.num_records for f in files), DeltaTable(uri).version())

    def _replaced_files(self, dt: DeltaTable, name: str, start: int, end: int,
                        rewritten: list[TableFile]) -> list[RemoveAction]:
        """Remove actions for the live files with rows in ``[start, end)``; the rows outside
        the range of a file that straddles its edge go into new files (``rewritten``)."""
        stats = pa.table(dt.get_add_actions(flatten=True))
        if stats.num_rows == 0:
            return []
        now = int(time.time() * 1000)
        removes: list[RemoveAction] = []
        lows = (stats.column("min.block_number").to_pylist()
                if "min.block_number" in stats.column_names else [None] * stats.num_rows)
        highs = (stats.column("max.block_number").to_pylist()
                 if "max.block_number" in stats.column_names else [None] * stats.num_rows)
        for path, size, lo, hi in zip(stats.column("path").to_pylist(),
                                      stats.column("size_bytes").to_pylist(), lows, highs,
                                      strict=True):
            known = lo is not None and hi is not None
            if known and (hi < start or lo >= end):
                continue  # wholly outside the range
            if not (known and start <= lo and hi < end):  # straddles an edge: keep the rest
                rows = read_table_file(self.table_uri(name), self.tables[name].arrow_schema, path)
                numbers = rows.column("block_number")
                outside = rows.filter(pc.or_(pc.less(numbers, start), pc.greater_equal(numbers, end)))
                if outside.num_rows:
                    writer = TableFileWriter(self.table_uri(name), name, self.tables[name].arrow_schema)
                    for batch in outside.to_batches():
                        writer.add(batch)
                    kept = writer.close()
                    if kept is not None:
                        rewritten.append(kept)
            removes.append(RemoveAction(path, True, now, size, {}))
        return removes

    def write_bundle(self, bundle: pa.Table, start: int, end: int,
                     app_transaction: tuple[str, int] | None = None) -> dict[str, WriteResult]:
        """Split a block bundle into the three tables and replace ``[start, end)`` in each.

        ``app_transaction`` is recorded with the last commit (``blocks``), see module docstring.
        """
        tables = split_bundle(bundle)
        return {
            name: self.replace_range(name, tables[name], start, end,
                                     app_transaction if name == "blocks" else None)
            for name in WRITE_ORDER if name in tables
        }


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _type_name(t: object) -> str:
    return getattr(t, "type", None) or type(t).__name__.removesuffix("Type").lower()


def _unreadable_version(uri: str) -> str:
    """`` at version N (file)``: the first commit file of a local table that is not JSON lines."""
    if not is_local(uri):
        return ""
    log_dir = Path(uri) / "_delta_log"
    for commit in sorted(log_dir.glob("[0-9]" * 20 + ".json")):
        try:
            lines = [line for line in commit.read_text().splitlines() if line.strip()]
            if not lines:
                raise ValueError("empty")
            for line in lines:
                json.loads(line)
        except (ValueError, OSError):
            return f" at version {int(commit.stem)} ({commit})"
    return ""


RANGE_KEY = "chainlake.replacedBlocks"  # commit info: the block range a commit replaced


def _commit_properties(app_transaction: tuple[str, int] | None, start: int, end: int,
                       info: dict[str, str] | None = None) -> CommitProperties:
    transactions = [Transaction(WRITER_APP_ID, time.time_ns())]
    if app_transaction is not None:
        transactions.append(Transaction(*app_transaction))
    return CommitProperties(app_transactions=transactions,
                            custom_metadata={RANGE_KEY: f"{start}-{end}", **(info or {})})


def replaced_range(commit_info: dict) -> tuple[int, int] | None:
    """The block range ``[start, end)`` a commit of chainlake replaced (from ``history()``)."""
    text = commit_info.get(RANGE_KEY)
    if not text:
        return None
    start, end = text.split("-")
    return int(start), int(end)


# Commits ``commits_since`` reads at most: beyond, callers fall back to something cheaper than
# reading thousands of commit files (a rebuild, a fresh table version).
MAX_HISTORY_COMMITS = 2_000
HISTORY_SNAPSHOT_ATTEMPTS = 5


def commits_since(uri: str, since: int, max_commits: int = MAX_HISTORY_COMMITS
                  ) -> tuple[int, list[dict]] | None:
    """(the table's version, the commit infos of versions ``since + 1 .. version``, oldest
    first) of one consistent snapshot; None when the log no longer holds them all, there are
    more than ``max_commits``, or writers kept committing while it read.

    Why not ``DeltaTable.history(n)`` alone: delta-rs returns the newest commits in storage but
    numbers them down from the *loaded* version, so a commit landing between loading and
    ``history`` shifts every label by one (an earlier commit read twice, the newest under the
    wrong version). The entries are accepted only when nothing was committed meanwhile.
    """
    for _ in range(HISTORY_SNAPSHOT_ATTEMPTS):
        dt = DeltaTable(uri)
        now = dt.version()
        if now <= since:
            return now, []
        if now - since > max_commits:
            return None
        entries = dt.history(now - since)
        if DeltaTable(uri).version() != now:
            continue
        wanted = [e for e in entries if since < e.get("version", -1) <= now]
        if {e["version"] for e in wanted} != set(range(since + 1, now + 1)):
            return None
        return now, sorted(wanted, key=lambda e: e["version"])
    return None


def _with_retries(commit, what: str) -> None:
    """Run ``commit`` until it is not beaten by a concurrent writer (``COMMIT_ATTEMPTS`` tries)."""
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            commit()
            return
        except CommitFailedError as err:  # a concurrent writer committed first: retry
            if attempt == COMMIT_ATTEMPTS:
                raise
            log.info("%s: commit conflict, retrying: %s", what, err)
            time.sleep(random.uniform(0.02, 0.1) * min(attempt, 5))


def _add_action(f: TableFile) -> AddAction:
    return AddAction(f.path, f.size, {}, int(time.time() * 1000), True, f.stats)
