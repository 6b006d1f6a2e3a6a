"""ingestion.datasets.traces: trace replies → Arrow rows, checked against ethereum-etl's rows.

The fixtures are real Ethereum mainnet replies with the rows ethereum-etl (MIT) derives from them:
``trace_block`` replies with ``export_traces``' rows, and ``debug_traceBlockByNumber`` (callTracer)
replies of the same blocks with ``extract_geth_traces``' rows. Every column ethereum-etl fills is
compared, value by value. The rest (malformed replies, shapes today's nodes return, fetching) is
checked on hand-made replies.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pyarrow as pa
import pytest
from mainnet_fixtures import FIXTURES

from ingestion.datasets.traces import (
    TRACES,
    TracingUnsupportedError,
    detect_trace_api,
    fetch_traces,
    traces_from_geth,
    traces_from_parity,
)
from ingestion.errors import RefusedError
from ingestion.rpc import RpcClient, RpcResponseError, RpcTransportError
from ingestion.transform import TransformError

MAINNET = 1
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"no fixtures at {FIXTURES}")

# The five blocks both ethereum-etl trace jobs have fixtures for: directory → block number.
CASES = {
    "block_with_create": 1000690,
    "block_with_error": 1000895,
    "block_with_subtraces": 1000000,
    "block_with_suicide": 1011973,
}
GENESIS_HASH = "0xd4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"
BLOCK_1_HASH = "0x88e96d4537bea4d9c05d12549907b32561d3bf31f45aae734cdc119f13406cb6"

# ethereum-etl's trace columns, all of which we have.
ETL_COLUMNS = ["block_number", "transaction_hash", "transaction_index", "from_address",
               "to_address", "value", "input", "output", "trace_type", "call_type",
               "reward_type", "gas", "gas_used", "subtraces", "trace_address", "error", "status",
               "trace_id"]
INT_COLUMNS = {"block_number", "transaction_index", "value", "gas", "gas_used", "subtraces",
               "status", "trace_index"}

# ---------------------------------------------------------------------------------------------
# Loading the fixtures.


def reply(path: Path):
    return json.loads(path.read_text())["result"]


def parity_reply(directory: str, number: int) -> list:
    return reply(FIXTURES / "test_export_traces_job" / directory
                 / f"web3_response.trace_block_{hex(number)}.json")


def geth_reply(directory: str, number: int) -> list:
    return reply(FIXTURES / "test_extract_geth_traces_job" / directory
                 / f"web3_response.debug_traceBlockByNumber_{hex(number)}_tracer_calltracer.json")


def expected_rows(path: Path) -> list[dict]:
    """ethereum-etl's rows, normalized: ints as ints, empty CSV cells as None, lists as lists."""
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            for k, v in row.items():
                if v == "":
                    row[k] = [] if k == "trace_address" else None
                elif k in INT_COLUMNS:
                    row[k] = int(v)
                elif k == "trace_address":
                    row[k] = [int(x) for x in v.split(",")]
        return rows
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def header_from_parity(number: int, traces: list, block_hash: str | None = None) -> dict:
    """The fixtures hold no header for these blocks: its hash and transaction hashes are taken from
    the mainnet trace_block reply of the same block (for the geth replies an independent source),
    the timestamp is made up (ethereum-etl's trace jobs do not output it)."""
    hashes = [t["transactionHash"] for t in traces if t["traceAddress"] == [] and
              t["transactionHash"] is not None]
    hashes = list(dict.fromkeys(hashes))
    return {"number": hex(number), "hash": block_hash or traces[0]["blockHash"],
            "timestamp": hex(1_450_000_000 + number), "transactions": hashes}


def rows_of(batch: pa.RecordBatch) -> list[dict]:
    assert batch.schema.equals(TRACES.arrow_schema, check_metadata=True)
    rows = batch.to_pylist()
    for row in rows:
        if row["value"] is not None:
            row["value"] = int(row["value"])
    return rows


def assert_etl_columns(ours: list[dict], expected: list[dict], columns: list[str],
                       where: str) -> None:
    assert len(ours) == len(expected), where
    for i, (row, exp) in enumerate(zip(ours, expected, strict=True)):
        for c in columns:
            assert row[c] == exp[c], f"{where}: row {i}, column {c}: {row[c]!r} != {exp[c]!r}"


# ---------------------------------------------------------------------------------------------
# The schema.


