"""Keep the lake small: compact closed block ranges, checkpoint and trim the Delta log, vacuum,
and drop the Spark checkpoints of scopes the lake holds completely.

Following a chain head writes one small commit per micro-batch and table; a day of a 2 s chain is
about a thousand commits and three thousand small files. ``maintain_lake`` does, per bronze table:

1. **Compaction of closed ranges.** Blocks below ``closed_before`` (complete partitions; the open
   tip partition is still being written and is left alone) are rewritten into few files. The
   live files (their ``block_number`` min/max statistics) are grouped into *clusters* of files
   whose block ranges touch or overlap, clusters into *windows* along the aligned ranges of
   ``partition_size`` (a file crossing an aligned boundary joins both ranges), and consecutive
   clusters of a window into *units* of at most ``target_file_bytes``. A unit of two or more
   small files is read (from one table snapshot), sorted by its key and written back as ONE file
   (with chainlake's own statistics, exact for DECIMAL wei values), committed on the snapshot it
   was read from: the commit removes exactly the unit's files and adds the same rows. A writer
   that commits in between (a repair, a backfill, another maintenance) makes the commit fail as
   a conflict, and the unit is planned and read again from the new snapshot — never written
   back stale (which a blind retry of the same rows would do).
   Files never straddle a unit, so every later range replace still touches only the files of its
   range, and the per-file statistics stay tight.
2. **Vacuum** of files removed more than ``retention_hours`` ago, and of files no commit names
   (a crashed writer's) older than that: ``DeltaTable.vacuum(full=True)``. The default is Delta's
   own 7 days; shorter needs ``enforce_retention_duration=False`` (a reader of an older version,
   or a writer whose files are written but not yet committed, could lose them).
3. **A Delta log checkpoint** at the table's version, then ``cleanup_metadata()``: commit files
   older than the table's ``delta.logRetentionDuration`` (30 days unless the table says otherwise)
   and older than the checkpoint are deleted.

Then the Spark checkpoints (``<lake>/_checkpoints``): a ``partition-<key>`` or
``ingest-<start>-<end>`` scope whose every block the ``blocks`` table holds is deleted (a run on
a scope without checkpoint starts at the first block the lake lacks, ``ingestion.checkpoint``),
unless written to within ``checkpoint_idle_hours`` (a query may still be running on it);
``*.unreadable-*`` ones set aside more than ``retention_hours`` ago are deleted too.

No row ever changes: compaction writes back exactly the rows it read, in one commit per unit.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, RemoveAction

from ingestion import settings
from ingestion.checkpoint import first_missing_block
from ingestion.ranges import parse_key, span_of
from ingestion.schemas import SILVER_TABLES, TABLES
from ingestion.silver import SilverLake
from ingestion.sink import WRITER_APP_ID, BronzeLake, is_local, range_dataset
from ingestion.staging import TableFileWriter

log = logging.getLogger("chainlake.maintenance")

COMPACT_ATTEMPTS = 5
# A file at least this fraction of the target is not "small": a unit is compacted only when it
# holds at least two small files, so rewrites always reduce the number of files (no churn).
SMALL_FRACTION = 0.5

_INGEST_SCOPE = re.compile(r"^ingest-(\d+)-(\d+)$")
_UNREADABLE = re.compile(r"^.+\.unreadable-(\d{8}T\d{6})$")


@dataclass(frozen=True)
class LiveFile:
    """One live data file of a table and the blocks it holds (``lo``..``hi``, inclusive)."""

    path: str
    size: int
    rows: int
    lo: int
    hi: int


@dataclass(frozen=True)
class CompactionUnit:
    """Files to rewrite as one: every live file with blocks in ``[start, end)`` lies inside it."""

    start: int
    end: int
    paths: tuple[str, ...]
    bytes: int
    rows: int


@dataclass
class TableMaintenance:
    """What maintenance did to one table, and its size before and after."""

    table: str
    version_before: int = 0
    version_after: int = 0
    files_before: int = 0  # live data files
    files_after: int = 0
    bytes_before: int = 0  # live data bytes
    bytes_after: int = 0
    disk_files_before: int | None = None  # data files on disk (local lakes), live or not
    disk_files_after: int | None = None
    disk_bytes_before: int | None = None
    disk_bytes_after: int | None = None
    log_files_before: int | None = None  # _delta_log entries (local lakes)
    log_files_after: int | None = None
    log_bytes_before: int | None = None
    log_bytes_after: int | None = None
    units_compacted: int = 0
    files_compacted: int = 0  # files the compaction commits removed
    units_skipped: int = 0  # changed under us too often, or no longer worth it: next time
    files_vacuumed: int = 0
    commits: int = 0  # commits made by maintenance (compaction + vacuum)
    checkpoint_version: int | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class MaintenanceReport:
    lake: str
    closed_before: int
    retention_hours: float
    tables: dict[str, TableMaintenance] = field(default_factory=dict)
    checkpoints_removed: list[str] = field(default_factory=list)
    checkpoints_kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def files_before(self) -> int:
        return sum(t.files_before for t in self.tables.values())

    @property
    def files_after(self) -> int:
        return sum(t.files_after for t in self.tables.values())

    @property
    def commits(self) -> int:
        return sum(t.commits for t in self.tables.values())

    def render(self) -> str:
        lines = [f"lake {self.lake}: maintenance of blocks below {self.closed_before:,} "
                 f"(retention {self.retention_hours:g} h)"]
        for t in self.tables.values():
            lines.append(
                f"  {t.table}: live files {t.files_before:,} -> {t.files_after:,} "
                f"({_mb(t.bytes_before)} -> {_mb(t.bytes_after)}); compacted "
                f"{t.files_compacted:,} files in {t.units_compacted:,} ranges"
                + (f" ({t.units_skipped} skipped)" if t.units_skipped else "")
                + f"; vacuumed {t.files_vacuumed:,} files; {t.commits} commits; version "
                f"{t.version_before} -> {t.version_after}; {t.seconds:.1f}s")
            if t.disk_files_before is not None:
                lines.append(
                    f"    on disk: data files {t.disk_files_before:,} -> {t.disk_files_after:,} "
                    f"({_mb(t.disk_bytes_before)} -> {_mb(t.disk_bytes_after)}), log entries "
                    f"{t.log_files_before:,} -> {t.log_files_after:,} "
                    f"({_mb(t.log_bytes_before)} -> {_mb(t.log_bytes_after)}), checkpoint at "
                    f"version {t.checkpoint_version}")
            lines.extend(f"    note: {n}" for n in t.notes)
        lines.append(f"  spark checkpoints: removed {len(self.checkpoints_removed)}, kept "
                     f"{len(self.checkpoints_kept)}")
        lines.extend(f"    removed {c}" for c in self.checkpoints_removed)
        lines.extend(f"  note: {n}" for n in self.notes)
        lines.append(f"  done in {self.seconds:.1f}s: live files {self.files_before:,} -> "
                     f"{self.files_after:,}, {self.commits} commits")
        return "\n".join(lines)


def closed_before_of(lake: BronzeLake, partition_size: int) -> int:
    """Start of the partition holding the stored tip: every block below it is in a closed range
    (0 when nothing is stored)."""
    tip = lake.stored_tip()
    return 0 if tip is None else span_of(tip, partition_size).start


def maintain_lake(
    lake: BronzeLake,
    *,
    closed_before: int,
    retention_hours: float = settings.DEFAULT_RETENTION_HOURS,
    partition_size: int = settings.DEFAULT_PARTITION_SIZE,
    target_file_bytes: int = settings.DEFAULT_COMPACT_TARGET_FILE_BYTES,
    enforce_retention_duration: bool = True,
    first_block: int = 0,
    checkpoint_idle_hours: float = settings.DEFAULT_CHECKPOINT_IDLE_HOURS,
    compact: bool = True,
    vacuum: bool = True,
    progress: Callable[[str], None] | None = None,
) -> MaintenanceReport:
    """Compact, vacuum and checkpoint every bronze and silver table; drop finished Spark
    checkpoints.

    ``closed_before``: blocks below it are final (complete partitions) and may be compacted.
    ``partition_size``: compaction never merges files across its aligned ranges.
    ``retention_hours``: removed files, and unreadable Spark checkpoints, older than this go;
    below Delta's 7 days only with ``enforce_retention_duration=False``.
    ``first_block``: the deployment's first block (partition scopes start there at the earliest).
    ``progress``: called with one line per step done.
    """
    if partition_size < 1 or target_file_bytes < 1 or closed_before < 0:
        raise ValueError("partition_size and target_file_bytes must be >= 1, closed_before >= 0")
    if not (math.isfinite(retention_hours) and retention_hours >= 0):
        raise ValueError(f"retention_hours must be a finite number >= 0, got {retention_hours}")
    if enforce_retention_duration and retention_hours < settings.DEFAULT_RETENTION_HOURS:
        raise ValueError(
            f"a retention of {retention_hours:g} h is below Delta's "
            f"{settings.DEFAULT_RETENTION_HOURS:g} h: readers of older versions and writes not "
            "yet committed could lose files; pass enforce_retention_duration=False to insist")
    say = progress or (lambda line: None)
    started = time.monotonic()
    report = MaintenanceReport(lake.root, closed_before, retention_hours)
    # Silver tables are range-replaced like bronze (a head-following run adds small files to
    # each): the same compaction, vacuum and log upkeep keep them small.
    silver = SilverLake(lake.root)
    for layer, names in ((lake, TABLES), (silver, SILVER_TABLES)):
        for name in names:
            key = name if layer is lake else f"{silver.layer}/{name}"
            if layer.table(name) is None:
                if layer is lake:
                    report.notes.append(f"no {name} table")
                continue
            report.tables[key] = _maintain_table(
                layer, name, closed_before=closed_before, partition_size=partition_size,
                target_file_bytes=target_file_bytes, retention_hours=retention_hours,
                compact=compact, vacuum=vacuum, say=say)
    if is_local(lake.root):
        removed, kept = clean_spark_checkpoints(
            lake, retention_hours=retention_hours, first_block=first_block,
            idle_hours=checkpoint_idle_hours)
        report.checkpoints_removed, report.checkpoints_kept = removed, kept
        if removed:
            say(f"removed {len(removed)} Spark checkpoints of complete scopes")
    else:
        report.notes.append("Spark checkpoints of a remote lake are left alone")
    report.seconds = time.monotonic() - started
    return report


# --- compaction planning ------------------------------------------------------------------------


def live_files(dt: DeltaTable) -> list[LiveFile] | None:
    """The table's live files with rows; None when one has no ``block_number`` statistics."""
    stats = pa.table(dt.get_add_actions(flatten=True))
    if stats.num_rows == 0:
        return []
    if "min.block_number" not in stats.column_names:
        return None
    columns = ("path", "size_bytes", "num_records", "min.block_number", "max.block_number")
    files = []
    for path, size, rows, lo, hi in zip(*(stats.column(c).to_pylist() for c in columns),
                                        strict=True):
        if rows == 0:
            continue  # nothing to merge, and no predicate ever needs it
        if lo is None or hi is None or rows is None:
            return None
        files.append(LiveFile(path, size, rows, lo, hi))
    return files


