"""Silver ``token_transfers``: ERC-20, ERC-721 and ERC-1155 transfers decoded from bronze logs.

One row per token movement. The input is rows of the bronze ``logs`` table
(:data:`ingestion.schemas.LOGS`: lower-case ``0x`` hex, as the bronze transform stores it); the
output has exactly :data:`TOKEN_TRANSFERS`' Arrow schema, sorted by
``(block_number, log_index, batch_index)``.

Which logs are transfers (anything else is skipped, never guessed):

* ERC-20 ``Transfer(address indexed from, address indexed to, uint256 value)``: topic 0
  :data:`TRANSFER_TOPIC`, 3 topics, exactly 32 bytes of data.
* ERC-721 ``Transfer(address indexed from, address indexed to, uint256 indexed tokenId)``: the
  same topic 0, 4 topics, no data. (A token that indexes an ERC-20 amount looks the same on
  chain; like ethereum-etl we cannot tell them apart and call it ERC-721.)
* ERC-1155 ``TransferSingle(operator, from, to, id, value)`` (three indexed addresses): 4 topics,
  exactly 64 bytes of data.
* ERC-1155 ``TransferBatch(operator, from, to, uint256[] ids, uint256[] values)``: 4 topics, data
  the ABI encoding of two dynamic arrays (whole 32-byte words; each head offset and array must
  lie inside the data; both arrays the same length). One row per ``(id, value)`` pair,
  ``batch_index`` its position; an empty batch yields no row.

A log with a transfer topic 0 but another topic count is not a transfer
(:func:`transfer_log_mask` is false); one with the right topic count but a wrong data length,
topics that are not 32 bytes, non-hex characters or a bad ABI encoding is skipped as malformed
(:func:`transfer_rows_per_log` tells which).

Addresses are the last 20 bytes of their 32-byte topic, lower-case. The ABI pads an address with
12 zero bytes; when a contract emits non-zero upper bytes anyway, they are dropped — the same
rule as ethereum-etl (``'0x' + topic[-40:]``) and the same for every address column, so the log
still decodes.

**Amounts and ids are uint256.** Delta and Spark decimals stop at 38 digits and uint256 needs 78,
so each amount is stored twice: ``value`` / ``token_id`` as DECIMAL(38,0), exact when present and
null only when the number is 10^38 or more (huge ERC-1155 ids, hashed ids, "infinite"
transfers), and ``value_text`` / ``token_id_text``, the exact decimal string, always filled
(token_id_text is null only for ERC-20, which has no id). Sums and filters use the numeric column;
the text column never loses a digit (``int(value_text)`` in Python, ``CAST(... AS DECIMAL(76))``
where an engine has wide decimals). A hex string would be cheaper to build, but the decimal string
is what ethereum-etl exports and what people compare with explorers.

Differences from ethereum-etl's ``token_transfers`` (which decodes any log with topic 0
``Transfer`` whose topics plus 32-byte data words number four):

* ERC-721: ethereum-etl puts the token id in ``value``; here ``token_id`` holds it and ``value``
  is 1, the number of tokens an ERC-721 transfer moves, so that ``sum(value)`` means the same for
  every standard.
* ethereum-etl also decodes Transfer logs with fewer indexed fields (1 topic and 96 bytes of data,
  as CryptoKitties emits; 2 topics and 64 bytes) and splits data that is not whole words into a
  short last "word". Those are not ERC-20/721 encodings and are not decoded here.
* ERC-1155 transfers are not in ethereum-etl's table.

Speed (about 1.5 million logs/s on one core, ``benchmarks/token_transfers_decode.py``): no Python
loop per log. Strings are read in place from the Arrow buffers with numpy; topic 0 is compared
as eight uint64 words; the 64 hex digits of every word needed are gathered into one array and
decoded by a single ``binascii.unhexlify`` call (which also checks them: only when it fails is
the batch re-checked row by row and the culprit logs dropped); words become decimal128 through
``pa.Array.from_buffers`` on their two low limbs, decimal strings through Arrow's cast, and only
the rare numbers of 10^38 or more go through Python ints. TransferBatch layouts are checked and
expanded with numpy as well (their data's hex digits by one RE2 match).
"""