def test_schema_declaration():
    schema = TRACES.arrow_schema
    assert schema.names[:4] == ["chain_id", "block_number", "block_hash", "block_timestamp"]
    assert set(ETL_COLUMNS) <= set(schema.names)
    assert TRACES.key == ("chain_id", "block_number", "trace_index")
    for name in (*TRACES.key, "trace_type", "subtraces", "trace_address", "status", "trace_id"):
        assert not schema.field(name).nullable, name
    for name in ("transaction_index", "transaction_hash", "from_address", "gas", "gas_used"):
        assert schema.field(name).nullable, name
    assert schema.field("value").type == pa.decimal128(38, 0)
    assert schema.field("trace_address").type == pa.list_(pa.field("element", pa.int64(), False))
    assert all(c.doc and "\n" not in c.doc for c in TRACES.columns)
    assert "| `trace_id` |" in TRACES.markdown()


# ---------------------------------------------------------------------------------------------
# Fidelity: trace_block (parity API) against ethereum-etl's export_traces.


@needs_fixtures
@pytest.mark.parametrize("directory", sorted(CASES))
def test_parity_matches_ethereum_etl(directory):
    number = CASES[directory]
    traces = parity_reply(directory, number)
    header = header_from_parity(number, traces)
    ours = rows_of(traces_from_parity(MAINNET, [header], [traces]))
    expected = expected_rows(FIXTURES / "test_export_traces_job" / directory / "expected_traces.csv")
    # export_traces numbers the traces of a block in reply order: so do we.
    assert [r["trace_index"] for r in ours] == list(range(len(ours)))
    assert_etl_columns(ours, expected, ETL_COLUMNS, directory)
    assert {r["block_hash"] for r in ours} == {header["hash"]}
    assert {r["chain_id"] for r in ours} == {MAINNET}


@needs_fixtures
def test_parity_genesis_block_without_transactions():
    traces = parity_reply("block_without_transactions", 0)
    header = {"number": "0x0", "hash": GENESIS_HASH, "timestamp": "0x0", "transactions": []}
    batch = traces_from_parity(MAINNET, [header], [traces])
    assert batch.num_rows == 0 and batch.schema.equals(TRACES.arrow_schema)
    assert (FIXTURES / "test_export_traces_job/block_without_transactions/expected_traces.csv"
            ).read_text() == ""


@needs_fixtures
def test_parity_stream_block_with_real_header():
    """Block 2,112,234 with its real header: every column ethereum-etl's stream outputs, incl.
    trace_index, block_hash and block_timestamp."""
    d = FIXTURES / "test_stream" / "blocks_2112234_2112234"
    header = reply(d / "web3_response.eth_getBlockByNumber_0x203aea_false.json")
    traces = reply(d / "web3_response.trace_block_0x203aea.json")
    ours = rows_of(traces_from_parity(MAINNET, [header], [traces]))
    expected = expected_rows(d / "expected_traces.json")
    assert_etl_columns(ours, expected, [*ETL_COLUMNS, "trace_index", "block_hash"], "stream")
    for row, exp in zip(ours, expected, strict=True):
        assert row["block_timestamp"] == dt.datetime.fromtimestamp(exp["block_timestamp"], dt.UTC)
    assert [r["trace_type"] for r in ours] == ["create", "reward"]


# ---------------------------------------------------------------------------------------------
# Fidelity: debug_traceBlockByNumber (geth API) against ethereum-etl's extract_geth_traces.

# extract_geth_traces leaves transaction_hash, status and trace_id empty (ethereum-etl fills them
# only for the parity API); ours come from the header and the same rules, and are compared with
# ethereum-etl's parity rows of the same block instead.
GETH_FROM_PARITY = ["transaction_hash", "status", "trace_id"]


@needs_fixtures
@pytest.mark.parametrize("directory", sorted(CASES))
def test_geth_matches_ethereum_etl(directory):
    number = CASES[directory]
    header = header_from_parity(number, parity_reply(directory, number))
    ours = rows_of(traces_from_geth(MAINNET, [header], [geth_reply(directory, number)]))
    geth_dir = FIXTURES / "test_extract_geth_traces_job" / directory
    expected = expected_rows(geth_dir / "expected_traces.csv")
    assert_etl_columns(ours, expected, [c for c in ETL_COLUMNS if c not in GETH_FROM_PARITY],
                       directory)
    parity_expected = [r for r in expected_rows(
        FIXTURES / "test_export_traces_job" / directory / "expected_traces.csv")
        if r["trace_type"] != "reward"]  # geth does not trace rewards
    assert_etl_columns(ours, parity_expected, GETH_FROM_PARITY, directory)
    assert [r["trace_index"] for r in ours] == list(range(len(ours)))