def plan_compaction(files: list[LiveFile], *, closed_before: int, partition_size: int,
                    target_file_bytes: int) -> list[CompactionUnit]:
    """Units worth rewriting as one file each (see the module docstring)."""
    clusters: list[list[LiveFile]] = []  # files whose block ranges touch or overlap
    for f in sorted(files, key=lambda f: (f.lo, f.hi)):
        if clusters and f.lo <= max(g.hi for g in clusters[-1]):
            clusters[-1].append(f)
        else:
            clusters.append([f])
    windows: list[list[list[LiveFile]]] = []  # clusters of one aligned range (or joined ones)
    for cluster in clusters:
        lo = cluster[0].lo
        if windows and lo // partition_size <= _hi(windows[-1][-1]) // partition_size:
            windows[-1].append(cluster)
        else:
            windows.append([cluster])
    units: list[CompactionUnit] = []
    small = target_file_bytes * SMALL_FRACTION
    for window in windows:
        if _hi(window[-1]) >= closed_before:
            continue  # holds blocks of the open range
        groups: list[list[LiveFile]] = []
        size = 0
        for cluster in window:
            cluster_bytes = sum(f.size for f in cluster)
            if groups and size + cluster_bytes <= target_file_bytes:
                groups[-1].extend(cluster)
                size += cluster_bytes
            else:
                groups.append(list(cluster))
                size = cluster_bytes
        for group in groups:
            if len(group) >= 2 and sum(f.size < small for f in group) >= 2:
                units.append(CompactionUnit(
                    start=min(f.lo for f in group), end=max(f.hi for f in group) + 1,
                    paths=tuple(sorted(f.path for f in group)),
                    bytes=sum(f.size for f in group), rows=sum(f.rows for f in group)))
    return units


