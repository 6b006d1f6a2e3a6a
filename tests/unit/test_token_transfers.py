"""ingestion.datasets.token_transfers: bronze logs → token transfers, vectorized.

Checked three ways: against ethereum-etl's expected token transfers on real mainnet logs (every
column ethereum-etl has), on hand-built ERC-1155 and edge-case logs, and against a plain
row-by-row Python decoder of the same rules on thousands of randomly mangled logs.
"""

from __future__ import annotations

import datetime as dt
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from eth_abi import encode
from eth_utils import keccak
from test_transform import (  # tests/unit is on sys.path (pytest's rootdir-relative imports)
    FIXTURES,
    MAINNET,
    block_reply,
    read_rows,
    rebuild_replies,
    receipt_replies,
    reply,
)

from ingestion import schemas
from ingestion.datasets.token_transfers import (
    ERC20,
    ERC721,
    ERC1155,
    TOKEN_TRANSFERS,
    TRANSFER_BATCH_TOPIC,
    TRANSFER_SINGLE_TOPIC,
    TRANSFER_TOPIC,
    decode_token_transfers,
    transfer_log_mask,
    transfer_rows_per_log,
)
from ingestion.transform import RawBlock, table_batches

SCHEMA = TOKEN_TRANSFERS.arrow_schema
LIMIT = 10**38

# ---------------------------------------------------------------------------------------------
# Building bronze logs.

TOKEN = "0x" + "70" * 20
OPERATOR = "0x" + "0e" * 20
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20


def word(n: int) -> str:
    return n.to_bytes(32, "big").hex()


def topic_of(address: str, upper: str = "00" * 12) -> str:
    return "0x" + upper + address[2:]


def topic_n(n: int) -> str:
    return "0x" + word(n)


def log(topics: list[str], data: str = "0x", **fields) -> dict:
    return {"topics": topics, "data": data, **fields}


def erc20(value: int, frm: str = ALICE, to: str = BOB, **fields) -> dict:
    return log([TRANSFER_TOPIC, topic_of(frm), topic_of(to)], "0x" + word(value), **fields)


def erc721(token_id: int, frm: str = ALICE, to: str = BOB, **fields) -> dict:
    return log([TRANSFER_TOPIC, topic_of(frm), topic_of(to), topic_n(token_id)], **fields)


def single(token_id: int, value: int, **fields) -> dict:
    topics = [TRANSFER_SINGLE_TOPIC, topic_of(OPERATOR), topic_of(ALICE), topic_of(BOB)]
    return log(topics, "0x" + word(token_id) + word(value), **fields)


def batch(ids: list[int], values: list[int], data: str | None = None, **fields) -> dict:
    topics = [TRANSFER_BATCH_TOPIC, topic_of(OPERATOR), topic_of(ALICE), topic_of(BOB)]
    if data is None:
        data = "0x" + encode(["uint256[]", "uint256[]"], [ids, values]).hex()
    return log(topics, data, **fields)


EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def logs_table(logs: list[dict], chain_id: int = MAINNET) -> pa.Table:
    """Bronze log rows; block context and positions default to block 100, log i."""
    rows = []
    for i, lg in enumerate(logs):
        n = lg.get("block_number", 100)
        rows.append({
            "chain_id": chain_id, "block_number": n, "block_hash": topic_n(n),
            "block_timestamp": lg.get("block_timestamp", EPOCH),
            "transaction_index": lg.get("transaction_index", i // 3),
            "transaction_hash": lg.get("transaction_hash", topic_n(1000 + i // 3)),
            "log_index": lg.get("log_index", i), "address": lg.get("address", TOKEN),
            "data": lg["data"], "topics": lg["topics"],
        })
    return pa.Table.from_pylist(rows, schema=schemas.LOGS.arrow_schema)


def decode(logs: list[dict]) -> list[dict]:
    out = decode_token_transfers(logs_table(logs))
    assert out.schema.equals(SCHEMA)
    return out.to_pylist()


def decoded_shape(logs: list[dict]) -> tuple[list[bool], list[int | None]]:
    table = logs_table(logs)
    return transfer_log_mask(table).to_pylist(), transfer_rows_per_log(table).to_pylist()


# ---------------------------------------------------------------------------------------------
# Declarations.


def test_event_topics_are_the_keccak_of_the_signatures():
    for topic, signature in ((TRANSFER_TOPIC, "Transfer(address,address,uint256)"),
                             (TRANSFER_SINGLE_TOPIC,
                              "TransferSingle(address,address,address,uint256,uint256)"),
                             (TRANSFER_BATCH_TOPIC,
                              "TransferBatch(address,address,address,uint256[],uint256[])")):
        assert topic == "0x" + keccak(text=signature).hex()


def test_table_declaration():
    names = TOKEN_TRANSFERS.column_names
    assert names[:4] == [c.name for c in schemas.BLOCK_CONTEXT]
    etl = ["token_address", "from_address", "to_address", "value", "transaction_hash", "log_index"]
    assert [n for n in names if n in etl] == etl
    assert set(TOKEN_TRANSFERS.key) <= set(names)
    for c in TOKEN_TRANSFERS.columns:
        assert c.doc and "\n" not in c.doc, c.name
        if c.name in TOKEN_TRANSFERS.key or (c.name.endswith("_address")
                                             and c.name != "operator_address"):
            assert not c.nullable, c.name
    assert SCHEMA.field("value").type == SCHEMA.field("token_id").type == pa.decimal128(38, 0)
    assert "DECIMAL(38,0)" in TOKEN_TRANSFERS.markdown()


# ---------------------------------------------------------------------------------------------
# ethereum-etl's expected token transfers on mainnet.


def _extract_job_logs() -> pa.Table:
    """test_extract_token_transfers_job: ethereum-etl's logs CSV (no timestamps in it)."""
    rows = read_rows(FIXTURES / "test_extract_token_transfers_job/logs/logs.csv")
    return logs_table([
        {"block_number": int(r["block_number"]), "log_index": int(r["log_index"]),
         "transaction_index": int(r["transaction_index"]),
         "transaction_hash": r["transaction_hash"], "address": r["address"], "data": r["data"],
         "topics": r["topics"].split(",") if r["topics"] else []}
        for r in rows
    ])


def _bronze(blocks: list[RawBlock]) -> pa.Table:
    return pa.Table.from_batches([table_batches(MAINNET, blocks)["logs"]])


def _block_483920() -> pa.Table:
    """test_export_token_transfers_job reads block 483920 through eth_getFilterLogs; the same
    block's receipts (test_export_receipts_job) carry the same logs, which the test checks."""
    block = block_reply("test_export_blocks_job/block_with_logs", 483920)
    logs = _bronze([RawBlock(block, receipt_replies("test_export_receipts_job/receipts_with_logs",
                                                    block))])
    d = FIXTURES / "test_export_token_transfers_job/block_with_transfers"
    filtered = reply(d / "web3_response.eth_getFilterLogs_0x0.json")
    ours = logs.to_pylist()
    assert [(r["log_index"], r["transaction_hash"], r["address"], r["data"], r["topics"])
            for r in ours] == [(int(f["logIndex"], 16), f["transactionHash"], f["address"],
                                f["data"], f["topics"]) for f in filtered]
    return logs


def _stream_1755634() -> pa.Table:
    d = "test_stream/blocks_1755634_1755635"
    blocks = [block_reply(d, n) for n in (1755634, 1755635)]
    return _bronze([RawBlock(b, receipt_replies(d, b)) for b in blocks])


def _stream_17173049() -> pa.Table:
    d = FIXTURES / "test_stream/blocks_17173049_17173050"
    return _bronze(rebuild_replies(read_rows(d / "expected_blocks.json"),
                                   read_rows(d / "expected_transactions.json"),
                                   read_rows(d / "expected_logs.json")))


@dataclass(frozen=True)
class EtlCase:
    logs: Callable[[], pa.Table]
    expected: str  # under FIXTURES
    count: int  # rows ethereum-etl expects (so that a fixture cannot silently shrink)
    erc721: int  # of which ERC-721
    erc1155: int  # our rows ethereum-etl does not have (it decodes no ERC-1155)


ETL_CASES = {
    "extract-1452581": EtlCase(
        _extract_job_logs, "test_extract_token_transfers_job/logs/expected_token_transfers.csv",
        2, 0, 0),
    "export-483920": EtlCase(
        _block_483920,
        "test_export_token_transfers_job/block_with_transfers/expected_token_transfers.csv",
        2, 0, 0),
    "stream-1755634-1755635": EtlCase(
        _stream_1755634, "test_stream/blocks_1755634_1755635/expected_token_transfers.json",
        1, 0, 0),
    "shanghai-17173049-17173050": EtlCase(
        _stream_17173049, "test_stream/blocks_17173049_17173050/expected_token_transfers.json",
        291, 9, 1),
}
ETL_NOT_OURS = {"type", "item_id", "item_timestamp"}  # etl bookkeeping
ETL_INTS = {"value", "log_index", "block_number", "block_timestamp"}


@pytest.fixture(scope="module", params=sorted(ETL_CASES))
def etl_case(request) -> tuple[EtlCase, pa.Table, pa.Table]:
    assert FIXTURES.is_dir(), f"fixtures not found at {FIXTURES} (set CHAINLAKE_FIXTURES)"
    c = ETL_CASES[request.param]
    logs = c.logs()
    return c, logs, decode_token_transfers(logs)


def test_matches_ethereum_etl_column_by_column(etl_case):
    c, _, out = etl_case
    assert out.schema.equals(SCHEMA)
    expected = read_rows(FIXTURES / c.expected)
    assert len(expected) == c.count
    ours = {(r["block_number"], r["log_index"], r["batch_index"]): r for r in out.to_pylist()}
    seen = set()
    for row in expected:
        row = {k: int(v) if k in ETL_INTS else v for k, v in row.items() if k not in ETL_NOT_OURS}
        key = (row["block_number"], row["log_index"], 0)
        mine = ours[key]
        seen.add(key)
        for column, want in row.items():
            if column == "value" and mine["token_standard"] == ERC721:
                # ethereum-etl's value is the word after the topics, for ERC-721 the token id;
                # here the id is token_id and value counts the tokens moved: one.
                assert (mine["value"], mine["value_text"]) == (1, "1")
                got = int(mine["token_id_text"])
            elif column == "value":
                got = int(mine["value_text"])
            elif column == "block_timestamp":
                got = int(mine[column].timestamp())
            else:
                got = mine[column]
            assert got == want, f"{c.expected} {key} {column}"
    extra = [r for k, r in ours.items() if k not in seen]
    assert [r["token_standard"] for r in extra] == [ERC1155] * c.erc1155
    assert sum(r["token_standard"] == ERC721 for r in ours.values()) == c.erc721


def test_mainnet_rows_are_consistent(etl_case):
    _, logs, out = etl_case
    rows = out.to_pylist()
    for r in rows:
        assert r["value_text"] is not None
        if int(r["value_text"]) < LIMIT:
            assert r["value"] == Decimal(r["value_text"])
        else:
            assert r["value"] is None
        assert (r["token_id_text"] is None) == (r["token_standard"] == ERC20)
        assert (r["operator_address"] is None) == (r["token_standard"] != ERC1155)
        for a in ("token_address", "from_address", "to_address"):
            assert len(r[a]) == 42 and r[a] == r[a].lower()
    # Every log with a transfer topic and the right topic count decoded, exactly once.
    mask = transfer_log_mask(logs)
    per_log = transfer_rows_per_log(logs)
    assert per_log.null_count == 0  # nothing malformed on mainnet here
    assert pc.sum(per_log).as_py() == len(rows)
    decoded = {(r["block_number"], r["log_index"]) for r in rows}
    flagged = {(b, i) for b, i, m in zip(logs["block_number"].to_pylist(),
                                         logs["log_index"].to_pylist(), mask.to_pylist(),
                                         strict=True) if m}
    assert decoded == flagged


def test_single_transfer_single_on_mainnet():
    """Block 17173050 has one ERC-1155 TransferSingle (a mint of id 0), which ethereum-etl skips."""
    out = decode_token_transfers(_stream_17173049())
    (row,) = out.filter(pc.equal(out["token_standard"], ERC1155)).to_pylist()
    assert (row["block_number"], row["log_index"]) == (17173050, 336)
    assert row["from_address"] == "0x" + "00" * 20
    assert row["operator_address"] == row["to_address"]
    assert (row["token_id"], row["token_id_text"], row["batch_index"]) == (0, "0", 0)


# ---------------------------------------------------------------------------------------------
# Hand-built logs.


def test_erc20_and_erc721():
    r20, r721 = decode([erc20(5 * 10**18), erc721(42, frm="0x" + "00" * 20)])
    assert (r20["token_standard"], r20["value"], r20["value_text"]) == (ERC20, 5 * 10**18,
                                                                        str(5 * 10**18))
    assert (r20["from_address"], r20["to_address"], r20["token_address"]) == (ALICE, BOB, TOKEN)
    assert (r20["token_id"], r20["token_id_text"], r20["operator_address"]) == (None, None, None)
    assert (r721["token_standard"], r721["value"], r721["value_text"]) == (ERC721, 1, "1")
    assert (r721["token_id"], r721["token_id_text"]) == (42, "42")
    assert r721["from_address"] == "0x" + "00" * 20
    for r in (r20, r721):
        assert (r["chain_id"], r["block_number"], r["block_timestamp"]) == (MAINNET, 100, EPOCH)
        assert r["batch_index"] == 0


def test_erc1155_transfer_single():
    (r,) = decode([single(7, 300)])
    assert (r["token_standard"], r["token_id"], r["token_id_text"]) == (ERC1155, 7, "7")
    assert (r["value"], r["value_text"], r["batch_index"]) == (300, "300", 0)
    assert (r["operator_address"], r["from_address"], r["to_address"]) == (OPERATOR, ALICE, BOB)


def test_erc1155_transfer_batch_one_row_per_pair():
    ids, values = [1, 2, 2**256 - 1], [10, 0, LIMIT]
    rows = decode([erc20(1), batch(ids, values), erc20(2)])
    assert [(r["log_index"], r["batch_index"]) for r in rows] == [(0, 0), (1, 0), (1, 1), (1, 2),
                                                                  (2, 0)]
    pairs = rows[1:4]
    assert [int(r["token_id_text"]) for r in pairs] == ids
    assert [int(r["value_text"]) for r in pairs] == values
    assert [r["token_id"] for r in pairs] == [1, 2, None]  # 2^256 - 1 does not fit 38 digits
    assert [r["value"] for r in pairs] == [10, 0, None]
    for r in pairs:
        assert (r["token_standard"], r["operator_address"]) == (ERC1155, OPERATOR)
        assert (r["from_address"], r["to_address"], r["transaction_hash"]) == (
            ALICE, BOB, topic_n(1000))


def test_transfer_batch_with_non_canonical_layout_and_empty_arrays():
    # values array first, ids after, and 32 bytes of padding between: legal ABI, still decoded
    ids, values = [5, 6], [50, 60]
    tail_values = word(2) + word(50) + word(60)
    tail_ids = word(2) + word(5) + word(6)
    values_at = 64 + 32
    ids_at = values_at + len(tail_values) // 2
    data = "0x" + word(ids_at) + word(values_at) + word(0) + tail_values + tail_ids
    rows = decode([batch(ids, values, data), batch([], [])])
    assert [(r["token_id_text"], r["value_text"]) for r in rows] == [("5", "50"), ("6", "60")]
    assert decoded_shape([batch([], [])]) == ([True], [0])  # well-formed, no pair: no row


def test_values_from_10_to_the_38_on_are_text_only():
    edges = [0, 1, 2**64 - 1, 2**64, 2**127, LIMIT - 1, LIMIT, 2**255, 2**256 - 1]
    rows = decode([erc20(v) for v in edges] + [erc721(v) for v in edges]
                  + [single(v, v) for v in edges])
    assert len(rows) == 3 * len(edges)
    for r, v in zip(rows, edges * 3, strict=True):
        fits = v if v < LIMIT else None
        if r["token_standard"] == ERC721:
            assert (r["token_id"], r["token_id_text"], r["value"]) == (fits, str(v), 1)
        else:
            assert (r["value"], r["value_text"]) == (fits, str(v))
        if r["token_standard"] == ERC1155:
            assert (r["token_id"], r["token_id_text"]) == (fits, str(v))


def test_address_topics_with_dirty_upper_bytes_are_truncated():
    # The ABI pads addresses with zeros; a contract may emit anything. Like ethereum-etl, the
    # address is the last 20 bytes, for every address column alike.
    dirty = log([TRANSFER_TOPIC, topic_of(ALICE, "ff" * 12), topic_of(BOB, "12" * 12)],
                "0x" + word(9))
    topics = [TRANSFER_SINGLE_TOPIC, topic_of(OPERATOR, "ee" * 12), topic_of(ALICE, "01" * 12),
              topic_of(BOB, "00" * 11 + "01")]
    r20, r1155 = decode([dirty, log(topics, "0x" + word(1) + word(2))])
    assert (r20["from_address"], r20["to_address"]) == (ALICE, BOB)
    assert (r1155["operator_address"], r1155["from_address"], r1155["to_address"]) == (
        OPERATOR, ALICE, BOB)


def test_upper_case_address_digits_are_lower_cased():
    upper = log([TRANSFER_TOPIC, "0x" + "00" * 12 + "AB" * 20, topic_of(BOB)], "0x" + "FF" * 32)
    (r,) = decode([upper])
    assert (r["from_address"], r["value_text"]) == ("0x" + "ab" * 20, str(2**256 - 1))


def bad_offsets(ids_at: int, values_at: int) -> str:
    return "0x" + word(ids_at) + word(values_at) + word(1) + word(7) + word(1) + word(8)


MALFORMED = {
    # a transfer topic and the right topic count, but the rest does not fit the event: skipped
    "erc20 with 64 bytes of data": log(erc20(1)["topics"], "0x" + word(1) + word(2)),
    "erc20 with 31 bytes of data": log(erc20(1)["topics"], "0x" + "01" * 31),
    "erc20 with no data": log(erc20(1)["topics"]),
    "erc20 with odd hex digits": log(erc20(1)["topics"], "0x" + word(1) + "0"),
    "erc20 data not hex": log(erc20(1)["topics"], "0x" + "0g" + "00" * 31),
    "erc20 data without 0x": log(erc20(1)["topics"], "00" + word(1)),
    "erc721 with data": log(erc721(1)["topics"], "0x" + word(1)),
    "erc721 id not hex": log(erc721(1)["topics"][:3] + ["0x" + "zz" * 32]),
    "erc721 id topic of 31 bytes": log(erc721(1)["topics"][:3] + ["0x" + "00" * 31]),
    "address topic of 33 bytes": log([TRANSFER_TOPIC, topic_of(ALICE) + "00", topic_of(BOB)],
                                     "0x" + word(1)),
    "address not hex": log([TRANSFER_TOPIC, topic_of(ALICE)[:-1] + "q", topic_of(BOB)],
                           "0x" + word(1)),
    "single with 96 bytes": log(single(1, 1)["topics"], single(1, 1)["data"] + word(0)),
    "single with 32 bytes": log(single(1, 1)["topics"], "0x" + word(1)),
    "batch with mismatched lengths": batch([1, 2], [3]),
    "batch offset past the end": batch([], [], bad_offsets(6 * 32, 128)),
    "batch offset huge": batch([], [], bad_offsets(2**255, 128)),
    "batch length past the end": batch([], [], "0x" + word(64) + word(64) + word(5) + word(7)),
    "batch length huge": batch([], [], "0x" + word(64) + word(96) + word(2**200) + word(2**200)),
    "batch not whole words": batch([1], [2], batch([1], [2])["data"] + "00"),
    "batch shorter than its head": batch([], [], "0x" + word(64)),
    "batch not hex in an unread word": batch([], [], "0x" + word(96) + word(96) + "zz" * 32
                                             + word(0)),
}

NOT_TRANSFERS = {
    # ethereum-etl decodes the first two (its rule: topics + data words == 4); they are not the
    # ERC-20/721 encodings, so they are not transfers here (see the module docstring).
    "transfer with no indexed field (CryptoKitties)": log(
        [TRANSFER_TOPIC], "0x" + word(int(ALICE, 16)) + word(int(BOB, 16)) + word(1)),
    "transfer with 2 topics": log([TRANSFER_TOPIC, topic_of(ALICE)],
                                  "0x" + word(int(BOB, 16)) + word(1)),
    "transfer with 5 topics": log(erc721(1)["topics"] + [topic_n(1)]),
    "single with 3 topics": log(single(1, 1)["topics"][:3], single(1, 1)["data"]),
    "batch with 5 topics": log(batch([1], [1])["topics"] + [topic_n(1)], batch([1], [1])["data"]),
    "upper-case topic 0": log([TRANSFER_TOPIC.upper().replace("0X", "0x")] + erc20(1)["topics"][1:],
                              "0x" + word(1)),
    "approval": log(["0x" + keccak(text="Approval(address,address,uint256)").hex()]
                    + erc20(1)["topics"][1:], "0x" + word(1)),
    "anonymous": log([]),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_transfers_are_skipped(name):
    logs = [erc20(1), MALFORMED[name], erc20(2)]
    rows = decode(logs)
    assert [r["log_index"] for r in rows] == [0, 2]
    assert decoded_shape(logs) == ([True, True, True], [1, None, 1])


@pytest.mark.parametrize("name", sorted(NOT_TRANSFERS))
def test_logs_that_are_not_transfers(name):
    logs = [erc20(1), NOT_TRANSFERS[name], erc20(2)]
    assert [r["log_index"] for r in decode(logs)] == [0, 2]
    assert decoded_shape(logs) == ([True, False, True], [1, 0, 1])


def test_output_is_sorted_whatever_the_input_order_and_chunking():
    logs = [erc20(i, log_index=i % 7, block_number=100 + i // 7) for i in range(30)]
    logs[5] = batch([1, 2, 3], [4, 5, 6], log_index=5, block_number=100)
    table = logs_table(logs)
    want = decode_token_transfers(table)
    keys = [(r["block_number"], r["log_index"], r["batch_index"]) for r in want.to_pylist()]
    assert keys == sorted(keys) and len(keys) == 32
    shuffled = table.take(pa.array(random.Random(1).sample(range(30), 30)))
    chunked = pa.concat_tables([table.slice(0, 4), table.slice(4, 11), table.slice(15)])
    assert chunked.column("topics").num_chunks == 3
    sliced = table.to_batches()[0].slice(3, 20)  # non-zero array offsets
    for variant in (shuffled, chunked):
        assert decode_token_transfers(variant).equals(want)
    fresh = pa.Table.from_pylist(table.slice(3, 20).to_pylist(), schema=table.schema)
    assert decode_token_transfers(sliced).equals(decode_token_transfers(fresh))
    assert transfer_rows_per_log(chunked).equals(transfer_rows_per_log(table))


def test_empty_and_other_reader_types():
    assert decode_token_transfers(logs_table([])).equals(SCHEMA.empty_table())
    assert decode_token_transfers(logs_table([NOT_TRANSFERS["anonymous"]])).num_rows == 0
    assert len(transfer_log_mask(logs_table([]))) == 0
    table = logs_table([erc20(1), batch([1], [2]), erc721(3)])
    large = table.cast(pa.schema([
        pa.field(f.name, pa.large_string() if f.type == pa.string()
                 else pa.large_list(pa.large_string()) if pa.types.is_list(f.type) else f.type,
                 nullable=f.nullable) for f in table.schema]))
    assert decode_token_transfers(large).equals(decode_token_transfers(table))


# ---------------------------------------------------------------------------------------------
# Against a row-by-row reference decoder of the same rules, on randomly mangled logs.

HEX = set(string.hexdigits)


def _hex_bytes(s: str) -> bytes | None:
    if not s.startswith("0x") or len(s) % 2 or not set(s[2:]) <= HEX:
        return None
    return bytes.fromhex(s[2:])


def candidate(lg: dict) -> bool:
    """A transfer topic 0 and the topic count of its event."""
    topics, n = lg["topics"], len(lg["topics"])
    sig = topics[0] if topics else None
    return ((sig == TRANSFER_TOPIC and n in (3, 4))
            or (sig in (TRANSFER_SINGLE_TOPIC, TRANSFER_BATCH_TOPIC) and n == 4))


def reference(lg: dict) -> list[dict] | None:
    """The rules of the module docstring, one log at a time: rows, or None when malformed."""
    if not candidate(lg):
        return []
    topics, sig, n = lg["topics"], lg["topics"][0], len(lg["topics"])
    if any(len(t) != 66 for t in topics):
        return None
    addresses = [t[-40:] for t in topics[1:]]
    if not all(set(a) <= HEX for a in addresses):
        return None
    addresses = ["0x" + a.lower() for a in addresses]
    data = _hex_bytes(lg["data"])
    if data is None:
        return None
    words = [int.from_bytes(data[i:i + 32], "big") for i in range(0, len(data), 32)]

    def row(standard: str, value: int, token_id: int | None, k: int = 0) -> dict:
        frm, to = addresses[:2] if standard != ERC1155 else addresses[1:]
        return {"token_standard": standard, "from_address": frm, "to_address": to,
                "value_text": str(value), "token_id_text": None if token_id is None else str(token_id),
                "batch_index": k, "operator_address": addresses[0] if standard == ERC1155 else None}

    if sig == TRANSFER_TOPIC and n == 3:
        return [row(ERC20, words[0], None)] if len(data) == 32 else None
    if sig == TRANSFER_TOPIC:
        token_id = _hex_bytes(topics[3])
        return [row(ERC721, 1, int.from_bytes(token_id, "big"))] if (
            not data and token_id is not None) else None
    if sig == TRANSFER_SINGLE_TOPIC:
        return [row(ERC1155, words[1], words[0])] if len(data) == 64 else None
    if len(data) < 64 or len(data) % 32:
        return None

    def at(pos: int) -> int:
        return int.from_bytes(data[pos:pos + 32], "big")

    ids_at, values_at = words[0], words[1]
    if ids_at + 32 > len(data) or values_at + 32 > len(data):
        return None
    count = at(ids_at)
    if count != at(values_at) or max(ids_at, values_at) + 32 + 32 * count > len(data):
        return None
    return [row(ERC1155, at(values_at + 32 + 32 * k), at(ids_at + 32 + 32 * k), k)
            for k in range(count)]


def _mangle(rng: random.Random, lg: dict) -> dict:
    topics, data = list(lg["topics"]), lg["data"]
    what = rng.randrange(12)
    if what == 0 and topics:
        topics.pop(rng.randrange(len(topics)))
    elif what == 1:
        topics.insert(rng.randrange(len(topics) + 1), topic_n(rng.getrandbits(256)))
    elif what == 2:
        data += rng.choice(["0", "00", word(rng.getrandbits(8))])
    elif what == 3 and len(data) > 2:
        data = data[:rng.randrange(2, len(data))]
    elif what == 4 and len(data) > 2:
        i = rng.randrange(2, len(data))
        data = data[:i] + rng.choice("gxZ A") + data[i + 1:]
    elif what == 5 and len(topics) > 1:
        i = rng.randrange(1, len(topics))
        j = rng.randrange(2, 66)
        topics[i] = topics[i][:j] + rng.choice("gX ") + topics[i][j + 1:]
    elif what == 6 and len(topics) > 1:
        i = rng.randrange(1, len(topics))
        topics[i] = topics[i][:rng.randrange(2, 66)] if rng.random() < .5 else topics[i] + "00"
    elif what == 7 and len(topics) > 1:
        i = rng.randrange(1, len(topics))
        topics[i] = "0x" + rng.getrandbits(96).to_bytes(12, "big").hex() + topics[i][26:].upper()
    elif what == 8 and len(data) >= 130:  # overwrite a head or length word of a batch
        k = rng.randrange(min(4, (len(data) - 2) // 64))
        v = rng.choice([0, 32, 64, 96, 128, len(data) // 2, rng.getrandbits(256), rng.randrange(9)])
        data = data[:2 + 64 * k] + word(v) + data[2 + 64 * (k + 1):]
    return {**lg, "topics": topics, "data": data}


def _amount(rng: random.Random) -> int:
    return rng.choice([0, 1, rng.getrandbits(64), rng.getrandbits(100), LIMIT - 1, LIMIT,
                       rng.getrandbits(256), 2**256 - 1])


def _random_log(rng: random.Random) -> dict:
    who = [topic_n(rng.getrandbits(160)) for _ in range(3)]
    kind = rng.randrange(6)
    if kind == 0:
        lg = log([TRANSFER_TOPIC, *who[:2]], "0x" + word(_amount(rng)))
    elif kind == 1:
        lg = log([TRANSFER_TOPIC, *who[:2], topic_n(_amount(rng))])
    elif kind == 2:
        lg = log([TRANSFER_SINGLE_TOPIC, *who], "0x" + word(_amount(rng)) + word(_amount(rng)))
    elif kind == 3:
        k = rng.randrange(5)
        lg = batch([_amount(rng) for _ in range(k)], [_amount(rng) for _ in range(k)])
        lg["topics"] = [TRANSFER_BATCH_TOPIC, *who]
    elif kind == 4:
        lg = log([topic_n(rng.getrandbits(256)), *who[:rng.randrange(4)]],
                 "0x" + "".join(word(rng.getrandbits(256)) for _ in range(rng.randrange(3))))
    else:
        lg = log([])
    return _mangle(rng, lg) if rng.random() < 0.5 else lg


def test_matches_a_row_by_row_reference_on_random_logs():
    rng = random.Random(20240501)
    logs = [{**_random_log(rng), "address": "0x" + rng.getrandbits(160).to_bytes(20, "big").hex()}
            for _ in range(4000)]
    table = logs_table(logs)
    out = decode_token_transfers(table)
    assert out.schema.equals(SCHEMA)
    got = out.to_pylist()
    want, per_log, mask = [], [], []
    for i, lg in enumerate(logs):
        rows = reference(lg)
        mask.append(candidate(lg))
        per_log.append(None if rows is None else len(rows))
        for r in rows or []:
            want.append({**r, "log_index": i, "token_address": lg["address"]})
    fields = ["log_index", "token_address", *want[0]]
    assert [{f: r[f] for f in fields} for r in got] == [{f: r[f] for f in fields} for r in want]
    assert transfer_rows_per_log(table).to_pylist() == per_log
    assert transfer_log_mask(table).to_pylist() == mask
    for r in got:
        for num, text in (("value", "value_text"), ("token_id", "token_id_text")):
            exact = None if r[text] is None else int(r[text])
            assert r[num] == (exact if exact is not None and exact < LIMIT else None)
    # the mix exercised every kind of outcome
    assert {r["token_standard"] for r in got} == {ERC20, ERC721, ERC1155}
    assert per_log.count(None) > 100 and max(r["batch_index"] for r in got) >= 3
    assert sum(int(r["value_text"]) >= LIMIT for r in got) > 50