@needs_fixtures
def test_geth_block_without_transactions():
    traces = geth_reply("block_without_transactions", 1)
    header = {"number": "0x1", "hash": BLOCK_1_HASH, "timestamp": "0x55ba4224", "transactions": []}
    assert traces_from_geth(MAINNET, [header], [traces]).num_rows == 0


@needs_fixtures
def test_geth_and_parity_agree_on_mainnet_blocks():
    """Where both APIs state the same facts, the rows are equal. On these 2016 blocks they differ
    only where the nodes themselves did: for the one CALLCODE, Parity then named the calling
    contract as `to` (geth: the code's address, the instruction's operand) and gave no output
    (geth: the 32 bytes returned); Parity gave a failed frame no gasUsed (geth: 0) and spelt errors
    its own way; and only the parity API traces block rewards."""
    for directory, number in CASES.items():
        traces = parity_reply(directory, number)
        header = header_from_parity(number, traces)
        parity = rows_of(traces_from_parity(MAINNET, [header], [traces]))
        geth = rows_of(traces_from_geth(MAINNET, [header], [geth_reply(directory, number)]))
        parity = [r for r in parity if r["trace_type"] != "reward"]
        assert len(geth) == len(parity)
        for g, p in zip(geth, parity, strict=True):
            differ = {c for c in g if g[c] != p[c]}
            if p["call_type"] == "callcode":
                differ -= {"to_address", "output"}
            if p["error"] is not None:
                assert g["error"].lower() == p["error"].lower()
                differ -= {"error", "gas_used"}
            if p["trace_type"] == "suicide":  # the 2016 geth tracer said nothing about them
                assert (g["from_address"], g["to_address"], g["value"]) == (None, None, None)
                differ -= {"from_address", "to_address", "value"}
            assert not differ, (directory, p["trace_id"], {c: (g[c], p[c]) for c in differ})


# ---------------------------------------------------------------------------------------------
# Hand-made replies in today's shapes: where the rows differ from ethereum-etl, and why.

BLOCK_HASH = "0x" + "ab" * 32
TX = ["0x" + f"{i:02x}" * 32 for i in range(1, 5)]
A, B, C, D = ("0x" + c * 40 for c in "abcd")


def header(number: int = 100, txs: list[str] | None = None, block_hash: str = BLOCK_HASH) -> dict:
    return {"number": hex(number), "hash": block_hash, "timestamp": hex(1_700_000_000),
            "transactions": list(TX[:2] if txs is None else txs)}


def frame(type_: str, frm: str = A, to: str | None = B, *, value: str | None = "0x0",
          calls: list | None = None, **extra) -> dict:
    f = {"type": type_, "from": frm, "gas": "0x100", "gasUsed": "0x10", "input": "0x"}
    if to is not None:
        f["to"] = to
    if value is not None:
        f["value"] = value
    if calls is not None:
        f["calls"] = calls
    return {**f, **extra}


def geth_block(*roots: dict, txs: list[str] | None = None) -> list:
    txs = TX[:len(roots)] if txs is None else txs
    return [{"txHash": h, "result": r} for h, r in zip(txs, roots, strict=True)]


def ptrace(tx: int | None, address: list[int], type_: str = "call", *, subtraces: int = 0,
           error: str | None = None, action: dict | None = None, result: dict | None = None,
           number: int = 100, block_hash: str = BLOCK_HASH) -> dict:
    if action is None:
        action = {"callType": "call", "from": A, "to": B, "gas": "0x100", "input": "0x",
                  "value": "0x0"}
    if result is None and error is None and type_ in ("call", "create"):
        result = {"gasUsed": "0x10", "output": "0x"}
    t = {"action": action, "blockHash": block_hash, "blockNumber": number, "result": result,
         "subtraces": subtraces, "traceAddress": address, "type": type_,
         "transactionHash": None if tx is None else TX[tx], "transactionPosition": tx}
    if error is not None:
        t["error"] = error
    return t


def reward(author: str, value: str, kind: str = "block", number: int = 100) -> dict:
    return ptrace(None, [], "reward", number=number,
                  action={"author": author, "rewardType": kind, "value": value})