def _hi(cluster: list[LiveFile]) -> int:
    return max(f.hi for f in cluster)


# --- one table ----------------------------------------------------------------------------------


def _maintain_table(lake: BronzeLake, name: str, *, closed_before: int, partition_size: int,
                    target_file_bytes: int, retention_hours: float, compact: bool, vacuum: bool,
                    say: Callable[[str], None]) -> TableMaintenance:
    started = time.monotonic()
    uri = lake.table_uri(name)
    dt = DeltaTable(uri)
    out = TableMaintenance(name, version_before=dt.version())
    out.files_before, out.bytes_before = _live_size(dt)
    _measure_disk(uri, out, before=True)

    if compact:
        files = live_files(dt)
        if files is None:
            out.notes.append("files without block_number statistics: not compacted")
        else:
            units = plan_compaction(files, closed_before=closed_before,
                                    partition_size=partition_size,
                                    target_file_bytes=target_file_bytes)
            for unit in units:
                removed = compact_unit(lake, name, unit)
                if removed:
                    out.units_compacted += 1
                    out.files_compacted += removed
                    out.commits += 1
                else:
                    out.units_skipped += 1
            if units:
                say(f"{name}: compacted {out.files_compacted:,} files of {out.units_compacted} "
                    f"ranges below block {closed_before:,}")

    if vacuum:
        deleted, commits = _vacuum(uri, math.ceil(retention_hours))
        out.files_vacuumed, out.commits = deleted, out.commits + commits
        if deleted:
            say(f"{name}: vacuumed {deleted:,} files")

    dt = DeltaTable(uri)
    dt.create_checkpoint()
    out.checkpoint_version = dt.version()
    dt.cleanup_metadata()
    dt = DeltaTable(uri)
    out.version_after = dt.version()
    out.files_after, out.bytes_after = _live_size(dt)
    _measure_disk(uri, out, before=False)
    out.seconds = time.monotonic() - started
    return out


