"""The bronze tables: one declaration per table, from which every other form is derived.

Column names follow ethereum-etl's schema, except that every table says ``block_number``,
``block_hash``, ``block_timestamp`` and carries ``chain_id``. Quantities that fit in 64 bits are
BIGINT; wei amounts (and difficulties) are DECIMAL(38,0); hashes and addresses are lower-case
``0x`` hex strings. A column is nullable when some fork or some chain does not have it.

The Arrow schema (what the transforms build and the Delta tables store), the Spark schema (what
the data source declares) and the Markdown table in the README are all derived from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from ingestion.dataset_names import (  # noqa: F401 - re-exported: the tables' names live there
    BRONZE_TABLES,
    BUNDLE_NAME,
    CORE_TABLES,
    DATASETS,
    FILES_COLUMNS,
    FILES_NAME,
    SOURCE_DATASETS,
)

if TYPE_CHECKING:
    from pyspark.sql.types import StructType

# Types, named by what they hold.
BIGINT = pa.int64()
WEI = pa.decimal128(38, 0)  # every wei amount ever issued fits; larger values are an error
HEX = pa.string()  # lower-case 0x-prefixed hex: hashes, addresses, byte strings
TEXT = pa.string()
TIMESTAMP = pa.timestamp("us", tz="UTC")
BOOL = pa.bool_()

WITHDRAWAL = pa.struct(
    [
        pa.field("index", BIGINT, nullable=False),
        pa.field("validator_index", BIGINT, nullable=False),
        pa.field("address", HEX, nullable=False),
        pa.field("amount", BIGINT, nullable=False),  # gwei
    ]
)
ACCESS_LIST_ENTRY = pa.struct(
    [
        pa.field("address", HEX, nullable=False),
        pa.field("storage_keys", pa.list_(pa.field("element", HEX, nullable=False)), nullable=False),
    ]
)
AUTHORIZATION = pa.struct(
    [
        pa.field("chain_id", WEI, nullable=False),  # uint256 in the RLP
        pa.field("address", HEX, nullable=False),
        pa.field("nonce", BIGINT, nullable=False),
        pa.field("y_parity", BIGINT, nullable=False),
        pa.field("r", HEX, nullable=False),
        pa.field("s", HEX, nullable=False),
        # Recovered signer, when the node reports it (not every node does).
        pa.field("authority", HEX, nullable=True),
    ]
)


def list_of(item: pa.DataType) -> pa.DataType:
    """A list type whose elements are non-null (Spark's ``containsNull=false``)."""
    return pa.list_(pa.field("element", item, nullable=False))


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool
    doc: str

    @property
    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=self.nullable)


def col(name: str, type_: pa.DataType, doc: str, *, nullable: bool = False) -> Column:
    return Column(name, type_, nullable, doc)


def opt(name: str, type_: pa.DataType, doc: str) -> Column:
    """A column that is null where a fork or chain has not introduced the field."""
    return Column(name, type_, True, doc)