def test_geth_frame_kinds_today():
    """Today's geth: CREATE2 is a create (ethereum-etl would say trace_type "create2", which the
    parity API and the chain's rules do not know), STATICCALL moves 0 wei (geth omits the value,
    ethereum-etl leaves it null), a SELFDESTRUCT frame carries from/to/value but no gas, input or
    output (geth reports 0 and 0x; the parity API and ethereum-etl's parity rows have none), a
    failed create created no contract, and a frame that returned nothing has output 0x (geth's
    native tracer omits empty output)."""
    root = frame("CALL", A, B, value="0x5", output="0x", calls=[
        frame("CREATE2", B, C, input="0x6001", output="0x6002"),
        frame("STATICCALL", B, D, value=None, output="0x01"),
        frame("DELEGATECALL", B, D, value="0x5"),
        frame("SELFDESTRUCT", C, A, value="0x7", gas="0x0", gasUsed="0x0"),
        frame("CREATE", B, D, error="execution reverted", output="0x08c379a0"),
    ])
    rows = rows_of(traces_from_geth(MAINNET, [header(txs=TX[:1])], [geth_block(root)]))
    got = [(r["trace_type"], r["call_type"], r["trace_address"]) for r in rows]
    assert got == [("call", "call", []), ("create", None, [0]), ("call", "staticcall", [1]),
                   ("call", "delegatecall", [2]), ("suicide", None, [3]), ("create", None, [4])]
    assert rows[0]["subtraces"] == 5 and all(r["subtraces"] == 0 for r in rows[1:])
    assert rows[1]["to_address"] == C and rows[1]["output"] == "0x6002"
    assert rows[2]["value"] == 0
    assert rows[3]["value"] == 5 and rows[3]["output"] == "0x"
    suicide = rows[4]
    assert (suicide["from_address"], suicide["to_address"], suicide["value"]) == (C, A, 7)
    assert (suicide["gas"], suicide["gas_used"], suicide["input"], suicide["output"]) == (None,) * 4
    failed = rows[5]
    assert failed["to_address"] is None and failed["status"] == 0
    assert failed["error"] == "execution reverted" and failed["output"] == "0x08c379a0"
    assert [r["status"] for r in rows] == [1, 1, 1, 1, 1, 0]
    assert rows[4]["trace_id"] == f"suicide_{TX[0]}_3"


def test_status_follows_failed_ancestors():
    # tx 0: the top-level call reverts after a successful inner call: everything in it failed.
    # tx 1: an inner call reverts; its child fails with it, its sibling does not.
    tx0 = frame("CALL", error="execution reverted", calls=[frame("CALL", calls=[frame("CALL")])])
    tx1 = frame("CALL", calls=[frame("CALL", error="execution reverted", calls=[frame("CALL")]),
                               frame("CALL")])
    geth = rows_of(traces_from_geth(MAINNET, [header()], [geth_block(tx0, tx1)]))
    assert [(r["transaction_index"], r["trace_address"], r["status"]) for r in geth] == [
        (0, [], 0), (0, [0], 0), (0, [0, 0], 0),
        (1, [], 1), (1, [0], 0), (1, [0, 0], 0), (1, [1], 1)]
    parity_reply_ = [
        ptrace(0, [], subtraces=1, error="Reverted"), ptrace(0, [0], subtraces=1),
        ptrace(0, [0, 0]),
        ptrace(1, [], subtraces=2), ptrace(1, [0], subtraces=1, error="Reverted"),
        ptrace(1, [0, 0]), ptrace(1, [1]),
    ]
    parity = rows_of(traces_from_parity(MAINNET, [header()], [parity_reply_]))
    assert [r["status"] for r in parity] == [r["status"] for r in geth]
    assert [r["trace_id"] for r in parity] == [r["trace_id"] for r in geth]
    assert parity[2]["trace_id"] == f"call_{TX[0]}_0_0"


def test_reward_trace_ids_follow_ethereum_etl_order():
    """Rewards have no transaction: ethereum-etl numbers a block's traces of one type after
    sorting them by (reward_type, from_address, to_address, value); trace_index keeps the reply's
    order (block reward, then uncles in the block's order)."""
    rewards = [reward(B, "0x1bc16d674ec80000"), reward(C, "0x1"), reward(A, "0x2", "uncle"),
               reward(D, "0x3", "uncle")]
    rewards[1]["action"]["rewardType"] = "uncle"
    rows = rows_of(traces_from_parity(MAINNET, [header(txs=[])], [rewards]))
    assert [r["trace_index"] for r in rows] == [0, 1, 2, 3]
    assert [r["trace_id"] for r in rows] == ["reward_100_0", "reward_100_2", "reward_100_1",
                                             "reward_100_3"]
    assert [r["reward_type"] for r in rows] == ["block", "uncle", "uncle", "uncle"]
    assert all(r["transaction_hash"] is None and r["transaction_index"] is None and
               r["status"] == 1 and r["from_address"] is None and r["gas"] is None for r in rows)