from __future__ import annotations

import binascii
import sys
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.lib.stride_tricks import sliding_window_view

from ingestion import schemas
from ingestion.schemas import BIGINT, HEX, TEXT, WEI, col, opt

__all__ = [
    "ERC1155",
    "ERC20",
    "ERC721",
    "TOKEN_TRANSFERS",
    "TRANSFER_BATCH_TOPIC",
    "TRANSFER_SINGLE_TOPIC",
    "TRANSFER_TOPIC",
    "decode_token_transfers",
    "transfer_log_mask",
    "transfer_rows_per_log",
]

# keccak256 of the event signatures (a unit test recomputes them).
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
TRANSFER_SINGLE_TOPIC = "0xc3d58168c5ae7397731d063d5bbf3d657854427343f4c083240f7aacaa2d0f62"
TRANSFER_BATCH_TOPIC = "0x4a39dc06d4c0dbc64b70af90fd698a233a518aa5d07e595d983b8c0526c8f7fb"

ERC20, ERC721, ERC1155 = "ERC-20", "ERC-721", "ERC-1155"

TOKEN_TRANSFERS = schemas.Table(
    name="token_transfers",
    doc="One row per token movement decoded from an ERC-20, ERC-721 or ERC-1155 transfer log.",
    key=("chain_id", "block_number", "log_index", "batch_index"),
    columns=(
        *schemas.BLOCK_CONTEXT,
        col("token_address", HEX, "Token contract: the address that emitted the log."),
        col("from_address", HEX, "Sender (0x00…00 for a mint)."),
        col("to_address", HEX, "Recipient (0x00…00 for a burn)."),
        opt("value", WEI, "Amount moved (1 for ERC-721); null only when ≥ 10^38, see value_text."),
        col("value_text", TEXT, "Exact amount moved, as a decimal string (uint256)."),
        col("transaction_hash", HEX, "Transaction that emitted the log."),
        col("log_index", BIGINT, "Position of the log in the block."),
        col("transaction_index", BIGINT, "Position of the transaction in the block."),
        col("token_standard", TEXT, "`ERC-20`, `ERC-721` or `ERC-1155`."),
        opt("token_id", WEI, "ERC-721/1155 token id; null for ERC-20, and when ≥ 10^38."),
        opt("token_id_text", TEXT, "Exact token id as a decimal string; null for ERC-20."),
        col("batch_index", BIGINT, "Position of the pair in an ERC-1155 TransferBatch; else 0."),
        opt("operator_address", HEX, "ERC-1155: who made the transfer; null for ERC-20/721."),
    ),
)

# Kinds of log, per row (0: not a transfer).
_ERC20, _ERC721, _SINGLE, _BATCH = 1, 2, 3, 4
_STANDARDS = pa.array([ERC20, ERC721, ERC1155])  # by kind - 1, TransferBatch folded onto 1155
_TOPIC_CHARS = 66  # "0x" + 64 hex digits
_LIMIT = 10**38  # decimal128(38, 0) holds 0 ≤ v < 10^38
_LIMIT_HI, _LIMIT_LO = divmod(_LIMIT, 1 << 64)
_IS_HEX = np.zeros(256, bool)
_IS_HEX[np.frombuffer(b"0123456789abcdefABCDEF", np.uint8)] = True
_ZERO, _X = ord("0"), ord("x")

if sys.byteorder != "little":  # decimal128 buffers and the uint64 views below assume it
    raise ImportError("ingestion.datasets.token_transfers needs a little-endian machine")


