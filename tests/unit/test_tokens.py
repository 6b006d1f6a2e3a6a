"""ingestion.datasets.tokens: ERC-20/721 metadata through a real RpcClient and a real HTTP server.

The server (a thread running ``http.server``, stopped after each test) speaks JSON-RPC, batches
included, and answers ``eth_call`` from ethereum-etl's recorded mainnet replies (or from a table
of hand-made replies); a call it has no reply for gets the error object a node gives for a
revert. So every test goes through the client's real batching, id matching and error handling.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from eth_utils import keccak
from mainnet_fixtures import FIXTURES

from ingestion.datasets import tokens as tokens_module
from ingestion.datasets.contracts import contracts_from_traces
from ingestion.datasets.tokens import (
    NOT_UTF8,
    TOKENS,
    decode_bytes32_text,
    decode_string,
    decode_uint,
    fetch_tokens,
)
from ingestion.rpc import RpcClient, RpcMethodNotFoundError, RpcResponseError, RpcTransportError

needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"no fixtures at {FIXTURES}")

SYMBOL, NAME, DECIMALS, TOTAL_SUPPLY = "0x95d89b41", "0x06fdde03", "0x313ce567", "0x18160ddd"
SYMBOL_UPPER, NAME_UPPER, DECIMALS_UPPER = "0xf76f8d78", "0xa3f4df7e", "0x2e0f2625"
REVERTED = {"error": {"code": -32000, "message": "execution reverted"}}

Answer = Callable[[str, list], dict]


# ---------------------------------------------------------------------------------------------
# A JSON-RPC node on 127.0.0.1.


class FakeNode:
    """Answers each JSON-RPC request with ``answer(method, params)`` (a dict holding ``result`` or
    ``error``); records every call; ``http_status`` other than 200 fails every request."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.calls: list[tuple[str, list]] = []
        self.posts = 0
        self.http_status = 200
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                node.posts += 1
                if node.http_status != 200:
                    self.send_response(node.http_status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                items = body if isinstance(body, list) else [body]
                replies = []
                for item in items:
                    node.calls.append((item["method"], item["params"]))
                    replies.append({"jsonrpc": "2.0", "id": item["id"],
                                    **node.answer(item["method"], item["params"])})
                data = json.dumps(replies if isinstance(body, list) else replies[0]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.stopped = False

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=10)

    def eth_calls(self) -> list[tuple[str, str, str]]:
        """(to, data, block) of every eth_call received."""
        return [(p[0]["to"], p[0]["data"], p[1]) for m, p in self.calls if m == "eth_call"]


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], FakeNode]]:
    nodes: list[FakeNode] = []

    def start(answer: Answer) -> FakeNode:
        node = FakeNode(answer)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()


def client_for(node: FakeNode, **kwargs: Any) -> RpcClient:
    return RpcClient(node.url, **{"max_retries": 1, "backoff_base_s": 0.0,
                                  "backoff_max_s": 0.0, **kwargs})


def fixture_answer(group: Path) -> Answer:
    """eth_call replies recorded by ethereum-etl (named after to and data; recorded at latest,
    served whatever block is asked: the tests check which block was)."""

    def answer(method: str, params: list) -> dict:
        if method == "eth_call":
            call = params[0]
            path = group / f"web3_response.eth_call_data_{call['data']}_to_{call['to']}_latest.json"
            if path.exists():
                reply = json.loads(path.read_text())
                return {k: reply[k] for k in ("result", "error") if k in reply}
            # No recording: ethereum-etl's mock raised ValueError, which it ignores like the
            # revert a node returns for a function the token lacks.
            return REVERTED
        return {"error": {"code": -32601, "message": f"the method {method} does not exist"}}

    return answer


def table_answer(replies: dict[tuple[str, str], dict | str]) -> Answer:
    """Hand-made eth_call replies by (to, data): a hex string result, or a full reply dict."""

    def answer(method: str, params: list) -> dict:
        reply = replies.get((params[0]["to"], params[0]["data"]), REVERTED)
        return {"result": reply} if isinstance(reply, str) else reply

    return answer


