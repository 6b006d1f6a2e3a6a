"""ingestion.transform: node replies → Arrow rows, checked against ethereum-etl's expected rows.

The fixtures are real Ethereum mainnet replies and the rows ethereum-etl (MIT) derives from them.
Every column ethereum-etl also has is compared, value by value; the rest is checked on hand-made
replies in the shape geth/anvil return (typed transactions, L2 receipt fields, errors).
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from mainnet_fixtures import FIXTURES

from ingestion import schemas
from ingestion.transform import (
    RawBlock,
    TransformError,
    bundle_batch,
    dataset_batch,
    empty_table,
    split_bundle,
    table_batches,
)

MAINNET = 1

# ---------------------------------------------------------------------------------------------
# Loading the fixtures.


def reply(path: Path) -> dict:
    return json.loads(path.read_text())["result"]


def read_rows(path: Path) -> list[dict]:
    """ethereum-etl's expected rows: CSV (all strings) or JSON lines."""
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def block_reply(directory: str, number: int) -> dict:
    name = f"web3_response.eth_getBlockByNumber_{hex(number)}_true.json"
    return reply(FIXTURES / directory / name)


def receipt_replies(directory: str, block: dict) -> list[dict]:
    return [
        reply(FIXTURES / directory / f"web3_response.eth_getTransactionReceipt_{tx['hash']}.json")
        for tx in block["transactions"]
    ]


def stub_receipts(block: dict) -> list[dict]:
    """Receipts for fixtures that have none (only the transaction columns are compared)."""
    return [
        {"transactionHash": tx["hash"], "blockHash": block["hash"], "gasUsed": "0x0",
         "cumulativeGasUsed": "0x0", "logs": []}
        for tx in block["transactions"]
    ]


def _q(value: int | None) -> str | None:
    return None if value is None else hex(value)


def rebuild_replies(blocks: list[dict], txs: list[dict], logs: list[dict]) -> list[RawBlock]:
    """Node replies (hex quantities, full transactions, receipts with logs) from etl's rows."""
    out = []
    for b in blocks:
        block_txs = sorted((t for t in txs if t["block_number"] == b["number"]),
                           key=lambda t: t["transaction_index"])
        reply_txs, receipts = [], []
        for t in block_txs:
            tx = {
                "blockHash": t["block_hash"], "blockNumber": hex(t["block_number"]),
                "hash": t["hash"], "nonce": hex(t["nonce"]),
                "transactionIndex": hex(t["transaction_index"]), "from": t["from_address"],
                "to": t["to_address"], "value": hex(t["value"]), "gas": hex(t["gas"]),
                "gasPrice": hex(t["gas_price"]), "input": t["input"],
                "type": hex(t["transaction_type"]),
                "v": "0x1", "r": "0x1", "s": "0x1",
            }
            if t["max_fee_per_gas"] is not None:  # geth leaves out fields a type does not have
                tx["maxFeePerGas"] = hex(t["max_fee_per_gas"])
                tx["maxPriorityFeePerGas"] = hex(t["max_priority_fee_per_gas"])
                tx["accessList"] = []
            reply_txs.append(tx)
            receipt = {
                "transactionHash": t["hash"], "transactionIndex": hex(t["transaction_index"]),
                "blockHash": t["block_hash"], "blockNumber": hex(t["block_number"]),
                "from": t["from_address"], "to": t["to_address"],
                "cumulativeGasUsed": hex(t["receipt_cumulative_gas_used"]),
                "gasUsed": hex(t["receipt_gas_used"]),
                "contractAddress": t["receipt_contract_address"],
                "effectiveGasPrice": _q(t["receipt_effective_gas_price"]),
                "type": hex(t["transaction_type"]),
                "logs": [
                    {"address": lg["address"], "topics": lg["topics"], "data": lg["data"],
                     "blockNumber": hex(lg["block_number"]), "blockHash": lg["block_hash"],
                     "transactionHash": lg["transaction_hash"],
                     "transactionIndex": hex(lg["transaction_index"]),
                     "logIndex": hex(lg["log_index"]), "removed": False}
                    for lg in sorted(logs, key=lambda lg: lg["log_index"])
                    if lg["transaction_hash"] == t["hash"]
                ],
            }
            if t["receipt_status"] is not None:
                receipt["status"] = hex(t["receipt_status"])
            if t["receipt_root"] is not None:
                receipt["root"] = t["receipt_root"]
            receipts.append(receipt)
        block = {
            "number": hex(b["number"]), "hash": b["hash"], "parentHash": b["parent_hash"],
            "nonce": b["nonce"], "sha3Uncles": b["sha3_uncles"], "logsBloom": b["logs_bloom"],
            "transactionsRoot": b["transactions_root"], "stateRoot": b["state_root"],
            "receiptsRoot": b["receipts_root"], "miner": b["miner"],
            "difficulty": hex(b["difficulty"]), "totalDifficulty": _q(b["total_difficulty"]),
            "size": hex(b["size"]), "extraData": b["extra_data"], "gasLimit": hex(b["gas_limit"]),
            "gasUsed": hex(b["gas_used"]), "timestamp": hex(b["timestamp"]),
            "baseFeePerGas": _q(b["base_fee_per_gas"]), "mixHash": "0x" + "00" * 32,
            "transactions": reply_txs, "uncles": [],
        }
        if b.get("withdrawals_root") is not None:
            block["withdrawalsRoot"] = b["withdrawals_root"]
            block["withdrawals"] = [
                {"index": hex(w["index"]), "validatorIndex": hex(w["validator_index"]),
                 "address": w["address"], "amount": hex(w["amount"])}
                for w in b["withdrawals"]
            ]
        assert len(reply_txs) == b["transaction_count"]
        out.append(RawBlock(block, receipts))
    return out