def test_parity_shapes_of_revm_nodes():
    """Reth and anvil give a failed create a result with the address it would have had: no
    contract was created, so to_address is null (as OpenEthereum, which gave no result, and geth).
    Their failed calls keep gasUsed and output from their result."""
    create = ptrace(0, [], "create", error="Reverted",
                    action={"from": A, "gas": "0x100", "init": "0x60006000fd", "value": "0x0",
                            "creationMethod": "create2"},
                    result={"address": C, "code": "0x", "gasUsed": "0x6"})
    suicide = ptrace(1, [0], "suicide",
                     action={"address": C, "balance": "0x9", "refundAddress": D})
    call = ptrace(1, [], subtraces=1)
    rows = rows_of(traces_from_parity(MAINNET, [header()], [[create, call, suicide]]))
    assert (rows[0]["to_address"], rows[0]["gas_used"], rows[0]["output"]) == (None, 6, "0x")
    assert rows[0]["input"] == "0x60006000fd" and rows[0]["call_type"] is None
    assert (rows[2]["from_address"], rows[2]["to_address"], rows[2]["value"]) == (C, D, 9)
    assert rows[2]["gas"] is None and rows[2]["input"] is None


def test_parity_reply_out_of_order_is_put_in_trace_index_order():
    traces = [reward(A, "0x5"), ptrace(1, []), ptrace(0, [], subtraces=1), ptrace(0, [0])]
    rows = rows_of(traces_from_parity(MAINNET, [header()], [traces]))
    assert [(r["transaction_index"], r["trace_address"]) for r in rows] == [
        (0, []), (0, [0]), (1, []), (None, [])]
    assert [r["trace_index"] for r in rows] == [0, 1, 2, 3]


def test_deep_call_tree():
    """Calls nest up to 1024 deep: the walk is iterative, not recursive."""
    leaf = frame("CALL")
    for _ in range(1100):
        leaf = frame("CALL", calls=[leaf])
    rows = rows_of(traces_from_geth(MAINNET, [header(txs=TX[:1])], [geth_block(leaf)]))
    assert len(rows) == 1101 and rows[-1]["trace_address"] == [0] * 1100
    assert rows[-1]["trace_id"] == f"call_{TX[0]}_" + "_".join(["0"] * 1100)


def test_batch_of_several_blocks():
    h1 = header(100, TX[:1])
    h2 = header(101, TX[1:3], "0x" + "cd" * 32)
    g = traces_from_geth(7, [h1, h2], [geth_block(frame("CALL"), txs=TX[:1]),
                                       geth_block(frame("CALL", calls=[frame("CALL")]),
                                                  frame("CALL"), txs=TX[1:3])])
    rows = rows_of(g)
    assert [(r["block_number"], r["trace_index"], r["transaction_index"]) for r in rows] == [
        (100, 0, 0), (101, 0, 0), (101, 1, 0), (101, 2, 1)]
    assert [r["transaction_hash"] for r in rows] == [TX[0], TX[1], TX[1], TX[2]]
    assert rows[1]["block_hash"] == "0x" + "cd" * 32 and {r["chain_id"] for r in rows} == {7}
    assert rows[0]["block_timestamp"] == dt.datetime.fromtimestamp(1_700_000_000, dt.UTC)
    h2 = header(101, TX[:1], "0x" + "cd" * 32)
    p = traces_from_parity(7, [h1, h2], [
        [ptrace(0, [], number=100), reward(A, "0x1", number=100)],
        [ptrace(0, [], number=101, block_hash="0x" + "cd" * 32)]])
    p.validate(full=True)
    assert p.column("trace_index").to_pylist() == [0, 1, 0]
    assert p.column("trace_id").to_pylist() == [f"call_{TX[0]}_", "reward_100_0", f"call_{TX[0]}_"]


def test_empty_batch_and_upper_case_hex():
    for f in (traces_from_geth, traces_from_parity):
        batch = f(MAINNET, [], [])
        assert batch.num_rows == 0 and batch.schema.equals(TRACES.arrow_schema)
    upper = frame("CALL", "0x" + "AB" * 20, "0x" + "Cd" * 20, input="0xDEAD")
    hdr = header(txs=["0x" + "AB" * 32])  # the reply's txHash is lower-case: still the same
    row = rows_of(traces_from_geth(MAINNET, [hdr], [geth_block(upper, txs=["0x" + "ab" * 32])]))[0]
    assert (row["from_address"], row["to_address"], row["input"]) == (
        "0x" + "ab" * 20, "0x" + "cd" * 20, "0xdead")
    assert row["transaction_hash"] == "0x" + "ab" * 32