# ABI encoding, for hand-made replies.

def word(value: int) -> str:
    return value.to_bytes(32, "big").hex()


def abi_string(data: bytes, padding: bytes | None = None) -> str:
    padded = data + (padding if padding is not None else b"\x00" * (-len(data) % 32))
    return "0x" + word(32) + word(len(data)) + padded.hex()


def bytes32(data: bytes) -> str:
    return "0x" + data.ljust(32, b"\x00").hex()


def uint(value: int) -> str:
    return "0x" + word(value)


def token(address: str, symbol: dict | str | None = None, name: dict | str | None = None,
          decimals: dict | str | None = None, supply: dict | str | None = None,
          **upper: dict | str) -> dict[tuple[str, str], dict | str]:
    out: dict[tuple[str, str], dict | str] = {}
    for selector, reply in ((SYMBOL, symbol), (NAME, name), (DECIMALS, decimals),
                            (TOTAL_SUPPLY, supply), (SYMBOL_UPPER, upper.get("SYMBOL")),
                            (NAME_UPPER, upper.get("NAME")),
                            (DECIMALS_UPPER, upper.get("DECIMALS"))):
        if reply is not None:
            out[(address, selector)] = reply
    return out


def addr(n: int) -> str:
    return "0x" + f"{n:040x}"


# ---------------------------------------------------------------------------------------------
# Fidelity with ethereum-etl on mainnet replies.