# ---------------------------------------------------------------------------------------------
# The cases: node replies and what ethereum-etl expects of them.


@dataclass(frozen=True)
class Expected:
    table: str  # our table the etl rows compare with
    path: str  # under FIXTURES
    count: int  # rows etl expects (asserted, so a fixture cannot silently shrink)


@dataclass(frozen=True)
class Case:
    blocks: Callable[[], list[RawBlock]]
    expected: tuple[Expected, ...]
    receipts_known: bool = True  # False: stub receipts, the receipt columns mean nothing
    numbers: tuple[int, ...] = field(default=())


def _export_blocks(directory: str, *numbers: int) -> Callable[[], list[RawBlock]]:
    def load() -> list[RawBlock]:
        blocks = [block_reply(f"test_export_blocks_job/{directory}", n) for n in numbers]
        return [RawBlock(b, stub_receipts(b)) for b in blocks]

    return load


def _block_483920() -> list[RawBlock]:
    block = block_reply("test_export_blocks_job/block_with_logs", 483920)
    return [RawBlock(block, receipt_replies("test_export_receipts_job/receipts_with_logs", block))]


def _stream_1755634() -> list[RawBlock]:
    d = "test_stream/blocks_1755634_1755635"
    blocks = [block_reply(d, 1755634), block_reply(d, 1755635)]
    return [RawBlock(b, receipt_replies(d, b)) for b in blocks]


def _stream_17173049() -> list[RawBlock]:
    d = FIXTURES / "test_stream/blocks_17173049_17173050"
    return rebuild_replies(read_rows(d / "expected_blocks.json"),
                           read_rows(d / "expected_transactions.json"),
                           read_rows(d / "expected_logs.json"))


EB = "test_export_blocks_job"
CASES = {
    "genesis-0": Case(
        _export_blocks("block_without_transactions", 0),
        (Expected("blocks", f"{EB}/block_without_transactions/expected_blocks.csv", 1),
         Expected("transactions", f"{EB}/block_without_transactions/expected_transactions.csv",
                  0)),
        numbers=(0,)),
    "frontier-47218-47219": Case(
        _export_blocks("blocks_with_transactions", 47218, 47219),
        (Expected("blocks", f"{EB}/blocks_with_transactions/expected_blocks.csv", 2),
         Expected("transactions", f"{EB}/blocks_with_transactions/expected_transactions.csv", 4)),
        receipts_known=False, numbers=(47218, 47219)),
    "parity-483920-receipts": Case(
        _block_483920,
        (Expected("blocks", f"{EB}/block_with_logs/expected_blocks.csv", 1),
         Expected("transactions", f"{EB}/block_with_logs/expected_transactions.csv", 4),
         Expected("transactions", "test_export_receipts_job/receipts_with_logs/"
                  "expected_receipts.csv", 4),
         Expected("transactions", "test_export_receipts_job/receipts_with_logs/"
                  "expected_receipts.json", 4),
         Expected("logs", "test_export_receipts_job/receipts_with_logs/expected_logs.csv", 2),
         Expected("logs", "test_export_receipts_job/receipts_with_logs/expected_logs.json", 2)),
        numbers=(483920,)),
    "stream-1755634-1755635": Case(
        _stream_1755634,
        (Expected("blocks", "test_stream/blocks_1755634_1755635/expected_blocks.json", 2),
         Expected("transactions", "test_stream/blocks_1755634_1755635/"
                  "expected_transactions.json", 2),
         Expected("logs", "test_stream/blocks_1755634_1755635/expected_logs.json", 2)),
        numbers=(1755634, 1755635)),
    "shanghai-17173049-17173050": Case(
        _stream_17173049,
        (Expected("blocks", "test_stream/blocks_17173049_17173050/expected_blocks.json", 2),
         Expected("transactions", "test_stream/blocks_17173049_17173050/"
                  "expected_transactions.json", 298),
         Expected("logs", "test_stream/blocks_17173049_17173050/expected_logs.json", 681),
         # the same blocks from ethereum-etl's export job, JSON and CSV
         Expected("blocks", f"{EB}/blocks_with_transactions_and_withdrawals/expected_blocks.json",
                  2),
         Expected("blocks", f"{EB}/blocks_with_transactions_and_withdrawals/expected_blocks.csv",
                  2),
         Expected("transactions", f"{EB}/blocks_with_transactions_and_withdrawals/"
                  "expected_transactions.json", 298),
         Expected("transactions", f"{EB}/blocks_with_transactions_and_withdrawals/"
                  "expected_transactions.csv", 298)),
        numbers=(17173049, 17173050)),
}