def _signature(topic: str) -> np.ndarray:
    """The 64 hex digits of a topic as 8 uint64 words, for comparison with gathered topics."""
    return np.frombuffer(topic[2:].encode(), "<u8")


_SIGNATURES = ((_signature(TRANSFER_TOPIC), _ERC20, _ERC721),
               (_signature(TRANSFER_SINGLE_TOPIC), 0, _SINGLE),
               (_signature(TRANSFER_BATCH_TOPIC), 0, _BATCH))


# --------------------------------------------------------------------------------------------
# Arrow buffers as numpy arrays.


def _string_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, bytes) of a string array: offsets[i]:offsets[i+1] is value i, slices honoured."""
    bufs = arr.buffers()
    if bufs[1] is None:  # some producers leave it out of an empty array
        return np.zeros(len(arr) + 1, np.int64), np.empty(0, np.uint8)
    offsets = np.frombuffer(bufs[1], np.int32)[arr.offset:arr.offset + len(arr) + 1]
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.empty(0, np.uint8)
    return offsets.astype(np.int64), data


@dataclass(frozen=True)
class _Logs:
    """One record batch of bronze logs as flat numpy arrays (no copies of the strings)."""

    batch: pa.RecordBatch
    topic_start: np.ndarray  # per log: index of its topic 0 among all topics
    topic_count: np.ndarray
    topic_offsets: np.ndarray  # per topic: where its characters start in topic_bytes
    topic_bytes: np.ndarray
    data_offsets: np.ndarray  # per log
    data_bytes: np.ndarray
    data_null: np.ndarray | None  # per log, when some data is null
    data: pa.StringArray

    @classmethod
    def of(cls, batch: pa.RecordBatch) -> _Logs:
        topics, data = batch.column("topics"), batch.column("data")
        if not (pa.types.is_list(topics.type) and topics.type.value_type == pa.string()):
            topics = topics.cast(pa.list_(pa.string()))  # large lists, views (other readers)
        if data.type != pa.string():
            data = data.cast(pa.string())
        n = len(topics)
        lo = np.frombuffer(topics.buffers()[1], np.int32)[topics.offset:topics.offset + n + 1]
        lo = lo.astype(np.int64)
        count = np.diff(lo)
        if topics.null_count:  # not in bronze; a null list has no topics
            count[np.asarray(topics.is_null())] = 0
        toff, tbuf = _string_parts(topics.values)
        doff, dbuf = _string_parts(data)
        null = np.asarray(data.is_null()) if data.null_count else None
        return cls(batch, lo[:-1], count, toff, tbuf, doff, dbuf, null, data)

    def topic_length(self, t: np.ndarray) -> np.ndarray:
        return self.topic_offsets[t + 1] - self.topic_offsets[t]

    def data_length(self, rows: np.ndarray) -> np.ndarray:
        """Characters of each log's data, or -1 where it is null (not in bronze)."""
        length = self.data_offsets[rows + 1] - self.data_offsets[rows]
        return length if self.data_null is None else np.where(self.data_null[rows], -1, length)


def _windows(buf: np.ndarray, width: int, starts: np.ndarray) -> np.ndarray:
    """buf[s:s + width] for each start, as a (len(starts), width) array (one gather, no loop)."""
    if not len(starts):
        return np.empty((0, width), np.uint8)
    return sliding_window_view(buf, width)[starts]


def _unhex(chars: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Bytes of rows of hex digits, and which rows were hex (None: all were)."""
    try:  # one C call over all rows; the row-wise check below only runs when it fails
        raw = binascii.unhexlify(memoryview(chars))
        ok = None
    except binascii.Error:
        ok = _IS_HEX[chars].all(axis=1)
        raw = binascii.unhexlify(memoryview(np.where(ok[:, None], chars, _ZERO).astype(np.uint8)))
    return np.frombuffer(raw, np.uint8).reshape(len(chars), chars.shape[1] // 2), ok


def _words(buf: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """32-byte words from the 64 hex digits at each start; which ones were hex (None: all)."""
    return _unhex(_windows(buf, 64, starts))


def _small(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each word's low 64 bits (as int64, clipped) and whether the word is below 2^31."""
    limbs = np.ascontiguousarray(words).view(">u8")
    fits = (limbs[:, :3] == 0).all(axis=1) & (limbs[:, 3] < (1 << 31))
    return np.where(fits, limbs[:, 3], 0).astype(np.int64), fits


def _bitmap(valid: np.ndarray) -> pa.Buffer | None:
    return None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))