def etl_traces(path: Path) -> pa.Table:
    """ethereum-etl's trace rows (JSON lines) as bronze traces (the columns contracts use)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        row["chain_id"] = 1
        row["block_timestamp"] = dt.datetime.fromtimestamp(row["block_timestamp"], dt.UTC)
    schema = pa.schema([
        ("chain_id", pa.int64()), ("block_number", pa.int64()), ("block_hash", pa.string()),
        ("block_timestamp", pa.timestamp("us", tz="UTC")), ("transaction_index", pa.int64()),
        ("transaction_hash", pa.string()), ("from_address", pa.string()),
        ("to_address", pa.string()), ("output", pa.string()), ("trace_type", pa.string()),
        ("trace_address", pa.list_(pa.int64())), ("status", pa.int64())])
    return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)


def etl_csv(path: Path) -> dict:
    with path.open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    return row


@needs_fixtures
@pytest.mark.parametrize("group_name, address", [
    ("token_with_invalid_data", "0xf763be8b3263c268e9789abfb3934564a7b80054"),
    ("token_with_alternative_return_type", "0x86fa049857e0209aa7d9e616f7eb3b3b78ecfdb0"),
])
def test_export_tokens_fixtures(serve, group_name: str, address: str) -> None:
    group = FIXTURES / "test_export_tokens_job" / group_name
    expected = etl_csv(group / "expected_tokens.csv")
    # ethereum-etl called at "latest" and left block_number empty; we always read a named block:
    # the block recorded beside the replies.
    block = int(json.loads((group / "eth_getBlockByNumber.json").read_text())["result"]["number"], 16)
    node = serve(fixture_answer(group))
    with client_for(node) as client:
        table = fetch_tokens(client, [(address, block)], chain_id=1)
    assert table.schema == TOKENS.arrow_schema
    (row,) = table.to_pylist()
    assert row["address"] == expected["address"]
    # CSV cannot tell "" from null: ethereum-etl's name for EOS is "" (32 zero bytes read as an
    # ABI string of length 0), and so is ours; the next test pins it down.
    assert (row["symbol"] or "") == expected["symbol"]
    assert (row["name"] or "") == expected["name"]
    assert row["decimals"] == int(expected["decimals"])
    assert row["total_supply"] == Decimal(expected["total_supply"])
    assert row["total_supply_text"] == expected["total_supply"]
    assert row["block_number"] == block and expected["block_number"] == ""
    assert {b for _, _, b in node.eth_calls()} == {hex(block)}
    assert row["is_erc20"] is None and row["is_erc721"] is None  # not built from contracts


@needs_fixtures
def test_invalid_data_token_strips_nuls(serve) -> None:
    """name() and symbol() return "ETH\\x00\\x00\\x00" (length 6): the NULs go, as in
    ethereum-etl; no upper-case fallback is needed."""
    group = FIXTURES / "test_export_tokens_job" / "token_with_invalid_data"
    address = "0xf763be8b3263c268e9789abfb3934564a7b80054"
    node = serve(fixture_answer(group))
    with client_for(node) as client:
        (row,) = fetch_tokens(client, [(address, 1)], chain_id=1).to_pylist()
    assert (row["symbol"], row["name"]) == ("ETH", "ETH")
    assert sorted(d for _, d, _ in node.eth_calls()) == sorted([SYMBOL, NAME, DECIMALS, TOTAL_SUPPLY])


@needs_fixtures
def test_bytes32_symbol_eos(serve) -> None:
    """EOS's symbol() returns bytes32 "EOS": not an ABI string, so SYMBOL() is tried (EOS has
    none: reverted), then symbol()'s reply is read as bytes32 text, in ethereum-etl's order."""
    group = FIXTURES / "test_export_tokens_job" / "token_with_alternative_return_type"
    address = "0x86fa049857e0209aa7d9e616f7eb3b3b78ecfdb0"
    node = serve(fixture_answer(group))
    with client_for(node) as client:
        (row,) = fetch_tokens(client, [(address, 3908756)], chain_id=1).to_pylist()
    assert row["symbol"] == "EOS"
    assert row["name"] == ""  # not null
    assert row["total_supply"] == Decimal(10**27)
    assert [d for _, d, _ in node.eth_calls()] == [SYMBOL, NAME, DECIMALS, TOTAL_SUPPLY,
                                                    SYMBOL_UPPER]


@needs_fixtures
def test_stream_block_2112234_contracts_to_tokens(serve) -> None:
    """ethereum-etl's stream of block 2,112,234: traces -> contracts -> tokens."""
    group = FIXTURES / "test_stream" / "blocks_2112234_2112234"
    contracts = contracts_from_traces(etl_traces(group / "expected_traces.json"))
    (expected,) = [json.loads(line) for line in
                   (group / "expected_tokens.json").read_text().splitlines() if line.strip()]
    node = serve(fixture_answer(group))
    with client_for(node) as client:
        (row,) = fetch_tokens(client, contracts, chain_id=1).to_pylist()
    for name in ("address", "symbol", "name", "decimals", "block_number"):
        assert row[name] == expected[name], name
    assert row["total_supply"] == Decimal(expected["total_supply"]) == 0
    assert row["total_supply_text"] == "0"
    assert row["is_erc20"] is True and row["is_erc721"] is False
    # ethereum-etl read these at "latest" while labelling them block 2112234; we read them at
    # block 2112234 (0x203aea).
    assert {b for _, _, b in node.eth_calls()} == {"0x203aea"}


# ---------------------------------------------------------------------------------------------
# Malformed tokens, hand-made.


def test_selectors_are_keccak_of_signatures() -> None:
    for name, signature in [("_SYMBOL", "symbol()"), ("_NAME", "name()"),
                            ("_DECIMALS", "decimals()"), ("_TOTAL_SUPPLY", "totalSupply()"),
                            ("_SYMBOL_UPPER", "SYMBOL()"), ("_NAME_UPPER", "NAME()"),
                            ("_DECIMALS_UPPER", "DECIMALS()")]:
        assert getattr(tokens_module, name) == "0x" + keccak(text=signature)[:4].hex()


