"""ingestion.datasets.contracts: creations from traces, selectors from bytecode.

Checked column by column against ethereum-etl's rows for real mainnet contracts (CryptoKitties,
and the block 2,112,234 stream), then on hand-made traces and bytecode for what mainnet fixtures
do not show (nested and repeated creations, failed frames, modern solc dispatchers).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest
from eth_utils import keccak
from mainnet_fixtures import FIXTURES

from ingestion.datasets import contracts as contracts_module
from ingestion.datasets.contracts import (
    CONTRACTS,
    contracts_from_traces,
    function_sighashes,
    is_erc20,
    is_erc721,
)
from ingestion.transform import TransformError

needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"no fixtures at {FIXTURES}")

# The bronze traces columns (ingestion/datasets/traces.py declares them; not imported here).
TRACES_SCHEMA = pa.schema([
    ("chain_id", pa.int64()), ("block_number", pa.int64()), ("block_hash", pa.string()),
    ("block_timestamp", pa.timestamp("us", tz="UTC")), ("transaction_index", pa.int64()),
    ("transaction_hash", pa.string()), ("from_address", pa.string()), ("to_address", pa.string()),
    ("value", pa.decimal128(38, 0)), ("input", pa.string()), ("output", pa.string()),
    ("trace_type", pa.string()), ("call_type", pa.string()), ("reward_type", pa.string()),
    ("gas", pa.int64()), ("gas_used", pa.int64()), ("subtraces", pa.int64()),
    ("trace_address", pa.list_(pa.int64())), ("error", pa.string()), ("status", pa.int64()),
    ("trace_id", pa.string()), ("trace_index", pa.int64()),
])

EOA = "0x" + "e0" * 20
FACTORY = "0x" + "fa" * 20
CHILD = "0x" + "c1" * 20
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def traces_table(rows: list[dict]) -> pa.Table:
    defaults = {"chain_id": 1, "block_number": 100, "block_hash": "0x" + "bb" * 32,
                "block_timestamp": T0, "transaction_index": 0, "transaction_hash": "0x" + "aa" * 32,
                "from_address": EOA, "to_address": None, "value": 0, "input": "0x",
                "output": "0x", "trace_type": "call", "call_type": "call", "reward_type": None,
                "gas": 100_000, "gas_used": 50_000, "subtraces": 0, "trace_address": [],
                "error": None, "status": 1, "trace_id": None, "trace_index": 0}
    full = [{**defaults, **row} for row in rows]
    return pa.Table.from_pylist(full, schema=TRACES_SCHEMA)


def etl_traces(path: Path, chain_id: int = 1) -> pa.Table:
    """ethereum-etl's trace rows (JSON lines) as bronze traces."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        row["chain_id"] = chain_id
        row["block_timestamp"] = dt.datetime.fromtimestamp(row["block_timestamp"], dt.UTC)
    return pa.Table.from_pylist([{k: r.get(k) for k in TRACES_SCHEMA.names} for r in rows],
                                schema=TRACES_SCHEMA)


# ---------------------------------------------------------------------------------------------
# Fidelity with ethereum-etl on mainnet.


@needs_fixtures
def test_cryptokitties_matches_ethereum_etl() -> None:
    """test_export_contracts_job/erc721_contract: the bytecode came from eth_getCode there; here
    it is the output of a create trace (the same runtime code)."""
    group = FIXTURES / "test_export_contracts_job" / "erc721_contract"
    expected = json.loads((group / "expected_contracts.json").read_text())
    code = json.loads(next(group.glob("web3_response.eth_getCode_*.json")).read_text())["result"]
    assert code == expected["bytecode"]

    assert function_sighashes(code) == expected["function_sighashes"]  # includes 0xffffffff
    assert is_erc20(expected["function_sighashes"]) is expected["is_erc20"] is False
    assert is_erc721(expected["function_sighashes"]) is expected["is_erc721"] is True

    table = contracts_from_traces(traces_table([
        {"trace_type": "create", "to_address": expected["address"], "output": code,
         "input": "0x6060", "call_type": None}]))
    row = table.to_pylist()[0]
    for name in ("address", "bytecode", "function_sighashes", "is_erc20", "is_erc721"):
        assert row[name] == expected[name], name