def _uint256(words: np.ndarray, present: np.ndarray | None) -> tuple[pa.Array, pa.Array]:
    """(DECIMAL(38,0), exact decimal string) of big-endian 32-byte words; null where not present.

    The decimal is null where the number is 10^38 or more; its string is still exact.
    """
    m = len(words)
    limbs = np.ascontiguousarray(words).view(">u8").astype(np.uint64)  # most significant first
    fits = ((limbs[:, 0] == 0) & (limbs[:, 1] == 0)
            & ((limbs[:, 2] < _LIMIT_HI) | ((limbs[:, 2] == _LIMIT_HI) & (limbs[:, 3] < _LIMIT_LO))))
    has = np.ones(m, bool) if present is None else present
    valid = fits & has
    le = np.zeros((m, 2), np.uint64)  # decimal128: little-endian two's complement, low limb first
    le[valid, 0] = limbs[valid, 3]
    le[valid, 1] = limbs[valid, 2]
    decimal = pa.Array.from_buffers(WEI, m, [_bitmap(valid), pa.py_buffer(le)])
    text = decimal.cast(pa.string())
    big = np.flatnonzero(has & ~fits)
    if len(big):  # ≥ 10^38: rare, so Python ints are fine here
        strings = [str(int.from_bytes(words[i].tobytes(), "big")) for i in big]
        mask = np.zeros(m, bool)
        mask[big] = True
        text = pc.replace_with_mask(text, pa.array(mask), pa.array(strings, pa.string()))
    return decimal, text