def fetch(serve, replies: dict, targets: list[tuple[str, int]], **client_kwargs: Any
          ) -> tuple[list[dict], FakeNode]:
    node = serve(table_answer(replies))
    with client_for(node, **client_kwargs) as client:
        table = fetch_tokens(client, targets, chain_id=1)
    assert table.schema == TOKENS.arrow_schema
    return table.to_pylist(), node


def test_malformed_tokens(serve) -> None:
    """Where ethereum-etl's result is quoted below, it is what ethereum-etl 2.4.2 (web3 5,
    eth-abi 2) returned for these same replies when this test was written."""
    garbage = bytes([0xC3, 0x28, 0xA0, 0xA1])  # not UTF-8
    replies = {
        # MKR: bytes32 symbol and name.
        **token(addr(1), symbol=bytes32(b"MKR"), name=bytes32(b"Maker"), decimals=uint(18),
                supply=uint(10**24)),
        # Well-formed strings that are not UTF-8: null. ethereum-etl re-reads the reply's first
        # word (the offset, 0x..20) as bytes32 text and reports " ": a space no token chose.
        **token(addr(2), symbol=abi_string(garbage), name=abi_string(garbage + b"x" * 40),
                decimals=uint(0), supply=uint(1)),
        # bytes32 that is not UTF-8: null, like ethereum-etl.
        # Empty and 31-byte replies: null.
        **token(addr(3), symbol=bytes32(garbage), name="0x", decimals="0x" + "00" * 31,
                supply="0x"),
        # decimals out of uint8 range: null, and DECIMALS() is asked (and answers).
        **token(addr(4), symbol=abi_string(b"A"), name=abi_string(b"B"), decimals=uint(256),
                supply=uint(2**256 - 1), DECIMALS=uint(6)),
        # Non-zero padding after the text: the text is kept (ethereum-etl's strict decoder
        # rejects it and, as above, reports " "). A NUL inside the text is removed.
        **token(addr(5), symbol=abi_string(b"AB\x00C", padding=b"\xff" * 28),
                name=abi_string(b"N"), decimals=uint(255), supply=uint(10**38 - 1)),
        # Everything reverts (a contract that is no token).
        # addr(6): no replies at all.
        # Upper-case only: SYMBOL()/NAME() as strings, decimals() reverts with revert data.
        **token(addr(7), SYMBOL=abi_string(b"UP"), NAME=bytes32(b"Upper"),
                decimals={"error": {"code": 3, "message": "execution reverted: nope",
                                    "data": "0x08c379a0"}},
                DECIMALS=uint(9), supply=uint(10**38)),
        # Replies too short for a word, and a null result.
        **token(addr(8), symbol="0x00", name={"result": None}, decimals="0x12", supply="0x" + "ff"),
        # A string without its padding: the text is there (ethereum-etl: " ").
        **token(addr(9), symbol=abi_string(b"ETH", padding=b""), name=uint(0)),
    }
    targets = [(addr(i), 50) for i in range(1, 10)]
    rows, node = fetch(serve, replies, targets)
    by_address = {r["address"]: r for r in rows}
    assert [r["address"] for r in rows] == [a for a, _ in targets]

    def fields(n: int) -> tuple:
        r = by_address[addr(n)]
        return r["symbol"], r["name"], r["decimals"], r["total_supply"], r["total_supply_text"]

    assert fields(1) == ("MKR", "Maker", 18, Decimal(10**24), str(10**24))
    assert fields(2) == (None, None, 0, Decimal(1), "1")
    assert fields(3) == (None, None, None, None, None)
    assert fields(4) == ("A", "B", 6, None, str(2**256 - 1))  # supply above DECIMAL(38,0)
    assert fields(5) == ("ABC", "N", 255, Decimal(10**38 - 1), str(10**38 - 1))
    assert fields(6) == (None, None, None, None, None)
    assert fields(7) == ("UP", "Upper", 9, None, str(10**38))
    assert fields(8) == (None, None, None, None, None)
    assert fields(9) == ("ETH", "", None, None, None)
    assert {b for _, _, b in node.eth_calls()} == {hex(50)}


