"""The source's dataset names and the ``files`` rows' columns, without importing pyarrow.

Spark starts a fresh Python process for each planning step of a query (creating the data
source, the stream's offsets, planning the read) before any task runs; each imports
``ingestion.source`` to validate options and declare the schema. Those steps need names, not
Arrow types: importing the table declarations there (pyarrow.compute, the transforms) cost
0.1-0.2 CPU-s per step, on the path every run waits on. ``ingestion.schemas`` builds the tables
and checks it agrees with these names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql.types import StructType

# The tables fed by the node's block, transaction and receipt replies.
CORE_TABLES: tuple[str, ...] = ("blocks", "transactions", "logs")
# Every bronze table, in storage order (``ingestion.schemas.TABLES`` has these keys, in order).
BRONZE_TABLES: tuple[str, ...] = (*CORE_TABLES, "traces")
# One row per block with its transactions and logs nested (``transform.split_bundle``).
BUNDLE_NAME = "bundle"
# The ingestion path: tasks write the tables' Parquet files and yield one row per file.
FILES_NAME = "files"
# Datasets made of rows (the transforms build them); the source also offers FILES_NAME.
DATASETS: tuple[str, ...] = (*BRONZE_TABLES, BUNDLE_NAME)
SOURCE_DATASETS: tuple[str, ...] = (*DATASETS, FILES_NAME)
# How traces are asked of a node: parity's ``trace_block`` or geth's callTracer.
TRACE_APIS: tuple[str, ...] = ("parity", "geth")

# The ``files`` dataset's row (``ingestion.staging``): (name, type, nullable). Spark SQL type
# names; ``ingestion.schemas.FILES_SCHEMA`` is the Arrow form, ``files_spark_schema`` Spark's.
FILES_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("table", "STRING", False),
    ("path", "STRING", True),  # relative to the table's root; null: no rows
    ("size", "BIGINT", False),
    ("num_records", "BIGINT", False),
    ("stats", "STRING", True),  # Delta statistics JSON of the file
    ("start_block", "BIGINT", False),  # the task's blocks [start, end)
    ("end_block", "BIGINT", False),
    ("first_parent_hash", "STRING", False),  # parent of block start_block (0x hex)
    ("last_block_hash", "STRING", False),  # hash of block end_block - 1 (0x hex)
    ("fetch_seconds", "DOUBLE", False),  # the task's time, split
    ("transform_seconds", "DOUBLE", False),
    ("write_seconds", "DOUBLE", False),
    ("json_bytes", "BIGINT", False),  # size of the node's replies
)


def files_spark_schema() -> StructType:
    """The ``files`` rows as a Spark ``StructType`` (pyspark.sql.types only: no pyarrow)."""
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    types = {"STRING": StringType(), "BIGINT": LongType(), "DOUBLE": DoubleType()}
    return StructType([StructField(name, types[kind], nullable)
                       for name, kind, nullable in FILES_COLUMNS])