# ethereum-etl's column names → ours, per table (names not listed are the same).
RENAMES = {
    "blocks": {"number": "block_number", "hash": "block_hash", "timestamp": "block_timestamp"},
    "transactions": {
        "hash": "transaction_hash",
        "receipt_l1_fee": "l1_fee", "receipt_l1_gas_used": "l1_gas_used",
        "receipt_l1_gas_price": "l1_gas_price", "receipt_l1_fee_scalar": "l1_fee_scalar",
        # export_receipts_job's receipt rows
        "cumulative_gas_used": "receipt_cumulative_gas_used", "gas_used": "receipt_gas_used",
        "contract_address": "receipt_contract_address", "root": "receipt_root",
        "status": "receipt_status", "effective_gas_price": "receipt_effective_gas_price",
    },
    "logs": {},
}
NOT_OURS = {"type", "item_id", "item_timestamp"}  # etl bookkeeping, not data
KEYS = {"blocks": ("block_number",), "transactions": ("transaction_hash",),
        "logs": ("block_number", "log_index")}


def ours(value: object) -> object:
    """Our Arrow value as plain Python (decimals → int, timestamps → epoch seconds)."""
    if isinstance(value, Decimal):
        assert value == value.to_integral_value()
        return int(value)
    if isinstance(value, dt.datetime):
        assert value.tzinfo is not None and value.microsecond == 0
        return int(value.timestamp())
    if isinstance(value, list):
        return [ours(v) for v in value]
    if isinstance(value, dict):
        return {k: ours(v) for k, v in value.items()}
    return value


def etl_value(table: str, column: str, value: object) -> object:
    """ethereum-etl's value as plain Python; CSV cells are strings (empty = null)."""
    if not isinstance(value, str):
        return value
    type_ = schemas.TABLES[table].arrow_schema.field(column).type
    if column == "withdrawals":  # CSV: the JSON objects joined by commas
        return json.loads(f"[{value}]")
    if pa.types.is_list(type_):
        return value.split(",") if value else []
    if value == "":
        return None
    if type_ in (schemas.BIGINT, schemas.WEI, schemas.TIMESTAMP):
        return int(value)
    return value


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request) -> tuple[str, Case, list[RawBlock], dict[str, pa.RecordBatch]]:
    assert FIXTURES.is_dir(), f"fixtures not found at {FIXTURES} (set CHAINLAKE_FIXTURES)"
    c = CASES[request.param]
    blocks = c.blocks()
    return request.param, c, blocks, table_batches(MAINNET, blocks)


def test_rows_match_ethereum_etl_column_by_column(case):
    name, c, blocks, batches = case
    assert [b.block["number"] for b in blocks] == [hex(n) for n in c.numbers]
    compared: set[tuple[str, str]] = set()
    for exp in c.expected:
        rows = read_rows(FIXTURES / exp.path)
        assert len(rows) == exp.count, exp.path
        table = exp.table
        our_rows = {tuple(r[k] for k in KEYS[table]): r for r in batches[table].to_pylist()}
        if table != "transactions" or "receipts" not in exp.path:
            assert len(our_rows) == exp.count, f"{exp.path}: row count"
        columns = set(schemas.TABLES[table].column_names)
        for row in rows:
            mapped = {RENAMES[table].get(k, k): v for k, v in row.items() if k not in NOT_OURS}
            unknown = set(mapped) - columns
            assert not unknown, f"{exp.path}: etl columns with no counterpart {sorted(unknown)}"
            mapped = {k: etl_value(table, k, v) for k, v in mapped.items()}
            key = tuple(mapped[k] for k in KEYS[table])
            mine = our_rows[key]
            for column, expected in mapped.items():
                got = ours(mine[column])
                if column == "withdrawals" and expected == []:  # etl writes [] for "no field"
                    got = got or []
                if column.startswith(("receipt_", "l1_")) and not c.receipts_known:
                    continue
                assert got == expected, f"{name} {exp.path} {key} {column}"
                compared.add((table, column))
    # Every table an expectation covers had its columns compared (not vacuously).
    for exp in c.expected:
        if exp.count:
            assert any(t == exp.table for t, _ in compared)


