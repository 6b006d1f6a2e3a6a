"""Tasks write the bronze tables' files; the driver only commits them.

In the ingestion path (the `evm` source's ``files`` dataset) a Spark task does not hand its rows
to Spark. It turns each chunk of blocks into the three tables' rows and writes them as Parquet
files straight into the tables' directories, where they stay invisible until a Delta commit
names them. It yields one small row per file (``schemas.FILES_SCHEMA``): path, size, rows,
Delta statistics, the task's block range with the parent hash of its first block and the hash
of its last, and how its time split between fetching, transforming and writing. The driver
checks the links between tasks and with the lake, then commits each table's files in one Delta
transaction that also removes what the range replaces (``BronzeLake.commit_files``).

So no row crosses the JVM or the driver: memory per micro-batch is what the tasks buffer, and
CPU is the tasks' parse, transform and Parquet encoding. Files of a task that is retried, or of
a range that failed its link checks, are deleted; a crash can leave uncommitted files behind,
which no reader sees and ``vacuum`` removes.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ingestion.schemas import CORE_TABLES, FILES_SCHEMA, TABLES

# Rows buffered per table before they are encoded as one Parquet row group: bounds a task's
# memory whatever its block range (a mainnet transaction row is ~1 KB; 16 Ki rows is ~100 mainnet
# blocks, still large row groups for readers).
ROW_GROUP_ROWS = 16 * 1024
_STAGES = ("fetch", "transform", "write")  # a task's time, split
COMPRESSION = "snappy"  # delta-rs's default: the files look like every other writer's


STRING_STAT_CHARS = 32  # string bounds are prefixes (Spark's default length), widened below


def _stat_columns(schema: pa.Schema) -> list[str]:
    # Every primitive column gets bounds: delta-rs turns a column without bounds into a pruning
    # predicate that excludes the file (a filter on `address` would find nothing). Bounds must
    # never exclude a row wrongly, so inexact ones are widened (see ``_bound``).
    return [f.name for f in schema
            if pa.types.is_int64(f.type) or pa.types.is_decimal(f.type)
            or pa.types.is_string(f.type) or pa.types.is_timestamp(f.type)
            or pa.types.is_boolean(f.type)]


def _bound(value: object, upper: bool) -> object:
    """A JSON statistic no tighter than ``value``: decimals exact (JSON integers), strings cut
    to a prefix (an upper bound then gets the highest code point appended), timestamps in
    milliseconds rounded outwards."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, str):
        if len(value) <= STRING_STAT_CHARS:
            return value
        return value[:STRING_STAT_CHARS] + ("\U0010ffff" if upper else "")
    if isinstance(value, datetime):
        ms = value.replace(microsecond=value.microsecond // 1000 * 1000)
        if upper and ms != value:
            ms += timedelta(milliseconds=1)
        return ms.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return value


def _fs_and_path(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(uri if "://" in uri else "file://" + uri)


@dataclass
class TableFile:
    """One Parquet file written into a bronze table's directory, not yet committed."""

    table: str
    path: str  # relative to the table's root
    size: int
    num_records: int
    stats: str  # Delta statistics JSON


class TableFileWriter:
    """Writes one table's rows for one task into one Parquet file, with Delta statistics."""

    def __init__(self, table_uri: str, name: str, schema: pa.Schema | None = None) -> None:
        self.name = name
        self.schema = schema if schema is not None else TABLES[name].arrow_schema
        self.path = f"part-{uuid.uuid4().hex}-c000.snappy.parquet"
        self._fs, root = _fs_and_path(table_uri)
        self._full_path = f"{root}/{self.path}"
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self.num_records = 0
        self._stat_names = _stat_columns(self.schema)
        self._min: dict[str, object] = {}
        self._max: dict[str, object] = {}
        self._nulls = dict.fromkeys(self._stat_names, 0)

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        for name in self._stat_names:
            column = batch.column(name)
            self._nulls[name] += column.null_count
            bounds = pc.min_max(column)
            lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
            if lo is not None:
                self._min[name] = lo if name not in self._min else min(self._min[name], lo)
                self._max[name] = hi if name not in self._max else max(self._max[name], hi)
        self._buffer.append(batch)
        self._buffered += batch.num_rows
        self.num_records += batch.num_rows
        if self._buffered >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            sink = self._fs.open_output_stream(self._full_path)
            self._writer = pq.ParquetWriter(sink, self.schema, compression=COMPRESSION)
        self._writer.write_table(pa.Table.from_batches(self._buffer, self.schema),
                                 row_group_size=self._buffered)
        self._buffer, self._buffered = [], 0

    def close(self) -> TableFile | None:
        """Finish the file; None when the task had no rows for this table (no file)."""
        self._flush()
        if self._writer is None:
            return None
        self._writer.close()
        self._writer = None
        size = self._fs.get_file_info(self._full_path).size
        stats = {"numRecords": self.num_records,
                 "minValues": {k: _bound(v, False) for k, v in self._min.items()},
                 "maxValues": {k: _bound(v, True) for k, v in self._max.items()},
                 "nullCount": self._nulls}
        return TableFile(self.name, self.path, size, self.num_records, json.dumps(stats))

    def discard(self) -> None:
        self._buffer, self._buffered = [], 0
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        delete_files(self._fs, [self._full_path])


def delete_files(fs: pafs.FileSystem, paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            fs.delete_file(path)


def read_table_file(table_uri: str, schema: pa.Schema, path: str) -> pa.Table:
    """The rows of one data file of a table (``path`` relative to its root), in its declared
    ``schema`` (files other writers made may say ``string_view`` or ``large_string``)."""
    fs, root = _fs_and_path(table_uri)
    with fs.open_input_file(f"{root}/{path}") as source:
        return pq.read_table(source).select(schema.names).cast(schema)


def delete_table_files(lake_root: str, files: list[TableFile], layer: str = "bronze") -> None:
    """Delete written files that will not be committed (a range read again, a failed commit)."""
    for f in files:
        fs, root = _fs_and_path(f"{lake_root}/{layer}/{f.table}")
        delete_files(fs, [f"{root}/{f.path}"])


class StagedOutput:
    """What a task of the ``files`` dataset produces from the chunks of blocks it reads."""

    def __init__(self, lake_root: str, chain_id: int, start: int, end: int,
                 tables: Sequence[str] = CORE_TABLES) -> None:
        self.chain_id, self.start, self.end = chain_id, start, end
        self.writers = {name: TableFileWriter(f"{lake_root}/bronze/{name}", name)
                        for name in tables}
        self.first_parent_hash: str | None = None
        self.last_block_hash: str | None = None
        self.seconds = {"fetch": 0.0, "transform": 0.0, "write": 0.0}

    def add(self, raw: list, fetch_seconds: float) -> None:
        from ingestion.transform import table_batches

        began = time.perf_counter()
        tables = table_batches(self.chain_id, raw, tuple(self.writers))
        transformed = time.perf_counter()
        for name, batch in tables.items():
            self.writers[name].add(batch)
        if self.first_parent_hash is None:
            self.first_parent_hash = raw[0].block["parentHash"].lower()
        self.last_block_hash = raw[-1].block["hash"].lower()
        self.seconds["fetch"] += fetch_seconds
        self.seconds["transform"] += transformed - began
        self.seconds["write"] += time.perf_counter() - transformed

    def discard(self) -> None:
        for writer in self.writers.values():
            writer.discard()

    def finish(self, json_bytes: int) -> Iterator[pa.RecordBatch]:
        began = time.perf_counter()
        files = {name: w.close() for name, w in self.writers.items()}
        self.seconds["write"] += time.perf_counter() - began
        rows = []
        for name, f in files.items():
            rows.append({
                "table": name, "path": f.path if f else None, "size": f.size if f else 0,
                "num_records": f.num_records if f else 0, "stats": f.stats if f else None,
                "start_block": self.start, "end_block": self.end,
                "first_parent_hash": self.first_parent_hash,
                "last_block_hash": self.last_block_hash,
                "fetch_seconds": self.seconds["fetch"],
                "transform_seconds": self.seconds["transform"],
                "write_seconds": self.seconds["write"], "json_bytes": json_bytes,
            })
        yield pa.RecordBatch.from_pylist(rows, schema=FILES_SCHEMA)


@dataclass(frozen=True)
class TaskFigures:
    """What one Spark task of a micro-batch read and wrote: blocks ``[start, end)``."""

    start: int
    end: int
    rows: dict[str, int]
    stages: dict[str, float]  # fetch, transform, write seconds
    json_bytes: int

    @classmethod
    def of(cls, data: dict) -> TaskFigures:
        return cls(**data)


@dataclass(frozen=True)
class StagedRange:
    """What the tasks of one micro-batch (or one repair chunk) wrote, as the driver sees it."""

    files: dict[str, list[TableFile]]  # per table, the files to commit
    tasks: list[tuple[int, int, str, str]]  # (start, end, parent hash of start, hash of end - 1)
    seconds: dict[str, float]  # summed over tasks: fetch, transform, write
    json_bytes: int
    figures: list[TaskFigures]  # per task, in block order

    @property
    def start(self) -> int:
        return min(t[0] for t in self.tasks)

    @property
    def end(self) -> int:
        return max(t[1] for t in self.tasks)

    @property
    def rows(self) -> dict[str, int]:
        return {name: sum(f.num_records for f in files) for name, files in self.files.items()}

    def all_files(self) -> list[TableFile]:
        return [f for files in self.files.values() for f in files]

    @classmethod
    def of(cls, rows: pa.Table) -> StagedRange | None:
        """From the ``files`` dataset's rows (one per table per task); None for no rows."""
        if rows.num_rows == 0:
            return None
        written = set(rows.column("table").to_pylist())
        files: dict[str, list[TableFile]] = {name: [] for name in TABLES if name in written}
        tasks: dict[int, tuple[int, int, str, str]] = {}
        figures: dict[int, TaskFigures] = {}
        for r in rows.to_pylist():
            if r["path"] is not None:
                files[r["table"]].append(TableFile(r["table"], r["path"], r["size"],
                                                   r["num_records"], r["stats"]))
            task = r["start_block"]
            if task not in tasks:
                tasks[task] = (r["start_block"], r["end_block"], r["first_parent_hash"],
                               r["last_block_hash"])
                figures[task] = TaskFigures(
                    r["start_block"], r["end_block"], {},
                    {key: r[f"{key}_seconds"] for key in _STAGES}, r["json_bytes"])
            figures[task].rows[r["table"]] = r["num_records"]
        ordered = [figures[k] for k in sorted(figures)]
        seconds = {key: sum(f.stages[key] for f in ordered) for key in _STAGES}
        return cls(files, sorted(tasks.values()), seconds,
                   sum(f.json_bytes for f in ordered), ordered)