def test_wei_limits():
    top = hex(10**38 - 1)
    rows = rows_of(traces_from_geth(MAINNET, [header(txs=TX[:1])],
                                    [geth_block(frame("CALL", value=top))]))
    assert rows[0]["value"] == 10**38 - 1
    with pytest.raises(TransformError, match=r"block 100: transaction 0 trace \[0\]: field "
                                             r"'value' = '0x4b3b4ca85a86c47a098a224000000000' "
                                             r"does not fit DECIMAL\(38,0\)"):
        traces_from_geth(MAINNET, [header(txs=TX[:1])], [geth_block(
            frame("CALL", calls=[frame("CALL", value=hex(10**38))]))])
    big = reward(A, hex(2**256 - 1))
    with pytest.raises(TransformError, match=r"block 100: trace 0 .*'action.value' .* does not fit "
                                             r"DECIMAL\(38,0\)"):
        traces_from_parity(MAINNET, [header(txs=[])], [[big]])


# ---------------------------------------------------------------------------------------------
# Malformed replies: an error naming the block, the trace and the field.

Mutation = Callable[[list], object]


def _geth_ok() -> tuple[dict, list]:
    return header(), geth_block(frame("CALL", calls=[frame("CALL")]), frame("CREATE", to=C))


def _set(path: tuple, value: object) -> Mutation:
    def mutate(reply: list) -> list:
        node = reply
        for key in path[:-1]:
            node = node[key]
        if value is KeyError:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        return reply
    return mutate


GETH_BAD = {
    "not a list": (lambda r: {"oops": 1}, r"block 100: debug_traceBlockByNumber reply is"),
    "too few": (lambda r: r[:1], r"block 100: 1 transaction traces for 2 transactions"),
    "item not object": (_set((1,), "x"), r"block 100: transaction 1: trace item is 'x'"),
    "tracer error": (_set((1,), {"txHash": TX[1], "error": "execution timeout"}),
                     r"transaction 1: the node did not trace it: 'execution timeout'"),
    "other tx": (_set((1, "txHash"), TX[3]),
                 r"transaction 1: trace is for transaction '0x0404.*reorganize"),
    "frame not object": (_set((0, "result", "calls", 0), 5),
                         r"transaction 0 trace \[0\]: frame is 5"),
    "calls not list": (_set((0, "result", "calls"), {}),
                       r"transaction 0 trace \[\]: field 'calls' = \{\} is not a list"),
    "unknown type": (_set((0, "result", "calls", 0, "type"), "JUMP"),
                     r"transaction 0 trace \[0\]: field 'type' = 'JUMP' is not a callTracer"),
    "gas not hex": (_set((0, "result", "calls", 0, "gas"), "0xzz"),
                    r"transaction 0 trace \[0\]: field 'gas' = '0xzz' is not a hex quantity"),
    "gas too big": (_set((1, "result", "gasUsed"), hex(2**63)),
                    r"transaction 1 trace \[\]: field 'gasUsed' = .* does not fit BIGINT"),
    "gas as number": (_set((1, "result", "gas"), 100),
                      r"transaction 1 trace \[\]: field 'gas' = 100 is not a hex string"),
    "address not hex": (_set((0, "result", "to"), "abc"),
                        r"transaction 0 trace \[\]: field 'to' = 'abc' is not 0x-prefixed hex"),
    "error not text": (_set((0, "result", "error"), {"code": 1}),
                       r"transaction 0 trace \[\]: field 'error' = \{'code': 1\} is not a string"),
}


@pytest.mark.parametrize("case", sorted(GETH_BAD))
def test_malformed_geth_replies(case):
    mutate, message = GETH_BAD[case]
    hdr, rep = _geth_ok()
    traces_from_geth(MAINNET, [hdr], [copy.deepcopy(rep)])  # the unmutated reply is fine
    with pytest.raises(TransformError, match=message):
        traces_from_geth(MAINNET, [hdr], [mutate(copy.deepcopy(rep))])


def _parity_ok() -> list:
    return [ptrace(0, [], subtraces=1), ptrace(0, [0]), ptrace(1, []), reward(A, "0x5")]