def test_row_counts_and_block_context(case):
    _, _, blocks, batches = case
    n_txs = sum(len(b.block["transactions"]) for b in blocks)
    n_logs = sum(len(r["logs"]) for b in blocks for r in b.receipts)
    assert batches["blocks"].num_rows == len(blocks)
    assert batches["transactions"].num_rows == n_txs
    assert batches["logs"].num_rows == n_logs
    by_number = {r["block_number"]: r for r in batches["blocks"].to_pylist()}
    for name in ("transactions", "logs"):
        for row in batches[name].to_pylist():
            block = by_number[row["block_number"]]
            assert row["chain_id"] == MAINNET
            assert row["block_hash"] == block["block_hash"]
            assert row["block_timestamp"] == block["block_timestamp"]


def test_schemas_are_exact_for_every_dataset(case):
    _, _, blocks, batches = case
    for name, batch in batches.items():
        assert batch.schema.equals(schemas.TABLES[name].arrow_schema), name
    for dataset in (*schemas.CORE_TABLES, schemas.BUNDLE_NAME):  # traces: tests/unit/test_traces.py
        batch = dataset_batch(dataset, MAINNET, blocks)
        assert batch.schema.equals(schemas.arrow_schema_of(dataset)), dataset
        if dataset in batches:
            assert batch.equals(batches[dataset]), dataset
    assert dataset_batch("bundle", MAINNET, blocks).equals(bundle_batch(MAINNET, blocks))


def test_blocks_dataset_needs_no_receipts(case):
    _, _, blocks, batches = case
    bare = [RawBlock(b.block, []) for b in blocks]
    assert dataset_batch("blocks", MAINNET, bare).equals(batches["blocks"])


def test_split_bundle_inverts_bundle_batch(case):
    _, _, blocks, batches = case
    bundle = bundle_batch(MAINNET, blocks)
    assert bundle.schema.equals(schemas.BUNDLE_SCHEMA)
    assert bundle.num_rows == len(blocks)
    for source in (bundle, pa.Table.from_batches([bundle])):
        split = split_bundle(source)
        assert set(split) == set(schemas.CORE_TABLES)
        for name, table in split.items():
            assert table.schema.equals(schemas.TABLES[name].arrow_schema), name
            assert table.equals(pa.Table.from_batches([batches[name]])), name


def test_withdrawals_are_null_without_the_field_and_a_list_with_it(case):
    _, _, blocks, batches = case
    for raw, row in zip(blocks, batches["blocks"].to_pylist(), strict=True):
        if "withdrawals" in raw.block:
            assert len(row["withdrawals"]) == len(raw.block["withdrawals"])
        else:
            assert row["withdrawals"] is None


# ---------------------------------------------------------------------------------------------
# Hand-made replies in the shape geth / anvil return.

A = "0x" + "aa" * 20
B = "0x" + "bb" * 20
C = "0x" + "cc" * 20
KEY0 = "0x" + "00" * 31 + "01"
KEY1 = "0x" + "00" * 31 + "02"


def h32(n: int) -> str:
    return "0x" + n.to_bytes(32, "big").hex()


def node_tx(block: dict, index: int, **fields) -> dict:
    tx = {
        "blockHash": block["hash"], "blockNumber": block["number"], "hash": h32(1000 + index),
        "transactionIndex": hex(index), "from": A, "to": B, "value": "0xde0b6b3a7640000",
        "gas": "0x5208", "gasPrice": "0x3b9aca00", "input": "0x", "nonce": hex(index),
        "type": "0x0", "v": "0x1b", "r": h32(1), "s": h32(2), "chainId": "0x7a69",
    }
    tx.update(fields)
    return tx


def node_receipt(block: dict, tx: dict, logs: int = 0, **fields) -> dict:
    index = int(tx["transactionIndex"], 16)
    receipt = {
        "blockHash": block["hash"], "blockNumber": block["number"],
        "transactionHash": tx["hash"], "transactionIndex": tx["transactionIndex"],
        "from": tx["from"], "to": tx["to"], "contractAddress": None,
        "cumulativeGasUsed": hex(21000 * (index + 1)), "gasUsed": "0x5208",
        "effectiveGasPrice": "0x3b9aca00", "status": "0x1", "type": tx["type"],
        "logsBloom": "0x" + "00" * 256,
        "logs": [
            {"address": C, "topics": [h32(7), h32(index)], "data": "0x01",
             "blockHash": block["hash"], "blockNumber": block["number"],
             "transactionHash": tx["hash"], "transactionIndex": tx["transactionIndex"],
             "logIndex": hex(10 * index + k), "removed": False}
            for k in range(logs)
        ],
    }
    receipt.update(fields)
    return receipt


