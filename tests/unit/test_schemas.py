"""The schema declarations are the single source: derived forms agree with them."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ingestion.schemas import BUNDLE_SCHEMA, TABLES, WEI, arrow_schema_of, markdown_docs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schema.md"


def test_docs_are_generated_from_the_declarations():
    assert DOCS.read_text() == markdown_docs(), "run: python -m ingestion.schemas > docs/schema.md"


def test_every_table_has_block_context_chain_id_and_a_key_of_its_columns():
    for table in TABLES.values():
        names = table.column_names
        assert names[:4] == ["chain_id", "block_number", "block_hash", "block_timestamp"]
        assert set(table.key) <= set(names)
        assert len(names) == len(set(names))


def test_wei_amounts_are_decimal_38_0():
    tx = TABLES["transactions"].arrow_schema
    for name in ("value", "gas_price", "max_fee_per_gas", "receipt_effective_gas_price"):
        assert tx.field(name).type == WEI


def test_bundle_nests_the_flat_tables():
    assert arrow_schema_of("bundle") == BUNDLE_SCHEMA
    tx_struct = pa.struct(list(TABLES["transactions"].arrow_schema))
    assert BUNDLE_SCHEMA.field("transactions").type.value_type == tx_struct


def test_spark_schema_matches_arrow_field_for_field():
    for table in TABLES.values():
        spark = table.spark_schema()
        assert spark.fieldNames() == table.column_names
        for field, column in zip(spark.fields, table.columns, strict=True):
            assert field.nullable == column.nullable, column.name
    tx = TABLES["transactions"].spark_schema()
    assert tx["value"].dataType.simpleString() == "decimal(38,0)"
    assert tx["block_timestamp"].dataType.simpleString() == "timestamp"