@needs_fixtures
def test_stream_block_2112234_matches_ethereum_etl() -> None:
    group = FIXTURES / "test_stream" / "blocks_2112234_2112234"
    traces = etl_traces(group / "expected_traces.json")
    expected = [json.loads(line) for line in
                (group / "expected_contracts.json").read_text().splitlines() if line.strip()]
    table = contracts_from_traces(traces)
    assert table.schema == CONTRACTS.arrow_schema
    rows = table.to_pylist()
    assert len(rows) == len(expected) == 1
    got, want = rows[0], expected[0]
    for name in ("address", "bytecode", "function_sighashes", "is_erc20", "is_erc721",
                 "block_number", "block_hash"):
        assert got[name] == want[name], name
    assert got["block_timestamp"] == dt.datetime.fromtimestamp(want["block_timestamp"], dt.UTC)
    # Columns ethereum-etl does not have, from the same trace.
    assert got["chain_id"] == 1
    assert got["transaction_index"] == 0
    assert got["transaction_hash"] == \
        "0xa7a876923fdf69617794ea3fd77734bfb46bde6a44a3dc4264c0ca9f9cada30c"
    assert got["trace_address"] == []
    assert got["creator_address"] == got["transaction_from_address"] == \
        "0x4b638dd891b0669242742bc0f4198a7c60bfbf00"
    assert got["bytecode_hash"] == "0x" + keccak(bytes.fromhex(want["bytecode"][2:])).hex()


@needs_fixtures
def test_traces_fixture_creations() -> None:
    """ethereum-etl's traces of a block with a contract creation: one row per successful create,
    none for its calls or reward."""
    path = FIXTURES / "test_export_traces_job" / "block_with_create" / "expected_traces.csv"
    if not path.exists():
        pytest.skip("no block_with_create traces")
    with path.open(newline="") as f:
        raw = list(csv.DictReader(f))
    rows = []
    for r in raw:
        rows.append({
            "block_number": int(r["block_number"]),
            "transaction_index": int(r["transaction_index"]) if r["transaction_index"] else None,
            "transaction_hash": r["transaction_hash"] or None,
            "from_address": r["from_address"] or None, "to_address": r["to_address"] or None,
            "output": r["output"] or None, "trace_type": r["trace_type"],
            "trace_address": [int(x) for x in r["trace_address"].split(",")]
            if r["trace_address"] else [],
            "status": int(r["status"]) if r.get("status") else 1,
        })
    table = contracts_from_traces(traces_table(rows))
    creates = [r for r in rows if r["trace_type"] == "create" and r["status"] == 1]
    assert table.num_rows == len(creates) > 0
    assert table["address"].to_pylist() == [r["to_address"] for r in creates]


# ---------------------------------------------------------------------------------------------
# The selector scan.


def test_standard_selectors_are_keccak_of_signatures() -> None:
    for name, signature in [("_TOTAL_SUPPLY", "totalSupply()"), ("_BALANCE_OF", "balanceOf(address)"),
                            ("_TRANSFER", "transfer(address,uint256)"),
                            ("_TRANSFER_FROM", "transferFrom(address,address,uint256)"),
                            ("_APPROVE", "approve(address,uint256)"),
                            ("_ALLOWANCE", "allowance(address,address)"),
                            ("_OWNER_OF", "ownerOf(uint256)")]:
        assert getattr(contracts_module, name) == "0x" + keccak(text=signature)[:4].hex()


def test_push_data_is_not_code() -> None:
    # PUSH2 0x5b63 (a JUMPDEST byte and a PUSH4 byte as data), then PUSH4 0x11223344 EQ,
    # JUMPDEST, PUSH4 0x55667788 (after the first block, not in an idiom: not a selector).
    code = "0x" + "615b63" + "6311223344" + "14" + "5b" + "6355667788" + "00"
    assert function_sighashes(code) == ["0x11223344"]


def test_first_block_rule_edges() -> None:
    assert function_sighashes(None) == []
    assert function_sighashes("0x") == []
    assert function_sighashes("0x5b6311223344") == []  # JUMPDEST first: empty first block
    assert function_sighashes("0x63112233") == []  # PUSH4 cut short by the end of the code
    assert function_sighashes("0x6311223344") == ["0x11223344"]
    assert function_sighashes("0x0x6311223344") == ["0x11223344"]  # ethereum-etl tolerates it
    # Duplicates collapse, output is sorted.
    assert function_sighashes("0x63bbbbbbbb63aaaaaaaa63bbbbbbbb") == ["0xaaaaaaaa", "0xbbbbbbbb"]
    with pytest.raises(ValueError):
        function_sighashes("0x6zz")