PARITY_BAD = {
    "not a list": (lambda r: None, r"block 100: trace_block reply is None, not a list"),
    "item not object": (_set((1,), []), r"block 100: trace 1: is \[\], not a JSON object"),
    "other block": (_set((1, "blockHash"), "0x" + "ee" * 32),
                    r"block 100: trace 1: is from block '0xeeee.*reorganize"),
    "other number": (_set((1, "blockNumber"), 99),
                     r"block 100: trace 1: field 'blockNumber' = 99, expected 100"),
    "position out of range": (_set((2, "transactionPosition"), 2),
                              r"trace 2: field 'transactionPosition' = 2 is not a position"),
    "position not int": (_set((2, "transactionPosition"), "0x1"),
                         r"trace 2: field 'transactionPosition' = '0x1'"),
    "other tx hash": (_set((2, "transactionHash"), TX[3]),
                      r"trace 2: field 'transactionHash' = '0x0404.*transaction 1 is 0x0202"),
    "missing transaction": (lambda r: r[:2] + r[3:],
                            r"block 100: traces for 1 transactions, the header has 2"),
    "orphan": (lambda r: [r[1], *r[2:]],
               r"block 100: transaction 0 trace \[0\]: its parent trace does not come before it"),
    "trace address": (_set((1, "traceAddress"), [-1]),
                      r"trace 1: field 'traceAddress' = \[-1\] is not a list of child indices"),
    "subtraces": (_set((1, "subtraces"), None), r"trace 1: field 'subtraces' = None is not"),
    "bool in trace address": (_set((1, "traceAddress"), [True]),
                              r"trace 1: field 'traceAddress' = \[True\] is not a list"),
    "bool in parent address": (
        lambda r: [r[0], r[1], {**copy.deepcopy(r[1]), "traceAddress": [False, 0]}, *r[2:]],
        r"transaction 0 trace \[False, 0\]: field 'traceAddress' is not a list"),
    "reward with tx hash": (_set((3, "transactionHash"), TX[0]),
                            r"trace 3: a trace without 'transactionPosition' must be a block"),
    "unknown type": (_set((2, "type"), "vmTrace"),
                     r"transaction 1 trace \[\]: field 'type' = 'vmTrace' is not one of"),
    "action missing": (_set((1, "action"), KeyError),
                       r"transaction 0 trace \[0\]: field 'action' = None is not a JSON object"),
    "result not object": (_set((1, "result"), "0x"),
                          r"transaction 0 trace \[0\]: field 'result' = '0x' is not a JSON"),
    "value not hex": (_set((0, "action", "value"), "1.5"),
                      r"transaction 0 trace \[\]: field 'action.value' = '1.5' is not a hex"),
    "reward author": (_set((3, "action", "author"), 7),
                      r"block 100: trace 3 .*field 'action.author' = 7 is not a string"),
}


@pytest.mark.parametrize("case", sorted(PARITY_BAD))
def test_malformed_parity_replies(case):
    mutate, message = PARITY_BAD[case]
    traces_from_parity(MAINNET, [header()], [_parity_ok()])
    with pytest.raises(TransformError, match=message):
        traces_from_parity(MAINNET, [header()], [mutate(_parity_ok())])


@pytest.mark.parametrize("f", [traces_from_geth, traces_from_parity])
def test_malformed_headers(f):
    with pytest.raises(TransformError, match=r"1 block headers but 0 .* replies"):
        f(MAINNET, [header()], [])
    with pytest.raises(TransformError, match=r"block at batch position 0: header is None"):
        f(MAINNET, [None], [[]])
    no_hash = header(txs=[])
    del no_hash["hash"]
    with pytest.raises(TransformError, match=r"block 100: field 'hash' = None is null"):
        f(MAINNET, [no_hash], [[]])
    with pytest.raises(TransformError, match=r"block 100: field 'transactions' = None is not a"):
        f(MAINNET, [{**header(), "transactions": None}], [[]])
    with pytest.raises(TransformError, match=r"block 100: transactions\[1\]: field 'hash' = 5"):
        f(MAINNET, [{**header(), "transactions": [TX[0], 5]}], [[]])
    with pytest.raises(TransformError, match=r"chain id .* does not fit BIGINT"):
        f(2**64, [header(txs=[])], [[]])
    with pytest.raises(TransformError, match=r"field 'timestamp' .* does not fit"):
        f(MAINNET, [{**header(txs=[]), "timestamp": hex(2**62)}], [[]])


def test_full_transaction_objects_in_header():
    hdr = {**header(txs=[]), "transactions": [{"hash": TX[0], "nonce": "0x0"}]}
    rows = rows_of(traces_from_geth(MAINNET, [hdr], [geth_block(frame("CALL"), txs=TX[:1])]))
    assert rows[0]["transaction_hash"] == TX[0]


# ---------------------------------------------------------------------------------------------
# Detecting the API and fetching, against a scripted node (real RpcClient, fake HTTP).