def test_calls_batched_and_failures_isolated(serve) -> None:
    """One batch of 4 calls per token; reverting calls (which make RpcClient.batch raise) are
    isolated by splitting the batch, and cost only a few extra round trips."""
    replies: dict = {}
    for i in range(1, 41):
        replies.update(token(addr(i), symbol=abi_string(b"T%d" % i), name=abi_string(b"Tok"),
                             decimals=uint(18), supply=uint(i)))
    del replies[(addr(7), DECIMALS)]  # an ERC-721 without decimals(): reverts
    rows, node = fetch(serve, replies, [(addr(i), 9) for i in range(1, 41)], max_batch_size=40)
    assert [r["symbol"] for r in rows] == [f"T{i}" for i in range(1, 41)]
    assert [r["decimals"] for r in rows] == [None if i == 7 else 18 for i in range(1, 41)]
    assert [r["total_supply"] for r in rows] == [Decimal(i) for i in range(1, 41)]
    # 160 first calls in 4 batches of 40, the failing batch split down to the one revert
    # (~2*log2(40) requests), then DECIMALS() for token 7.
    assert node.posts <= 4 + 2 * 6 + 1
    assert node.eth_calls()[-1] == (addr(7), DECIMALS_UPPER, hex(9))


def test_transport_failure_raises(serve) -> None:
    node = serve(table_answer({}))
    node.http_status = 503
    with client_for(node) as client, pytest.raises(RpcTransportError):
        fetch_tokens(client, [(addr(1), 1)], chain_id=1)
    node.stop()
    with RpcClient(node.url, max_retries=0) as client, pytest.raises(RpcTransportError):
        fetch_tokens(client, [(addr(1), 1)], chain_id=1)  # connection refused


@pytest.mark.parametrize("error, raised", [
    ({"code": -32000, "message": "header not found"}, RpcResponseError),
    ({"code": -32000, "message": "missing trie node 1f2e (path ) state 0xabc is not available"},
     RpcResponseError),
    ({"code": -32601, "message": "the method eth_call does not exist/is not available"},
     RpcMethodNotFoundError),
])
def test_node_problems_raise(serve, error: dict, raised: type) -> None:
    """An archive-less node answers every historical call with an error about its state: nulls
    would quietly make an empty table, so it raises (as does a node without eth_call)."""
    replies = token(addr(1), symbol={"error": error}, name=abi_string(b"N"), decimals=uint(1),
                    supply=uint(1))
    with pytest.raises(raised):
        fetch(serve, replies, [(addr(1), 1)])


@pytest.mark.parametrize("error", [
    {"code": -32000, "message": "invalid opcode: INVALID"},
    {"code": -32015, "message": "VM execution error.", "data": "Reverted 0x"},
    {"code": -32000, "message": "out of gas"},
    {"code": -32000, "message": "execution reverted: token not found"},  # "not found" is the
])                                                                       # contract's own words
def test_execution_failures_are_null(serve, error: dict) -> None:
    replies = token(addr(1), symbol={"error": error}, name=abi_string(b"N"), decimals=uint(1),
                    supply=uint(1))
    rows, _ = fetch(serve, replies, [(addr(1), 1)])
    assert rows[0]["symbol"] is None and rows[0]["name"] == "N"


def test_malformed_reply_raises(serve) -> None:
    replies = token(addr(1), symbol="0xzz", name=abi_string(b"N"), decimals=uint(1),
                    supply=uint(1))
    with pytest.raises(RpcResponseError, match="not hex"):
        fetch(serve, replies, [(addr(1), 1)])


# ---------------------------------------------------------------------------------------------
# Inputs.


def contracts_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=pa.schema([
        ("chain_id", pa.int64()), ("block_number", pa.int64()), ("address", pa.string()),
        ("is_erc20", pa.bool_()), ("is_erc721", pa.bool_())]))