@dataclass(frozen=True)
class Table:
    """One bronze table: its columns in storage order and its primary key."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    doc: str

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([c.field for c in self.columns])

    def spark_schema(self) -> StructType:
        return spark_schema(self.arrow_schema)

    def markdown(self) -> str:
        rows = [f"| `{c.name}` | {type_label(c.type)} | {'yes' if c.nullable else 'no'} | {c.doc} |"
                for c in self.columns]
        head = f"**{self.name}** — {self.doc} Key: `({', '.join(self.key)})`.\n\n"
        return head + "| column | type | nullable | meaning |\n|---|---|---|---|\n" + "\n".join(rows)


BLOCK_CONTEXT = (
    col("chain_id", BIGINT, "EIP-155 chain id reported by the node (`eth_chainId`)."),
    col("block_number", BIGINT, "Block height."),
    col("block_hash", HEX, "Block hash."),
    col("block_timestamp", TIMESTAMP, "Block timestamp, UTC."),
)

BLOCKS = Table(
    name="blocks",
    doc="One row per block.",
    key=("chain_id", "block_number"),
    columns=(
        *BLOCK_CONTEXT,
        col("parent_hash", HEX, "Hash of the parent block."),
        opt("nonce", HEX, "Proof-of-work nonce (zero after the Merge); 8-byte hex."),
        col("sha3_uncles", HEX, "Keccak of the uncles list."),
        col("logs_bloom", HEX, "Bloom filter of the block's logs."),
        col("transactions_root", HEX, "Root of the transactions trie."),
        col("state_root", HEX, "Root of the state trie after the block."),
        col("receipts_root", HEX, "Root of the receipts trie."),
        col("miner", HEX, "Fee recipient (coinbase)."),
        col("difficulty", WEI, "Proof-of-work difficulty (zero after the Merge)."),
        opt("total_difficulty", WEI, "Cumulative difficulty, where the node still reports it."),
        col("size", BIGINT, "Block size in bytes."),
        col("extra_data", HEX, "Extra data field."),
        col("gas_limit", BIGINT, "Gas limit."),
        col("gas_used", BIGINT, "Gas used by all transactions."),
        opt("base_fee_per_gas", WEI, "EIP-1559 base fee (London and later)."),
        col("transaction_count", BIGINT, "Number of transactions in the block."),
        opt("withdrawals_root", HEX, "Root of the withdrawals trie (Shanghai and later)."),
        opt("withdrawals", list_of(WITHDRAWAL), "Validator withdrawals (Shanghai and later)."),
        opt("blob_gas_used", BIGINT, "EIP-4844 blob gas used (Cancun and later)."),
        opt("excess_blob_gas", BIGINT, "EIP-4844 excess blob gas (Cancun and later)."),
        opt("parent_beacon_block_root", HEX, "EIP-4788 parent beacon block root (Cancun)."),
        opt("requests_hash", HEX, "EIP-7685 execution requests hash (Prague and later)."),
    ),
)

TRANSACTIONS = Table(
    name="transactions",
    doc="One row per transaction, with its receipt's fields joined in.",
    key=("chain_id", "block_number", "transaction_index"),
    columns=(
        *BLOCK_CONTEXT,
        col("transaction_index", BIGINT, "Position in the block."),
        col("transaction_hash", HEX, "Transaction hash."),
        col("nonce", BIGINT, "Sender nonce."),
        col("from_address", HEX, "Sender."),
        opt("to_address", HEX, "Recipient; null for contract creation."),
        col("value", WEI, "Value transferred, in wei."),
        col("gas", BIGINT, "Gas limit of the transaction."),
        opt("gas_price", WEI, "Gas price (legacy, access-list; nodes also report it for later types)."),
        col("input", HEX, "Call data."),
        opt("max_fee_per_gas", WEI, "EIP-1559 fee cap."),
        opt("max_priority_fee_per_gas", WEI, "EIP-1559 tip cap."),
        col("transaction_type", BIGINT, "0 legacy, 1 access list, 2 EIP-1559, 3 blob, 4 set code."),
        opt("max_fee_per_blob_gas", WEI, "EIP-4844 blob fee cap."),
        opt("blob_versioned_hashes", list_of(HEX), "EIP-4844 blob versioned hashes."),
        opt("access_list", list_of(ACCESS_LIST_ENTRY), "EIP-2930 access list."),
        opt("authorization_list", list_of(AUTHORIZATION), "EIP-7702 authorizations."),
        opt("receipt_status", BIGINT, "1 success, 0 failure; null before Byzantium."),
        col("receipt_gas_used", BIGINT, "Gas used by this transaction."),
        col("receipt_cumulative_gas_used", BIGINT, "Gas used in the block up to and including it."),
        opt("receipt_effective_gas_price", WEI, "Price actually paid per gas."),
        opt("receipt_contract_address", HEX, "Created contract, for contract creations."),
        opt("receipt_root", HEX, "Post-state root; pre-Byzantium receipts only."),
        opt("receipt_blob_gas_used", BIGINT, "EIP-4844 blob gas used."),
        opt("receipt_blob_gas_price", WEI, "EIP-4844 blob gas price."),
        opt("l1_fee", WEI, "OP-stack L2: L1 data fee in wei."),
        opt("l1_gas_used", BIGINT, "OP-stack L2: L1 gas used."),
        opt("l1_gas_price", WEI, "OP-stack L2: L1 gas price."),
        opt("l1_fee_scalar", TEXT, "OP-stack L2: L1 fee scalar, as the node's decimal string."),
    ),
)

LOGS = Table(
    name="logs",
    doc="One row per log (event) emitted by a transaction.",
    key=("chain_id", "block_number", "log_index"),
    columns=(
        *BLOCK_CONTEXT,
        col("transaction_index", BIGINT, "Position of the emitting transaction in the block."),
        col("transaction_hash", HEX, "Emitting transaction."),
        col("log_index", BIGINT, "Position of the log in the block."),
        col("address", HEX, "Emitting contract."),
        col("data", HEX, "Non-indexed data."),
        col("topics", list_of(HEX), "Indexed topics, topic 0 first."),
    ),
)

# The tables fed by the node's block, transaction and receipt replies; traces (declared beside
# their transform in ``ingestion.datasets.traces``) join them in ``TABLES`` at the end.
TABLES: dict[str, Table] = {t.name: t for t in (BLOCKS, TRANSACTIONS, LOGS)}

# The "bundle" dataset: one row per block carrying its transactions and logs, so that a single
# fetch of a block feeds all three tables (split apart by ``transform.split_bundle``).
BUNDLE_SCHEMA = pa.schema(
    [
        *BLOCKS.arrow_schema,
        pa.field("transactions", list_of(pa.struct(list(TRANSACTIONS.arrow_schema))), nullable=False),
        pa.field("logs", list_of(pa.struct(list(LOGS.arrow_schema))), nullable=False),
    ]
)

# The "files" dataset (the ingestion path, ``ingestion.staging``): each Spark task writes its
# rows as Parquet files into the bronze tables' directories and yields one row per file written,
# so that no row crosses Spark or the driver; the driver commits the files to Delta. Its columns
# are declared in ``ingestion.dataset_names`` (Spark's planning workers read them without Arrow).
_FILES_TYPES = {"STRING": TEXT, "BIGINT": BIGINT, "DOUBLE": pa.float64()}
FILES_SCHEMA = pa.schema([pa.field(name, _FILES_TYPES[kind], nullable=nullable)
                          for name, kind, nullable in FILES_COLUMNS])


def arrow_schema_of(dataset: str) -> pa.Schema:
    """Arrow schema of a source dataset (a bronze table, the bundle or the files written)."""
    if dataset == BUNDLE_NAME:
        return BUNDLE_SCHEMA
    if dataset == FILES_NAME:
        return FILES_SCHEMA
    try:
        return TABLES[dataset].arrow_schema
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of "
                         f"{', '.join(SOURCE_DATASETS)}") from None


def spark_schema(schema: pa.Schema) -> StructType:
    """The Spark schema matching an Arrow schema field for field (names, order, types, nulls)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def type_label(t: pa.DataType) -> str:
    """SQL-ish name of an Arrow type, for documentation."""
    if t == BIGINT:
        return "BIGINT"
    if t == WEI:
        return "DECIMAL(38,0)"
    if t == TIMESTAMP:
        return "TIMESTAMP (UTC)"
    if pa.types.is_string(t):
        return "STRING"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_list(t):
        return f"ARRAY<{type_label(t.value_type)}>"
    if pa.types.is_struct(t):
        return "STRUCT<" + ", ".join(f"{f.name} {type_label(f.type)}" for f in t) + ">"
    return str(t)