def test_dispatcher_idioms_after_the_first_block() -> None:
    # solc >= 0.5 non-payable prologue: CALLVALUE DUP1 ISZERO PUSH2 JUMPI PUSH0 PUSH0 REVERT
    # JUMPDEST ... then DUP1 PUSH4 s EQ PUSH2 JUMPI, and (old optimizer) PUSH4 s DUP2 EQ.
    code = ("0x" + "3480156100" "0f575f5ffd" "5b50" + "80" + "63a9059cbb" + "14" + "61004057"
            + "5b" + "6370a08231" + "81" + "14" + "61005057"
            + "5b" + "6323b872dd" + "60e01b")  # a selector for an outgoing call: not dispatch
    assert function_sighashes(code) == ["0x70a08231", "0xa9059cbb"]


def test_modern_solc_token_is_an_erc20() -> None:
    """DevToken, compiled by solc 0.8.28 (ingestion/devnet): its runtime code starts with the
    contract-wide CALLVALUE check, so ethereum-etl's first-block rule finds no selector at all and
    would call it no token (ethereum-etl issue #349). Its dispatcher does dispatch these."""
    from ingestion.devnet.contracts import DEV_TOKEN_BYTECODE

    creation = DEV_TOKEN_BYTECODE[2:]
    runtime = "0x" + creation[creation.index("fe6080604052") + 2:]
    first_block = runtime[2:runtime.index("5b") + 2]
    assert first_block == "608060405234801561000f575f5ffd5b"  # no PUSH4 before JUMPDEST
    selectors = function_sighashes(runtime)
    assert selectors == ["0x06fdde03", "0x095ea7b3", "0x18160ddd", "0x23b872dd", "0x313ce567",
                         "0x70a08231", "0x88d695b2", "0x95d89b41", "0xa9059cbb", "0xdd62ed3e"]
    assert is_erc20(selectors) and not is_erc721(selectors)


def test_erc721_rule_accepts_transfer_or_transfer_from() -> None:
    base = {"0x70a08231", "0x6352211e", "0x095ea7b3"}
    assert not is_erc721(base)
    assert is_erc721(base | {"0xa9059cbb"})
    assert is_erc721(base | {"0x23b872dd"})
    erc20 = ["0x18160ddd", "0x70a08231", "0xa9059cbb", "0x23b872dd", "0x095ea7b3", "0xdd62ed3e"]
    assert is_erc20(erc20) and not is_erc20(erc20[:-1])


# ---------------------------------------------------------------------------------------------
# Rows from traces.

TOKEN_CODE = "0x" + "80" "6318160ddd" "14" "80" "6370a08231" "14" "80" "63a9059cbb" "14" \
    "80" "6323b872dd" "14" "80" "63095ea7b3" "14" "80" "63dd62ed3e" "14" "00"


def test_nested_failed_and_other_traces() -> None:
    tx2 = "0x" + "a2" * 32
    table = contracts_from_traces(traces_table([
        # tx 0: an EOA calls a factory, which creates CHILD (succeeds) and another (fails).
        {"trace_type": "call", "to_address": FACTORY, "subtraces": 2},
        {"trace_type": "create", "from_address": FACTORY, "to_address": CHILD,
         "output": TOKEN_CODE, "trace_address": [0], "call_type": None, "trace_index": 1},
        {"trace_type": "create", "from_address": FACTORY, "to_address": None, "output": None,
         "trace_address": [1], "status": 0, "error": "Reverted", "call_type": None},
        # tx 1: a creation transaction that runs out of gas: no contract.
        {"transaction_index": 1, "transaction_hash": tx2, "trace_type": "create",
         "to_address": None, "output": None, "status": 0, "error": "Out of gas"},
        # a successful create under a failed parent (status 0 by ancestry): no contract either.
        {"transaction_index": 1, "transaction_hash": tx2, "trace_type": "create",
         "to_address": "0x" + "dd" * 20, "output": "0x00", "status": 0, "trace_address": [0]},
        {"transaction_index": None, "transaction_hash": None, "trace_type": "reward",
         "from_address": None, "to_address": EOA, "reward_type": "block", "call_type": None},
        {"trace_type": "suicide", "from_address": CHILD, "to_address": EOA, "trace_address": [2]},
    ]))
    assert table.schema == CONTRACTS.arrow_schema
    assert table.to_pylist() == [{
        "chain_id": 1, "block_number": 100, "block_hash": "0x" + "bb" * 32, "block_timestamp": T0,
        "transaction_index": 0, "transaction_hash": "0x" + "aa" * 32, "trace_address": [0],
        "address": CHILD, "creator_address": FACTORY, "transaction_from_address": EOA,
        "bytecode": TOKEN_CODE,
        "bytecode_hash": "0x" + keccak(bytes.fromhex(TOKEN_CODE[2:])).hex(),
        "function_sighashes": ["0x095ea7b3", "0x18160ddd", "0x23b872dd", "0x70a08231",
                               "0xa9059cbb", "0xdd62ed3e"],
        "is_erc20": True, "is_erc721": False,
    }]