def node_block(number: int, n_txs: int = 2, logs: int = 1, **fields) -> RawBlock:
    block = {
        "number": hex(number), "hash": h32(number), "parentHash": h32(number - 1),
        "nonce": "0x0000000000000000", "sha3Uncles": h32(3), "logsBloom": "0x" + "00" * 256,
        "transactionsRoot": h32(4), "stateRoot": h32(5), "receiptsRoot": h32(6), "miner": C,
        "difficulty": "0x0", "size": "0x400", "extraData": "0x", "gasLimit": "0x1c9c380",
        "gasUsed": hex(21000 * n_txs), "timestamp": hex(1_700_000_000 + number),
        "baseFeePerGas": "0x7", "withdrawalsRoot": h32(8), "withdrawals": [],
        "blobGasUsed": "0x0", "excessBlobGas": "0x0", "parentBeaconBlockRoot": h32(9),
        "mixHash": h32(10), "uncles": [],
    }
    block.update(fields)
    txs = [node_tx(block, i) for i in range(n_txs)]
    block.setdefault("transactions", txs)
    receipts = [node_receipt(block, tx, logs) for tx in block["transactions"]]
    return RawBlock(block, receipts)


def only_row(batch: pa.RecordBatch, **where) -> dict:
    rows = [r for r in batch.to_pylist() if all(r[k] == v for k, v in where.items())]
    assert len(rows) == 1
    return rows[0]


def with_tx(raw: RawBlock, tx_fields: dict, receipt_fields: dict | None = None) -> RawBlock:
    """A one-transaction block whose transaction and receipt have these fields."""
    block = copy.deepcopy(raw.block)
    tx = node_tx(block, 0, **tx_fields)
    block["transactions"] = [tx]
    return RawBlock(block, [node_receipt(block, tx, 1, **(receipt_fields or {}))])


def test_access_list_transaction():
    raw = with_tx(node_block(7, 0), {
        "type": "0x1", "yParity": "0x0", "v": "0x0",
        "accessList": [{"address": B, "storageKeys": [KEY0, KEY1]},
                       {"address": C, "storageKeys": []}],
    })
    tx = table_batches(31337, [raw])["transactions"].to_pylist()[0]
    assert tx["transaction_type"] == 1
    assert tx["access_list"] == [{"address": B, "storage_keys": [KEY0, KEY1]},
                                 {"address": C, "storage_keys": []}]
    assert tx["max_fee_per_gas"] is None and tx["authorization_list"] is None
    assert tx["blob_versioned_hashes"] is None and tx["gas_price"] == 10**9


def test_blob_transaction_and_its_receipt():
    blob_hash = "0x01" + "ab" * 31
    raw = with_tx(node_block(7, 0, blobGasUsed="0x20000", excessBlobGas="0x40000"), {
        "type": "0x3", "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x3b9aca00",
        "maxFeePerBlobGas": "0x2540be400", "blobVersionedHashes": [blob_hash], "accessList": [],
        "yParity": "0x1",
    }, {"blobGasUsed": "0x20000", "blobGasPrice": "0x1"})
    out = table_batches(31337, [raw])
    tx = out["transactions"].to_pylist()[0]
    assert tx["transaction_type"] == 3
    assert tx["max_fee_per_blob_gas"] == Decimal(10**10)
    assert tx["blob_versioned_hashes"] == [blob_hash]
    assert tx["access_list"] == []
    assert tx["max_fee_per_gas"] == Decimal(2 * 10**9)
    assert tx["max_priority_fee_per_gas"] == Decimal(10**9)
    assert tx["receipt_blob_gas_used"] == 0x20000 and tx["receipt_blob_gas_price"] == 1
    block = out["blocks"].to_pylist()[0]
    assert block["blob_gas_used"] == 0x20000 and block["excess_blob_gas"] == 0x40000
    assert block["parent_beacon_block_root"] == h32(9)


def test_set_code_transaction_authorization_list():
    auth = [
        {"chainId": "0x7a69", "address": B, "nonce": "0x5", "yParity": "0x1",
         "r": h32(11), "s": h32(12)},
        # any chain id (0) and a node that reports "v" and the recovered authority
        {"chainId": "0x0", "address": C, "nonce": "0x0", "v": "0x0", "r": h32(13),
         "s": h32(14), "authority": A.upper().replace("0X", "0x")},
    ]
    raw = with_tx(node_block(7, 0, requestsHash=h32(15)), {
        "type": "0x4", "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x1",
        "accessList": [], "authorizationList": auth, "yParity": "0x0",
    })
    out = table_batches(31337, [raw])
    tx = out["transactions"].to_pylist()[0]
    assert tx["transaction_type"] == 4
    assert tx["authorization_list"] == [
        {"chain_id": Decimal(31337), "address": B, "nonce": 5, "y_parity": 1, "r": h32(11),
         "s": h32(12), "authority": None},
        {"chain_id": Decimal(0), "address": C, "nonce": 0, "y_parity": 0, "r": h32(13),
         "s": h32(14), "authority": A},
    ]
    assert out["blocks"].to_pylist()[0]["requests_hash"] == h32(15)