def markdown_docs() -> str:
    """docs/schema.md, derived from the declarations (a test keeps the file in sync)."""
    parts = ["# Tables\n",
             "Generated by `python -m ingestion.schemas > docs/schema.md`; do not edit by hand.\n",
             "## Bronze (`<lake>/bronze/<table>`)\n",
             *(t.markdown() + "\n" for t in TABLES.values()),
             "## Silver (`<lake>/silver/<table>`)\n",
             *(t.markdown() + "\n" for t in silver_tables().values())]
    return "\n".join(parts)


# Each dataset beyond the core tables is declared in its own module, beside its transform and
# checks (they use the helpers above, hence the import at the end).
from ingestion.datasets.traces import TRACES  # noqa: E402

TABLES[TRACES.name] = TRACES


def silver_tables() -> dict[str, Table]:
    """The silver tables, declared beside their decoders. Imported on first use: every Spark
    Python worker imports this module, and the decoders' imports (numpy, eth_utils) would add a
    third of a CPU-second to each."""
    from ingestion.datasets.contracts import CONTRACTS
    from ingestion.datasets.token_transfers import TOKEN_TRANSFERS
    from ingestion.datasets.tokens import TOKENS

    return {t.name: t for t in (TOKEN_TRANSFERS, CONTRACTS, TOKENS)}


def __getattr__(name: str) -> object:
    """``SILVER_TABLES`` (module attribute, computed once by :func:`silver_tables`)."""
    if name == "SILVER_TABLES":
        globals()["SILVER_TABLES"] = tables = silver_tables()
        return tables
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

if tuple(TABLES) != BRONZE_TABLES:  # the names the source validates options with
    raise RuntimeError(f"ingestion.dataset_names.BRONZE_TABLES {BRONZE_TABLES} != the tables "
                       f"declared {tuple(TABLES)}")


if __name__ == "__main__":
    print(markdown_docs(), end="")