def test_recreation_at_the_same_address_keeps_both_rows() -> None:
    """CREATE2, SELFDESTRUCT, CREATE2 again at the same address, in one block: two creations,
    so (chain_id, address) is no key; the declared key is unique."""
    rows = [
        {"transaction_index": 0, "trace_type": "call", "to_address": FACTORY},
        {"transaction_index": 0, "trace_type": "create", "from_address": FACTORY,
         "to_address": CHILD, "output": "0x00", "trace_address": [0]},
        {"transaction_index": 1, "transaction_hash": "0x" + "a1" * 32, "trace_type": "call",
         "to_address": CHILD},
        {"transaction_index": 1, "transaction_hash": "0x" + "a1" * 32, "trace_type": "suicide",
         "from_address": CHILD, "to_address": EOA, "trace_address": [0]},
        {"transaction_index": 2, "transaction_hash": "0x" + "a2" * 32, "trace_type": "call",
         "to_address": FACTORY},
        {"transaction_index": 2, "transaction_hash": "0x" + "a2" * 32, "trace_type": "create",
         "from_address": FACTORY, "to_address": CHILD, "output": TOKEN_CODE,
         "trace_address": [0]},
    ]
    table = contracts_from_traces(traces_table(rows))
    assert table["address"].to_pylist() == [CHILD, CHILD]
    assert table["is_erc20"].to_pylist() == [False, True]
    keys = [tuple(tuple(v) if isinstance(v, list) else v for v in (r[k] for k in CONTRACTS.key))
            for r in table.to_pylist()]
    assert len(set(keys)) == len(keys)


def test_empty_code_and_missing_root() -> None:
    """A constructor that returns nothing still creates an account (code hash of empty code);
    a create whose transaction's root trace is not in the input has no transaction sender."""
    table = contracts_from_traces(traces_table([
        {"trace_type": "create", "from_address": FACTORY, "to_address": CHILD, "output": "0x",
         "trace_address": [3, 1]}]))
    row = table.to_pylist()[0]
    assert row["bytecode"] == "0x" and row["function_sighashes"] == []
    assert row["bytecode_hash"] == \
        "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert row["transaction_from_address"] is None
    assert row["is_erc20"] is False and row["is_erc721"] is False


def test_empty_input() -> None:
    table = contracts_from_traces(traces_table([]))
    assert table.num_rows == 0 and table.schema == CONTRACTS.arrow_schema


@pytest.mark.parametrize("bad, message", [
    ({"to_address": None}, "to_address is null"),
    ({"output": None}, "output is null"),
    ({"transaction_index": None}, "transaction_index is null"),
    ({"output": "0x6g"}, "not hex"),
])
def test_impossible_successful_creates_are_errors(bad: dict, message: str) -> None:
    row = {"trace_type": "create", "to_address": CHILD, "output": "0x00", **bad}
    with pytest.raises(TransformError, match=message):
        contracts_from_traces(traces_table([row]))


def test_missing_columns() -> None:
    with pytest.raises(TransformError, match="output"):
        contracts_from_traces(traces_table([]).drop_columns(["output"]))


def test_declaration() -> None:
    assert CONTRACTS.name == "contracts"
    assert set(CONTRACTS.key) <= set(CONTRACTS.column_names)
    assert len(set(CONTRACTS.column_names)) == len(CONTRACTS.column_names)
    assert "| `function_sighashes` | ARRAY<STRING> | no |" in CONTRACTS.markdown()