def test_contract_creation_and_l2_receipt_fields():
    created = "0x" + "dd" * 20
    raw = with_tx(node_block(7, 0), {"to": None, "input": "0x6080"}, {
        "to": None, "contractAddress": created, "status": "0x0", "l1Fee": "0x2386f26fc10000",
        "l1GasUsed": "0x640", "l1GasPrice": "0x3b9aca00", "l1FeeScalar": "0.684",
    })
    tx = table_batches(10, [raw])["transactions"].to_pylist()[0]
    assert tx["to_address"] is None and tx["receipt_contract_address"] == created
    assert tx["receipt_status"] == 0
    assert tx["l1_fee"] == Decimal(10**16) and tx["l1_gas_used"] == 1600
    assert tx["l1_gas_price"] == Decimal(10**9) and tx["l1_fee_scalar"] == "0.684"
    assert tx["chain_id"] == 10


def test_old_replies_without_type_status_or_miner():
    raw = node_block(7, 1, miner=None, author=B)
    del raw.block["miner"]
    del raw.block["transactions"][0]["type"]
    del raw.receipts[0]["status"]
    raw.receipts[0]["root"] = h32(20)
    out = table_batches(1, [raw])
    assert out["blocks"].to_pylist()[0]["miner"] == B
    tx = out["transactions"].to_pylist()[0]
    assert tx["transaction_type"] == 0
    assert tx["receipt_status"] is None and tx["receipt_root"] == h32(20)


def test_hashes_and_addresses_are_lower_cased():
    raw = node_block(7, 1)
    checksummed = "0xAbCdEf" + "00" * 17
    raw.block["transactions"][0]["from"] = checksummed
    raw.receipts[0]["logs"][0]["address"] = checksummed
    raw.receipts[0]["logs"][0]["topics"] = [h32(7).upper().replace("0X", "0x")]
    raw.block["miner"] = checksummed
    out = table_batches(1, [raw])
    assert out["transactions"].to_pylist()[0]["from_address"] == checksummed.lower()
    assert out["logs"].to_pylist()[0]["address"] == checksummed.lower()
    assert out["logs"].to_pylist()[0]["topics"] == [h32(7)]
    assert out["blocks"].to_pylist()[0]["miner"] == checksummed.lower()


def test_withdrawals_column():
    raw = node_block(7, 0, withdrawals=[
        {"index": "0x10", "validatorIndex": "0x20", "address": A, "amount": "0x2b9e6fc"},
        {"index": "0x11", "validatorIndex": "0x21", "address": B, "amount": "0x0"},
    ])
    pre_shanghai = node_block(8, 0)
    del pre_shanghai.block["withdrawals"], pre_shanghai.block["withdrawalsRoot"]
    rows = table_batches(1, [raw, pre_shanghai])["blocks"].to_pylist()
    assert rows[0]["withdrawals"] == [
        {"index": 16, "validator_index": 32, "address": A, "amount": 45737724},
        {"index": 17, "validator_index": 33, "address": B, "amount": 0},
    ]
    assert rows[1]["withdrawals"] is None and rows[1]["withdrawals_root"] is None


def test_boundaries_fit():
    raw = with_tx(node_block(7, 0, totalDifficulty=hex(10**38 - 1)),
                  {"value": hex(10**38 - 1), "gas": hex(2**63 - 1)})
    out = table_batches(1, [raw])
    tx = out["transactions"].to_pylist()[0]
    assert tx["value"] == Decimal(10**38 - 1) and tx["gas"] == 2**63 - 1
    assert out["blocks"].to_pylist()[0]["total_difficulty"] == Decimal(10**38 - 1)


def test_empty_input():
    batches = table_batches(1, [])
    for name, batch in batches.items():
        assert batch.num_rows == 0 and batch.schema.equals(schemas.TABLES[name].arrow_schema)
    bundle = bundle_batch(1, [])
    assert bundle.num_rows == 0 and bundle.schema.equals(schemas.BUNDLE_SCHEMA)
    for dataset in (*schemas.CORE_TABLES, schemas.BUNDLE_NAME):  # traces: tests/unit/test_traces.py
        assert dataset_batch(dataset, 1, []).num_rows == 0
    for source in (bundle, empty_table("bundle"), schemas.BUNDLE_SCHEMA.empty_table()):
        for name, table in split_bundle(source).items():
            assert table.num_rows == 0 and table.schema.equals(schemas.TABLES[name].arrow_schema)
    assert empty_table("logs").schema.equals(schemas.LOGS.arrow_schema)