def scripted_client(answer: Callable[[str, list], object]) -> tuple[RpcClient, list]:
    """An RpcClient whose node is ``answer(method, params)``: a result, or an Exception whose
    args are (code, message) for a JSON-RPC error object."""
    seen: list[tuple[str, list]] = []

    def one(req: dict) -> dict:
        seen.append((req["method"], req["params"]))
        try:
            result = answer(req["method"], req["params"])
        except Exception as e:  # noqa: BLE001 - the node's error object
            code, message = e.args
            return {"jsonrpc": "2.0", "id": req["id"], "error": {"code": code, "message": message}}
        return {"jsonrpc": "2.0", "id": req["id"], "result": result}

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        out = [one(r) for r in body] if isinstance(body, list) else one(body)
        return httpx.Response(200, content=orjson.dumps(out))

    client = RpcClient("http://node.test:8545", max_retries=2, backoff_base_s=0)
    client._http = httpx.Client(transport=httpx.MockTransport(handler))
    client._sleep = lambda _s: None
    return client, seen


def not_found(method: str) -> Exception:
    return Exception(-32601, f"the method {method} does not exist/is not available")


def geth_node(method: str, params: list):
    if method == "trace_block":
        raise not_found(method)
    assert params[1] == {"tracer": "callTracer"}
    if params[0] == "0x0":
        raise Exception(-32000, "genesis is not traceable")
    return []


def test_detect_prefers_parity_when_both_are_served():
    client, seen = scripted_client(lambda m, p: [])
    assert detect_trace_api(client) == "parity"
    assert seen == [("trace_block", ["0x0"])]


def test_detect_geth_past_the_untraceable_genesis():
    client, seen = scripted_client(geth_node)
    assert detect_trace_api(client) == "geth"
    assert [m for m, _ in seen] == ["trace_block", "debug_traceBlockByNumber",
                                    "debug_traceBlockByNumber"]
    assert seen[-1][1][0] == "0x1"


def test_detect_on_latest_when_old_state_is_pruned():
    def pruned(method: str, params: list):
        if params[0] != "latest":
            raise Exception(-32000, "required historical state unavailable")
        return []
    client, seen = scripted_client(pruned)
    assert detect_trace_api(client) == "parity"
    assert [p[0] for _, p in seen] == ["0x0", "0x1", "latest"]


def test_detect_neither():
    def plain(method: str, params: list):
        raise not_found(method)
    client, _ = scripted_client(plain)
    with pytest.raises(TracingUnsupportedError) as info:
        detect_trace_api(client)
    message = str(info.value)
    assert "trace_block" in message and "debug_traceBlockByNumber" in message
    assert "http://node.test:8545" in message
    assert isinstance(info.value, RefusedError)


def test_detect_raises_transport_errors():
    client = RpcClient("http://node.test:8545", max_retries=0)
    client._http = httpx.Client(transport=httpx.MockTransport(
        lambda r: httpx.Response(503, content=b"down")))
    with pytest.raises(RpcTransportError):
        detect_trace_api(client)


def test_fetch_traces_in_bounded_batches():
    def node(method: str, params: list):
        return [{"block": params[0], "method": method, "tracer": params[1:]}]
    client, seen = scripted_client(node)
    out = fetch_traces(client, [5, 6, 7], "geth", blocks_per_request=2)
    assert out == [[{"block": hex(n), "method": "debug_traceBlockByNumber",
                     "tracer": [{"tracer": "callTracer"}]}] for n in (5, 6, 7)]
    out = fetch_traces(client, [9], "parity")
    assert out == [[{"block": "0x9", "method": "trace_block", "tracer": []}]]
    assert fetch_traces(client, [], "parity") == []
    with pytest.raises(ValueError, match="unknown trace API 'debug'"):
        fetch_traces(client, [1], "debug")


def test_fetch_traces_retries_null_then_fails():
    calls = {"n": 0}

    def lagging(method: str, params: list):
        calls["n"] += 1
        return None if calls["n"] == 1 else []
    client, _ = scripted_client(lagging)
    assert fetch_traces(client, [3], "parity") == [[]]
    client, _ = scripted_client(lambda m, p: None)
    with pytest.raises(RpcResponseError, match=r"trace_block.*null traces after 3 attempts"):
        fetch_traces(client, [3], "parity")
    client, _ = scripted_client(lambda m, p: {"not": "a list"})
    with pytest.raises(RpcResponseError, match=r"trace_block for block 3 .* expected a list"):
        fetch_traces(client, [3], "parity")