def compact_unit(lake: BronzeLake, name: str, unit: CompactionUnit) -> int:
    """Rewrite the unit's blocks as one sorted file, in one commit; the number of files it
    removed (0: skipped, because the range changed until it no longer needs compacting, or
    concurrent writers kept winning)."""
    uri = lake.table_uri(name)
    schema = lake.tables[name].arrow_schema
    order = ["block_number", *(k for k in lake.tables[name].key if k != "block_number")]
    for attempt in range(1, COMPACT_ATTEMPTS + 1):
        dt = DeltaTable(uri)  # the snapshot everything below reads, and the commit is based on
        files = live_files(dt) or []
        inside = [f for f in files if f.hi >= unit.start and f.lo < unit.end]
        if any(f.lo < unit.start or f.hi >= unit.end for f in inside) or len(inside) < 2:
            log.info("%s: [%d, %d) changed under maintenance; left for next time",
                     name, unit.start, unit.end)
            return 0
        rows = range_dataset(dt, unit.start, unit.end).to_table(
            filter=(pc.field("block_number") >= unit.start) & (pc.field("block_number") < unit.end))
        expected = sum(f.rows for f in inside)
        if rows.num_rows != expected:  # never commit a rewrite that would change the row count
            raise RuntimeError(f"{name}: read {rows.num_rows} rows of [{unit.start}, {unit.end}) "
                               f"where the files hold {expected}; not compacting")
        data = rows.select(schema.names).cast(schema).sort_by([(c, "ascending") for c in order])
        # Our own file and statistics (delta-rs's writer clamps DECIMAL bounds to 64 bits, and
        # readers would then skip files holding larger wei values); it replaces exactly the
        # files read, on the snapshot read. dataChange=false: the rows are the same.
        writer = TableFileWriter(uri, name, schema)
        for batch in data.to_batches():
            writer.add(batch)
        written = writer.close()
        now = int(time.time() * 1000)
        actions = [AddAction(written.path, written.size, {}, now, False, written.stats),
                   *(RemoveAction(f.path, False, now, f.size, {}) for f in inside)]
        try:
            dt.create_write_transaction(
                actions, mode="append", schema=schema,
                commit_properties=CommitProperties(
                    # Same application id as every chainlake writer: any commit racing this one
                    # conflicts, and whoever loses re-reads (see ingestion.sink).
                    app_transactions=[Transaction(WRITER_APP_ID, time.time_ns())],
                    custom_metadata={"chainlake.operation": "compact"}))
            return len(inside)
        except CommitFailedError as err:  # another writer committed first: plan and read again
            writer.discard()
            log.info("%s: compaction of [%d, %d) lost a commit race (%s), attempt %d",
                     name, unit.start, unit.end, str(err).splitlines()[0], attempt)
            time.sleep(random.uniform(0.05, 0.2) * attempt)
    return 0