def test_blocks_without_transactions_between_full_ones():
    blocks = [node_block(7, 2, 2), node_block(8, 0), node_block(9, 3, 0), node_block(10, 1, 1)]
    batches = table_batches(1, blocks)
    assert [r["transaction_count"] for r in batches["blocks"].to_pylist()] == [2, 0, 3, 1]
    assert batches["transactions"]["block_number"].to_pylist() == [7, 7, 9, 9, 9, 10]
    assert batches["logs"]["block_number"].to_pylist() == [7, 7, 7, 7, 10]
    assert batches["logs"]["transaction_index"].to_pylist() == [0, 0, 1, 1, 0]
    assert batches["logs"]["log_index"].to_pylist() == [0, 1, 10, 11, 0]
    bundle = bundle_batch(1, blocks)
    assert [len(t) for t in bundle["transactions"].to_pylist()] == [2, 0, 3, 1]
    assert [len(lg) for lg in bundle["logs"].to_pylist()] == [4, 0, 0, 1]
    # Slices, several chunks and a Table all split back to the same rows.
    chunked = pa.Table.from_batches([bundle.slice(0, 1), bundle.slice(1, 2), bundle.slice(3)])
    for source in (chunked, bundle):
        split = split_bundle(source)
        for name in schemas.CORE_TABLES:
            assert split[name].equals(pa.Table.from_batches([batches[name]])), name
    tail = split_bundle(bundle.slice(2))
    assert tail["transactions"]["block_number"].to_pylist() == [9, 9, 9, 10]
    assert tail["logs"]["block_number"].to_pylist() == [10]


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset"):
        dataset_batch("receipts", 1, [])


# ---------------------------------------------------------------------------------------------
# Errors: every one names the block (and transaction / field) and the reason.


def broken(mutate: Callable[[RawBlock], object], n_txs: int = 2) -> list[RawBlock]:
    raw = node_block(123, n_txs, 1)
    mutate(raw)
    return [node_block(122, 1), raw]


def set_tx(i: int, key: str, value: object) -> Callable[[RawBlock], None]:
    return lambda raw: raw.block["transactions"][i].__setitem__(key, value)


