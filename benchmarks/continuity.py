"""Time the great-expectations continuity suite (``validate_range``) over a large synthetic lake.

Shape (default): 1,000,000 blocks whose transaction counts cycle 0, 1, 2 (1,000,000 transaction
rows), one log per transaction (1,000,000 log rows), written as Arrow straight into a temporary
lake in 100,000-block range replaces (like micro-batches). Then ``validate_range`` runs over the
whole stored range (in windows of about 500,000 rows, see ``ingestion.continuity``), over one
100,000-block partition, and once more with every row failing (a wrong chain id); each prints
seconds, rows/s and the peak RSS of the process (the lake is built in a child process, so it
does not count).

    .venv/bin/python benchmarks/continuity.py [--blocks 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.measure import PeakRss, tree_rss  # noqa: E402
from ingestion.continuity import validate_range  # noqa: E402
from ingestion.schemas import TABLES  # noqa: E402
from ingestion.sink import BronzeLake  # noqa: E402

CHAIN_ID = 31337
CHUNK = 100_000


def _hashes(prefix: str, numbers: np.ndarray, suffix: np.ndarray | None = None) -> pa.Array:
    """Distinct 0x-prefixed 32-byte hex strings per number (and suffix), vectorized."""
    text = pc.utf8_lpad(pa.array(numbers).cast(pa.string()), 30, "0")
    if suffix is not None:
        text = pc.binary_join_element_wise(text, pc.utf8_lpad(pa.array(suffix).cast(pa.string()), 6,
                                                              "0"), "")
    else:
        text = pc.utf8_lpad(text, 36, "0")
    return pc.binary_join_element_wise(pa.scalar("0x" + prefix * 28), text, "")


def _filled(name: str, columns: dict[str, pa.Array], n: int) -> pa.Table:
    """The table with ``columns`` given and every other column a null or a zero-like value."""
    arrays = []
    for field in TABLES[name].arrow_schema:
        if field.name in columns:
            arrays.append(columns[field.name].cast(field.type))
        elif field.nullable:
            arrays.append(pa.nulls(n, field.type))
        elif pa.types.is_list(field.type):
            offsets = pa.array(np.zeros(n + 1, dtype=np.int32))
            arrays.append(pa.ListArray.from_arrays(offsets, pa.array([], field.type.value_type))
                          .cast(field.type))
        elif pa.types.is_string(field.type):
            arrays.append(pa.array(np.full(n, "0x", dtype=object), pa.string()))
        else:
            arrays.append(pa.array(np.zeros(n, dtype=np.int64)).cast(field.type))
    return pa.Table.from_arrays(arrays, schema=TABLES[name].arrow_schema)


def chain_tables(start: int, end: int) -> dict[str, pa.Table]:
    """A consistent chain of blocks [start, end): 0/1/2 transactions, one log per transaction."""
    numbers = np.arange(start, end, dtype=np.int64)
    n = len(numbers)
    counts = numbers % 3
    stamps = pa.array(1_700_000_000_000_000 + numbers * 12_000_000).cast(
        pa.timestamp("us", tz="UTC"))
    context = {"chain_id": pa.array(np.full(n, CHAIN_ID, dtype=np.int64)),
               "block_number": pa.array(numbers), "block_hash": _hashes("b", numbers),
               "block_timestamp": stamps}
    blocks = _filled("blocks", {**context, "parent_hash": _hashes("b", numbers - 1),
                                "transaction_count": pa.array(counts)}, n)
    # One row per transaction: repeat each block's context, index 0..count-1 within the block.
    owner = np.repeat(np.arange(n), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    index = np.arange(len(owner)) - first
    tx_numbers = numbers[owner]
    tx_context = {k: v.take(pa.array(owner)) for k, v in context.items()}
    tx_hashes = _hashes("c", tx_numbers, index)
    transactions = _filled("transactions", {**tx_context, "transaction_index": pa.array(index),
                                            "transaction_hash": tx_hashes}, len(owner))
    logs = _filled("logs", {**tx_context, "transaction_index": pa.array(index),
                            "transaction_hash": tx_hashes, "log_index": pa.array(index)}, len(owner))
    return {"blocks": blocks, "transactions": transactions, "logs": logs}


def build_lake(root: str, blocks: int) -> dict[str, int]:
    lake = BronzeLake(root)
    rows = {name: 0 for name in TABLES}
    for start in range(0, blocks, CHUNK):
        end = min(start + CHUNK, blocks)
        tables = chain_tables(start, end)
        for name in ("transactions", "logs", "blocks"):
            lake.replace_range(name, tables[name], start, end)
            rows[name] += tables[name].num_rows
    return rows


def timed(label: str, lake: BronzeLake, start: int | None = None, end: int | None = None,
          chain_id: int | None = None) -> None:
    with PeakRss() as rss:
        began = time.monotonic()
        report = validate_range(lake, start, end, chain_id=chain_id)
        seconds = time.monotonic() - began
    rows = sum(report.rows.values())
    # The synthetic chain is consistent: it passes, unless told to expect another chain id.
    assert report.success == (chain_id in (None, CHAIN_ID)), report.render()
    print(f"{label:<48} {seconds:6.1f}s  {report.end - report.start:,} blocks, {rows:,} rows "
          f"({rows / seconds:,.0f} rows/s, {(report.end - report.start) / seconds:,.0f} blocks/s)  "
          f"peak RSS {rss.peak / 2**20:,.0f} MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=1_000_000)
    parser.add_argument("--keep", default=None, help="build the lake here and keep it")
    args = parser.parse_args()
    root = args.keep or tempfile.mkdtemp(prefix="chainlake-continuity-")
    try:
        began = time.monotonic()
        # Built in a child process so that its memory does not count in the peaks below.
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            rows = pool.apply(build_lake, (str(Path(root) / "lake"), args.blocks))
        lake = BronzeLake(str(Path(root) / "lake"))
        print(f"synthetic lake: {rows['blocks']:,} blocks, {rows['transactions']:,} transactions, "
              f"{rows['logs']:,} logs written in {time.monotonic() - began:.1f}s ({root})",
              flush=True)
        import great_expectations  # noqa: F401 - import once, outside the timings

        print(f"RSS after importing great-expectations: {tree_rss(os.getpid()) / 2**20:,.0f} MiB")

        timed("validate_range, whole stored range", lake)
        partition = min(CHUNK, args.blocks)
        timed(f"validate_range, one {partition:,}-block partition", lake,
              args.blocks - partition, args.blocks)
        timed("validate_range, every row failing (chain id 1)", lake, chain_id=1)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
