"""Synthetic bronze tables for tests: a consistent chain written with ``BronzeLake``.

``chain(n)`` gives the rows of blocks with linked hashes, rising timestamps, ``txs``
transactions per block and ``logs_per_tx`` logs per transaction; columns the continuity suite
does not look at get plausible defaults. Importable from any test (``tests/`` is on sys.path).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyarrow as pa

from ingestion.schemas import TABLES
from ingestion.sink import BronzeLake

CHAIN_ID = 31337
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def block_hash(n: int, fork: str = "") -> str:
    return "0x" + f"{fork}b{n:x}".rjust(64, "0")


def tx_hash(n: int, i: int) -> str:
    return "0x" + f"t{n:x}x{i:x}".rjust(64, "0")


def _default(field: pa.Field):
    """A plausible value for a column the suite does not look at."""
    if field.nullable:
        return None
    t = field.type
    if pa.types.is_integer(t):
        return 0
    if pa.types.is_decimal(t):
        return Decimal(0)
    if pa.types.is_timestamp(t):
        return T0
    if pa.types.is_list(t):
        return []
    return "0x"


def rows_to_table(name: str, rows: list[dict]) -> pa.Table:
    schema = TABLES[name].arrow_schema
    full = [{f.name: row.get(f.name, _default(f)) for f in schema} for row in rows]
    return pa.Table.from_pylist(full, schema=schema)


def chain(n: int, *, first: int = 0, txs: int = 2, logs_per_tx: int = 1,
          chain_id: int = CHAIN_ID) -> dict[str, list[dict]]:
    """Rows of a consistent chain of blocks [first, first + n)."""
    out: dict[str, list[dict]] = {"blocks": [], "transactions": [], "logs": []}
    for b in range(first, first + n):
        ctx = {"chain_id": chain_id, "block_number": b, "block_hash": block_hash(b),
               "block_timestamp": T0 + timedelta(seconds=12 * b)}
        out["blocks"].append({**ctx, "parent_hash": block_hash(b - 1), "transaction_count": txs})
        log_index = 0
        for i in range(txs):
            out["transactions"].append({**ctx, "transaction_index": i,
                                        "transaction_hash": tx_hash(b, i), "from_address": "0x1"})
            for _ in range(logs_per_tx):
                out["logs"].append({**ctx, "transaction_index": i, "transaction_hash": tx_hash(b, i),
                                    "log_index": log_index, "address": "0x2", "topics": ["0x3"]})
                log_index += 1
    return out


def write(lake: BronzeLake, rows: dict[str, list[dict]], start: int, end: int) -> None:
    for name in ("transactions", "logs", "blocks"):
        lake.replace_range(name, rows_to_table(name, rows[name]), start, end)


def rewrite_block(lake: BronzeLake, table: str, number: int, change) -> None:
    """Replace the rows of one block of ``table`` by ``change(rows)``."""
    rows = [r for r in lake.read(table).to_pylist() if r["block_number"] == number]
    lake.replace_range(table, rows_to_table(table, change(rows)), number, number + 1)