def _vacuum(uri: str, retention_hours: int) -> tuple[int, int]:
    """Delete expired removed files and old files no commit names; (files deleted, commits).

    delta-rs lists a tombstone's file again (and commits VACUUM START/END) until the tombstone
    expires, even when the file is gone: only vacuum when something is still on disk.
    """
    dt = DeltaTable(uri)
    candidates = dt.vacuum(retention_hours=retention_hours, dry_run=True,
                           enforce_retention_duration=False, full=True)
    if is_local(uri):
        root = Path(uri.removeprefix("file://"))
        candidates = [c for c in candidates if (root / c).exists() or Path(c).exists()]
    if not candidates:
        return 0, 0
    for attempt in range(1, COMPACT_ATTEMPTS + 1):
        dt = DeltaTable(uri)
        before = dt.version()
        try:
            dt.vacuum(retention_hours=retention_hours, dry_run=False,
                      enforce_retention_duration=False, full=True)
            return len(candidates), DeltaTable(uri).version() - before
        except CommitFailedError:
            if attempt == COMPACT_ATTEMPTS:
                raise
            time.sleep(random.uniform(0.05, 0.2) * attempt)
    return 0, 0


def _live_size(dt: DeltaTable) -> tuple[int, int]:
    sizes = pa.table(dt.get_add_actions(flatten=True)).column("size_bytes")
    return len(sizes), (pc.sum(sizes).as_py() or 0)


def _measure_disk(uri: str, out: TableMaintenance, *, before: bool) -> None:
    if not is_local(uri):
        return
    root = Path(uri.removeprefix("file://"))
    data = [p for p in root.rglob("*.parquet") if "_delta_log" not in p.parts]
    logs = [p for p in (root / "_delta_log").iterdir() if p.is_file()]
    figures = (len(data), sum(_size(p) for p in data), len(logs), sum(_size(p) for p in logs))
    suffix = "before" if before else "after"
    for key, value in zip(("disk_files", "disk_bytes", "log_files", "log_bytes"), figures,
                          strict=True):
        setattr(out, f"{key}_{suffix}", value)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # vacuumed or cleaned up by a concurrent maintenance
        return 0


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:,.1f} MB"


# --- Spark checkpoints --------------------------------------------------------------------------


def scope_range(scope: str, first_block: int = 0) -> tuple[int, int] | None:
    """Blocks ``[start, end)`` a checkpoint scope covers; None for an open-ended or unknown one."""
    if scope.startswith("partition-"):
        try:
            span = parse_key(scope.removeprefix("partition-"))
        except ValueError:
            return None
        return max(span.start, first_block), span.end
    match = _INGEST_SCOPE.match(scope)
    if match:
        start, end = int(match.group(1)), int(match.group(2))
        return (start, end) if end > start else None
    return None  # ingest-<start>-head (follows the head: never complete), or not ours


def clean_spark_checkpoints(lake: BronzeLake, *, retention_hours: float, first_block: int = 0,
                            idle_hours: float = settings.DEFAULT_CHECKPOINT_IDLE_HOURS,
                            now: float | None = None) -> tuple[list[str], list[str]]:
    """Delete the checkpoints of scopes the lake holds completely and old unreadable ones set
    aside; (removed, kept) scope names. Local lakes only."""
    root = Path(lake.checkpoint_uri("x")).parent
    if not root.is_dir():
        return [], []
    now = time.time() if now is None else now
    removed: list[str] = []
    kept: list[str] = []
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        unreadable = _UNREADABLE.match(path.name)
        if unreadable:
            set_aside = _set_aside_time(unreadable.group(1), path)
            done = now - set_aside > retention_hours * 3600
        else:
            span = scope_range(path.name, first_block)
            done = (span is not None
                    and now - _last_written(path) > idle_hours * 3600
                    and (span[0] >= span[1]
                         or first_missing_block(lake, span[0], span[1]) == span[1]))
        if done:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
        else:
            kept.append(path.name)
    return removed, kept


def _set_aside_time(stamp: str, path: Path) -> float:
    """When ``ingestion.checkpoint`` set the checkpoint aside (its name, in local time)."""
    try:
        return time.mktime(time.strptime(stamp, "%Y%m%dT%H%M%S"))
    except (ValueError, OverflowError):
        return _last_written(path)


def _last_written(path: Path) -> float:
    """Newest modification time of anything in the checkpoint directory."""
    newest = path.stat().st_mtime
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime)
            except FileNotFoundError:
                continue
    return newest


__all__ = ["CompactionUnit", "LiveFile", "MaintenanceReport", "TableMaintenance",
           "clean_spark_checkpoints", "closed_before_of", "compact_unit", "live_files",
           "maintain_lake", "plan_compaction", "scope_range"]