def test_contracts_input_filters_and_dedupes(serve) -> None:
    replies = {**token(addr(1), symbol=abi_string(b"A"), name=abi_string(b"A"), decimals=uint(1),
                       supply=uint(1)),
               **token(addr(3), symbol=abi_string(b"C"), name=abi_string(b"C"), supply=uint(1))}
    contracts = contracts_table([
        {"chain_id": 1, "block_number": 10, "address": addr(1), "is_erc20": True,
         "is_erc721": False},
        {"chain_id": 1, "block_number": 10, "address": addr(1).upper().replace("0X", "0x"),
         "is_erc20": True, "is_erc721": False},  # same token, checksum-ish case
        {"chain_id": 1, "block_number": 11, "address": addr(2), "is_erc20": False,
         "is_erc721": False},  # not a token: not called
        {"chain_id": 1, "block_number": 12, "address": addr(3), "is_erc20": False,
         "is_erc721": True},
    ])
    node = serve(table_answer(replies))
    with client_for(node) as client:
        rows = fetch_tokens(client, contracts, chain_id=1).to_pylist()
        assert [(r["address"], r["block_number"], r["is_erc20"], r["is_erc721"]) for r in rows] \
            == [(addr(1), 10, True, False), (addr(3), 12, False, True)]
        assert rows[1]["decimals"] is None  # an ERC-721: no decimals
        assert addr(2) not in {to for to, _, _ in node.eth_calls()}
        everything = fetch_tokens(client, contracts, chain_id=1, only_tokens=False)
        assert everything["address"].to_pylist() == [addr(1), addr(2), addr(3)]
        with pytest.raises(ValueError, match="chain"):
            fetch_tokens(client, contracts, chain_id=5)


def test_bad_inputs_and_empty(serve) -> None:
    node = serve(table_answer({}))
    with client_for(node) as client:
        assert fetch_tokens(client, [], chain_id=1).schema == TOKENS.arrow_schema
        assert fetch_tokens(client, contracts_table([]), chain_id=1).num_rows == 0
        with pytest.raises(ValueError, match="address"):
            fetch_tokens(client, [("0x1234", 1)], chain_id=1)
        with pytest.raises(ValueError, match="block"):
            fetch_tokens(client, [(addr(1), -1)], chain_id=1)
    assert node.posts == 0


# ---------------------------------------------------------------------------------------------
# Decoders.


def test_decoders() -> None:
    assert decode_string(bytes.fromhex(abi_string(b"hi")[2:])) == "hi"
    assert decode_string(bytes(32)) == ""  # offset 0 and length 0: the empty string
    assert decode_string(bytes.fromhex(bytes32(b"MKR")[2:])) is None  # offset far beyond
    assert decode_string(bytes.fromhex(abi_string(b"\xff")[2:])) is NOT_UTF8
    assert decode_string(bytes.fromhex(word(32) + word(5) + "6162")) is None  # cut short
    assert decode_string(b"") is None and decode_string(None) is None
    assert decode_bytes32_text(bytes.fromhex(bytes32(b"MKR")[2:])) == "MKR" + "\x00" * 29
    assert decode_bytes32_text(b"MKR") is None
    assert decode_uint(bytes.fromhex(word(255)), 8) == 255
    assert decode_uint(bytes.fromhex(word(256)), 8) is None
    assert decode_uint(bytes.fromhex(word(2**256 - 1))) == 2**256 - 1
    assert decode_uint(bytes.fromhex(word(7) + word(9))) == 7  # trailing words ignored
    assert decode_uint(b"\x01" * 31) is None


def test_declaration() -> None:
    assert TOKENS.name == "tokens"
    assert set(TOKENS.key) <= set(TOKENS.column_names)
    assert "| `total_supply` | DECIMAL(38,0) | yes |" in TOKENS.markdown()
    assert TOKENS.arrow_schema.field("block_number").nullable is False