def _strings(chars: np.ndarray, present: np.ndarray | None = None) -> pa.Array:
    """A string array of fixed-width rows of characters, one per row where ``present``.

    Without ``present`` every row is there; with it, ``chars`` holds the present rows only and
    the others are null.
    """
    width = chars.shape[1]
    m = len(chars) if present is None else len(present)
    offsets = np.zeros(m + 1, np.int64)
    np.cumsum(np.full(m, width) if present is None else np.where(present, width, 0),
              out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError("token_transfers batch too large for 32-bit string offsets")
    validity = None if present is None else _bitmap(present)
    return pa.Array.from_buffers(pa.string(), m, [validity, pa.py_buffer(offsets.astype(np.int32)),
                                                  pa.py_buffer(np.ascontiguousarray(chars))])


# --------------------------------------------------------------------------------------------
# Decoding one record batch.


def _classify(logs: _Logs) -> np.ndarray:
    """Per log: 0, or the kind of transfer its topic 0 and topic count make it (int8)."""
    kind = np.zeros(len(logs.topic_count), np.int8)
    rows = np.flatnonzero((logs.topic_count == 3) | (logs.topic_count == 4))
    rows = rows[logs.topic_length(logs.topic_start[rows]) == _TOPIC_CHARS]
    if not len(rows):
        return kind
    first = logs.topic_offsets[logs.topic_start[rows]] + 2
    heads = np.ascontiguousarray(_windows(logs.topic_bytes, 64, first)).view("<u8")  # (k, 8)
    for signature, with_3, with_4 in _SIGNATURES:
        hit = np.flatnonzero(heads[:, 0] == signature[0])  # cheap pre-filter on 8 digits
        hit = hit[(heads[hit] == signature).all(axis=1)]
        count = logs.topic_count[rows[hit]]
        kind[rows[hit]] = np.where(count == 3, with_3, with_4)
    return kind


@dataclass
class _Plan:
    """Per log (arrays of the batch's length): how many rows and where their words are."""

    rows: np.ndarray  # rows it yields; -1: malformed, skipped
    value_at: np.ndarray  # hex position of the (first) value word in data_bytes
    id_at: np.ndarray  # hex position of the (first) id word: data_bytes, or topic_bytes (721)


def _plan(logs: _Logs, kind: np.ndarray) -> _Plan:
    """Check each candidate's topics and data layout; where each row's words are."""
    n = len(kind)
    rows = np.zeros(n, np.int64)
    value_at = np.full(n, -1, np.int64)
    id_at = np.full(n, -1, np.int64)
    cand = np.flatnonzero(kind)
    k = kind[cand]
    start = logs.topic_start[cand]
    ok = np.ones(len(cand), bool)
    for t in (1, 2, 3):  # every topic is a 32-byte word
        has = logs.topic_count[cand] > t
        ok &= ~has | (logs.topic_length(np.where(has, start + t, start)) == _TOPIC_CHARS)
    length = logs.data_length(cand)
    at = logs.data_offsets[cand]
    prefixed = length >= 2
    safe = np.where(prefixed, at, 0)  # in range: some data has two characters
    if prefixed.any():
        prefixed &= (logs.data_bytes[safe] == _ZERO) & (logs.data_bytes[safe + 1] == _X)
    ok &= prefixed & (length % 2 == 0)
    size = (length - 2) // 2  # bytes of data
    ok &= np.select([k == _ERC20, k == _ERC721, k == _SINGLE],
                    [size == 32, size == 0, size == 64],
                    (size >= 64) & (size % 32 == 0))
    body = at + 2  # hex position of the data's first byte
    rows[cand] = np.where(ok, 1, -1)
    one = ok & (k != _BATCH)  # one row each: ERC-20, ERC-721, TransferSingle
    simple, ks, data_at = cand[one], k[one], body[one]
    last_topic = logs.topic_offsets[logs.topic_start[simple] + logs.topic_count[simple] - 1] + 2
    value_at[simple] = np.select([ks == _ERC20, ks == _SINGLE], [data_at, data_at + 64], -1)
    id_at[simple] = np.select([ks == _ERC721, ks == _SINGLE], [last_topic, data_at], -1)
    many = ok & (k == _BATCH)
    _plan_batches(logs, cand[many], body[many], size[many], rows, value_at, id_at)
    return _Plan(rows, value_at, id_at)


def _all_hex(data: pa.Array, rows: np.ndarray) -> np.ndarray:
    """Per row of a string array: "0x" and hex digits only (RE2, no Python loop)."""
    return np.asarray(pc.match_substring_regex(data.take(pa.array(rows)), r"^0x[0-9a-fA-F]*$"))


def _plan_batches(logs: _Logs, which: np.ndarray, body: np.ndarray, size: np.ndarray,
                  rows: np.ndarray, value_at: np.ndarray, id_at: np.ndarray) -> None:
    """TransferBatch: check the ABI layout of (uint256[] ids, uint256[] values), fill the plan."""
    if not len(which):
        return
    buf = logs.data_bytes
    heads, _ = _words(buf, np.concatenate([body, body + 64]))
    offset, ok = _small(heads)
    b = len(which)
    ids_off, values_off = offset[:b], offset[b:]
    ok = ok[:b] & ok[b:] & (ids_off + 32 <= size) & (values_off + 32 <= size)
    ok &= _all_hex(logs.data, which)  # bytes no word is read from must be bytes too
    ids_off, values_off = np.where(ok, ids_off, 0), np.where(ok, values_off, 0)
    lengths, _ = _words(buf, np.concatenate([body + 2 * ids_off, body + 2 * values_off]))
    length, fits = _small(lengths)
    ids_len, values_len = length[:b], length[b:]
    ok &= fits[:b] & fits[b:] & (ids_len == values_len)
    ok &= (ids_off + 32 + 32 * ids_len <= size) & (values_off + 32 + 32 * values_len <= size)
    empty = np.flatnonzero(ok & (ids_len == 0))
    if len(empty):  # no row will check their addresses: check them here (rare)
        topics = logs.topic_start[which[empty]][:, None] + np.arange(1, 4)
        digits = _windows(logs.topic_bytes, 40, logs.topic_offsets[topics.ravel()] + 26)
        ok[empty] = _IS_HEX[digits].all(axis=1).reshape(-1, 3).all(axis=1)
    rows[which] = np.where(ok, ids_len, -1)
    id_at[which] = np.where(ok, body + 2 * (ids_off + 32), -1)
    value_at[which] = np.where(ok, body + 2 * (values_off + 32), -1)


def _decode_batch(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, np.ndarray]:
    """The batch's transfers, and per log the rows it yielded (-1: malformed, skipped)."""
    logs = _Logs.of(batch)
    kind = _classify(logs)
    plan = _plan(logs, kind)
    while True:  # a second pass only when some word or address was not hex
        out, bad = _assemble(logs, kind, plan)
        if out is not None:
            return out, plan.rows
        plan.rows[bad] = -1


def _assemble(logs: _Logs, kind: np.ndarray,
              plan: _Plan) -> tuple[pa.RecordBatch | None, np.ndarray]:
    """Output rows, or (None, logs found malformed) when some characters are not hex."""
    counts = np.maximum(plan.rows, 0)
    src = np.repeat(np.arange(len(kind)), counts)  # the log of each output row
    m = len(src)
    first = np.zeros(len(kind) + 1, np.int64)
    np.cumsum(counts, out=first[1:])
    batch_index = np.arange(m, dtype=np.int64) - first[src]
    k = kind[src]
    erc721, erc1155 = k == _ERC721, k >= _SINGLE
    transfer = ~erc1155
    bad = np.zeros(m, bool)

    def address(topic: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """"0x" + the last 40 digits of a topic, lower-cased, per row, as (rows, 42) chars."""
        digits = _windows(logs.topic_bytes, 40, logs.topic_offsets[topic] + 26)
        _, ok = _unhex(digits)
        chars = np.empty((len(topic), 42), np.uint8)
        chars[:, 0], chars[:, 1] = _ZERO, _X
        np.bitwise_or(digits, 0x20, out=chars[:, 2:])  # hex digits only: lower-cases A-F
        return chars, ok

    start = logs.topic_start[src]
    senders, ok_from = address(start + np.where(transfer, 1, 2))
    receivers, ok_to = address(start + np.where(transfer, 2, 3))
    op_rows = np.flatnonzero(erc1155)
    operators, ok_op = address(start[op_rows] + 1)
    for ok, where in ((ok_from, slice(None)), (ok_to, slice(None)), (ok_op, op_rows)):
        if ok is not None:
            bad[where] |= ~ok

    values = np.zeros((m, 32), np.uint8)
    values[erc721, 31] = 1  # one token per ERC-721 transfer
    moved = np.flatnonzero(~erc721)
    words, ok = _words(logs.data_bytes, plan.value_at[src[moved]] + 64 * batch_index[moved])
    values[moved] = words
    if ok is not None:
        bad[moved] |= ~ok
    ids = np.zeros((m, 32), np.uint8)
    for rows_of, buf in ((np.flatnonzero(erc1155), logs.data_bytes),
                         (np.flatnonzero(erc721), logs.topic_bytes)):
        words, ok = _words(buf, plan.id_at[src[rows_of]] + 64 * batch_index[rows_of])
        ids[rows_of] = words
        if ok is not None:
            bad[rows_of] |= ~ok
    if bad.any():
        return None, np.unique(src[bad])

    value, value_text = _uint256(values, None)
    token_id, token_id_text = _uint256(ids, k != _ERC20)
    taken = pa.array(src, pa.int64())
    schema = TOKEN_TRANSFERS.arrow_schema

    def context(name: str, source: str | None = None) -> pa.Array:
        return logs.batch.column(source or name).take(taken).cast(schema.field(name).type)

    op_present = np.zeros(m, bool)
    op_present[op_rows] = True
    columns = {
        **{c.name: context(c.name) for c in schemas.BLOCK_CONTEXT},
        "token_address": context("token_address", "address"),
        "from_address": _strings(senders),
        "to_address": _strings(receivers),
        "value": value,
        "value_text": value_text,
        "transaction_hash": context("transaction_hash"),
        "log_index": context("log_index"),
        "transaction_index": context("transaction_index"),
        "token_standard": _STANDARDS.take(pa.array(np.minimum(k, _SINGLE) - 1)),
        "token_id": token_id,
        "token_id_text": token_id_text,
        "batch_index": pa.array(batch_index, BIGINT),
        "operator_address": _strings(operators, op_present),
    }
    out = pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)
    return out, np.empty(0, np.int64)


def _batches(logs: pa.Table | pa.RecordBatch) -> list[pa.RecordBatch]:
    return [logs] if isinstance(logs, pa.RecordBatch) else logs.to_batches()


def _is_sorted(table: pa.Table) -> bool:
    """Rows in (block_number, log_index, batch_index) order?"""
    if table.num_rows < 2:
        return True
    d = [np.diff(table.column(c).to_numpy()) for c in ("block_number", "log_index", "batch_index")]
    return bool(((d[0] > 0) | ((d[0] == 0) & ((d[1] > 0) | ((d[1] == 0) & (d[2] > 0))))).all())


# --------------------------------------------------------------------------------------------
# Public API.


def decode_token_transfers(logs: pa.Table | pa.RecordBatch) -> pa.Table:
    """Token transfers decoded from rows of bronze ``logs`` (schema :data:`schemas.LOGS`).

    Returns rows of exactly ``TOKEN_TRANSFERS.arrow_schema``, sorted by
    ``(block_number, log_index, batch_index)``; logs that are not transfers, or are malformed
    ones, yield no row (see the module docstring for the rules).
    """
    schema = TOKEN_TRANSFERS.arrow_schema
    parts = [_decode_batch(b)[0] for b in _batches(logs) if b.num_rows]
    table = pa.Table.from_batches(parts, schema=schema) if parts else schema.empty_table()
    if not _is_sorted(table):  # bronze logs come sorted; anything else is sorted here
        table = table.sort_by([("block_number", "ascending"), ("log_index", "ascending"),
                               ("batch_index", "ascending")])
    return table


def transfer_log_mask(logs: pa.Table | pa.RecordBatch) -> pa.BooleanArray:
    """Per log: has it a transfer topic 0 with the topic count of its event?

    True for Transfer with 3 or 4 topics and TransferSingle/TransferBatch with 4. Every log
    :func:`decode_token_transfers` decodes is among them; those it skips as malformed are the
    ones :func:`transfer_rows_per_log` gives null.
    """
    masks = [_classify(_Logs.of(b)) > 0 for b in _batches(logs) if b.num_rows]
    return pa.array(np.concatenate(masks) if masks else np.zeros(0, bool), pa.bool_())


def transfer_rows_per_log(logs: pa.Table | pa.RecordBatch) -> pa.Int64Array:
    """Per log: how many token_transfers rows it yields; null where it is skipped as malformed.

    0 for logs outside :func:`transfer_log_mask` (and for an empty TransferBatch); an asset check
    can compare these counts with the rows found per ``(block_number, log_index)``.
    """
    counts = [_decode_batch(b)[1] for b in _batches(logs) if b.num_rows]
    rows = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    return pa.array(rows, pa.int64(), mask=rows < 0)