ERRORS = {
    "wei-overflow": (set_tx(1, "value", hex(10**38)),
                     r"^block 123: transaction 1: field 'value' = '0x[0-9a-f]+' "
                     r"does not fit DECIMAL\(38,0\)$"),
    "wei-uint256": (set_tx(0, "gasPrice", hex(2**256 - 1)),
                    r"block 123: transaction 0: field 'gasPrice' .* DECIMAL\(38,0\)"),
    "bigint-overflow": (set_tx(1, "gas", hex(2**63)),
                        r"block 123: transaction 1: field 'gas' = '0x8000000000000000' "
                        r"does not fit BIGINT"),
    "block-bigint-overflow": (lambda raw: raw.block.__setitem__("gasLimit", hex(2**64)),
                              r"^block 123: field 'gasLimit' .* does not fit BIGINT"),
    "receipt-bigint-overflow": (lambda raw: raw.receipts[1].__setitem__("gasUsed", hex(2**70)),
                                r"block 123: receipt 1: field 'gasUsed' .* does not fit BIGINT"),
    "receipt-count": (lambda raw: raw.receipts.pop(),
                      r"^block 123: 2 transactions but 1 receipts$"),
    "receipt-for-another-tx": (lambda raw: raw.receipts.reverse(),
                               r"^block 123: receipt 0 is for transaction 0x0+3e9, "
                               r"expected 0x0+3e8$"),
    "receipt-block-hash": (lambda raw: raw.receipts[1].__setitem__("blockHash", h32(999)),
                           r"^block 123: receipt 1 is from block 0x0+3e7, expected 0x0+7b"),
    "log-block-hash": (lambda raw: raw.receipts[1]["logs"][0].__setitem__("blockHash", h32(9)),
                       r"^block 123: log 1 \(transaction 1\) is from block 0x0+9, "),
    "malformed-hex": (set_tx(0, "nonce", "0xzz"),
                      r"^block 123: transaction 0: field 'nonce' = '0xzz' "
                      r"is not a hex quantity$"),
    "negative": (set_tx(0, "value", "-0x1"),
                 r"block 123: transaction 0: field 'value' = '-0x1' is negative"),
    "number-not-string": (set_tx(1, "gas", 21000),
                          r"block 123: transaction 1: field 'gas' = 21000 is not a hex string"),
    "missing-tx-field": (lambda raw: raw.block["transactions"][1].pop("from"),
                         r"^block 123: transaction 1: required field 'from' is missing$"),
    "null-tx-field": (set_tx(0, "hash", None),
                      r"block 123: transaction 0: field 'hash' = None is null"),
    "missing-block-field": (lambda raw: raw.block.pop("gasLimit"),
                            r"^block 123: required field 'gasLimit' is missing$"),
    "missing-receipt-field": (lambda raw: raw.receipts[0].pop("cumulativeGasUsed"),
                              r"^block 123: receipt 0: required field 'cumulativeGasUsed' "),
    "missing-logs": (lambda raw: raw.receipts[0].pop("logs"),
                     r"^block 123: receipt 0: required field 'logs' is missing$"),
    "missing-log-field": (lambda raw: raw.receipts[1]["logs"][0].pop("data"),
                          r"^block 123: log 1 \(transaction 1\): required field 'data'"),
    "not-hex-address": (set_tx(0, "to", "bb" * 20),
                        r"block 123: transaction 0: field 'to' = 'bbbb.*' "
                        r"is not 0x-prefixed hex"),
    "null-topic": (lambda raw: raw.receipts[0]["logs"][0].__setitem__("topics", [None]),
                   r"block 123: log 0 \(transaction 0\): field 'topics' .*element 0 is null"),
    "topics-not-a-list": (lambda raw: raw.receipts[1]["logs"][0].__setitem__("topics", ""),
                          r"block 123: log 1 \(transaction 1\): field 'topics' = '' is not a list"),
    "transaction-index": (set_tx(1, "transactionIndex", "0x5"),
                          r"block 123: transaction 1: field 'transactionIndex' = 5"),
    "log-index-repeats": (lambda raw: raw.receipts[1]["logs"][0].__setitem__("logIndex", "0x0"),
                          r"block 123: log 1 \(transaction 1\): field 'logIndex' = 0 "
                          r"does not follow 0"),
    "hashes-not-objects": (lambda raw: raw.block.__setitem__(
        "transactions", [t["hash"] for t in raw.block["transactions"]]),
        r"block 123: transactions are '0x.*not objects"),
    "access-list-entry": (set_tx(1, "accessList", [{"address": B, "storageKeys": [5]}]),
                          r"block 123: transaction 1: accessList\[0\]: field 'storageKeys' "
                          r"= \[5\] \(element 0 is not a string\)"),
    "authorization-nonce": (set_tx(0, "authorizationList", [
        {"chainId": "0x1", "address": B, "nonce": hex(2**64), "yParity": "0x0",
         "r": "0x1", "s": "0x1"}]),
        r"block 123: transaction 0: authorizationList\[0\]: field 'nonce' .* BIGINT"),
    "withdrawal-amount": (lambda raw: raw.block.__setitem__(
        "withdrawals", [{"index": "0x1", "validatorIndex": "0x1", "address": A,
                         "amount": "0xq"}]),
        r"block 123: withdrawals\[0\]: field 'amount' = '0xq' is not a hex quantity"),
    "timestamp": (lambda raw: raw.block.__setitem__("timestamp", hex(2**62)),
                  r"^block 123: field 'timestamp' .* does not fit a microsecond TIMESTAMP"),
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_errors_name_block_and_reason(name):
    mutate, pattern = ERRORS[name]
    blocks = broken(mutate)
    with pytest.raises(TransformError, match=pattern) as info:
        bundle_batch(1, blocks)
    assert "block 123" in str(info.value)
    with pytest.raises(TransformError, match=pattern):
        table_batches(1, blocks)


def test_block_errors_are_raised_for_the_blocks_dataset_too():
    blocks = broken(lambda raw: raw.block.__setitem__("size", "0x"))
    with pytest.raises(TransformError, match=r"^block 123: field 'size' = '0x' is not a hex"):
        dataset_batch("blocks", 1, blocks)


def test_malformed_block_number_names_the_batch_position():
    raw = node_block(5, 0)
    raw.block["number"] = "0xnope"
    with pytest.raises(TransformError, match=r"block at batch position 0 \(hash 0x0+5\)"):
        table_batches(1, [raw])


def test_missing_block_is_an_error():
    with pytest.raises(TransformError, match="batch position 1: node returned None"):
        table_batches(1, [node_block(5, 0), RawBlock(None, [])])  # type: ignore[arg-type]


def test_transform_error_is_a_value_error():
    assert issubclass(TransformError, ValueError)


def _spark_shaped(type_: pa.DataType) -> pa.DataType:
    """What a bundle may look like coming back from Spark: all nullable, large types."""
    if pa.types.is_string(type_):
        return pa.large_string()
    if pa.types.is_list(type_):
        return pa.large_list(pa.field("item", _spark_shaped(type_.value_type)))
    if pa.types.is_struct(type_):
        return pa.struct([pa.field(f.name, _spark_shaped(f.type)) for f in type_])
    return type_


def test_split_bundle_casts_back_to_the_declared_schemas():
    blocks = [node_block(7, 2, 2), node_block(8, 0), node_block(9, 1, 1)]
    bundle = pa.Table.from_batches([bundle_batch(1, blocks)])
    loose = pa.schema([pa.field(f.name, _spark_shaped(f.type)) for f in bundle.schema])
    split = split_bundle(bundle.cast(loose))
    expected = table_batches(1, blocks)
    for name, table in split.items():
        assert table.schema.equals(schemas.TABLES[name].arrow_schema), name
        assert table.equals(pa.Table.from_batches([expected[name]])), name
