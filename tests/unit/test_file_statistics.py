"""Readers that prune files by their Delta statistics (pyarrow datasets, DuckDB, Polars) find
every row, whatever column they filter on: every primitive column has bounds no tighter than
its values — including wei amounts beyond 64 bits, long strings and timestamps."""

from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from synthetic_chain import chain, write

from ingestion.maintenance import maintain_lake
from ingestion.schemas import WEI
from ingestion.staging import STRING_STAT_CHARS

HUGE = Decimal(10**37 + 1)  # far beyond 2^63; delta-rs's writer would clamp its bound
LONG_INPUT = "0x" + "ab" * 100  # longer than the string bound's prefix


def _lake_with_edge_values(lake) -> dict:
    rows = chain(40, txs=2)
    tx = rows["transactions"][5]
    tx["value"], tx["input"] = HUGE, LONG_INPUT
    rows["transactions"][7]["input"] = LONG_INPUT[:-1] + "c"  # shares the long prefix
    rows["blocks"][3]["block_timestamp"] = datetime(2025, 1, 1, 0, 0, 3, 999_999, tzinfo=UTC)
    for start in range(0, 40, 10):  # four commits: four files to prune among (and compact)
        window = {name: [r for r in table if start <= r["block_number"] < start + 10]
                  for name, table in rows.items()}
        write(lake, window, start, start + 10)
    return rows


def _found(lake, name: str, column: str, value) -> int:
    dataset = lake.table(name).to_pyarrow_dataset()
    return dataset.to_table(filter=pc.field(column) == value).num_rows


@pytest.mark.parametrize("compacted", [False, True])
def test_filters_on_any_column_find_their_rows(lake, compacted):
    rows = _lake_with_edge_values(lake)
    if compacted:
        report = maintain_lake(lake, closed_before=40, partition_size=40,
                               retention_hours=0, enforce_retention_duration=False)
        assert report.tables["transactions"].units_compacted >= 1
    assert len(LONG_INPUT) > STRING_STAT_CHARS
    assert _found(lake, "transactions", "value", pa.scalar(HUGE, WEI)) == 1
    assert _found(lake, "transactions", "input", LONG_INPUT) == 1
    assert _found(lake, "transactions", "input", LONG_INPUT[:-1] + "c") == 1
    address = rows["transactions"][11]["from_address"]
    expected = sum(r["from_address"] == address for r in rows["transactions"])
    assert _found(lake, "transactions", "from_address", address) == expected
    moment = rows["blocks"][3]["block_timestamp"]
    assert _found(lake, "blocks", "block_timestamp", pa.scalar(moment, pa.timestamp("us", "UTC"))) == 1
    log_address = rows["logs"][2]["address"]
    assert _found(lake, "logs", "address", log_address) == sum(
        r["address"] == log_address for r in rows["logs"])
