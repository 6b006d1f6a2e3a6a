"""The bronze ``traces`` dataset: one row per call frame, self-destruct and block reward.

Two node APIs carry traces, and both are turned into the same rows:

* ``trace_block`` (the "parity" API: Erigon, Nethermind, Reth, anvil, OpenEthereum): a flat list
  per block, transactions in order, each transaction's frames depth-first, then block rewards.
* ``debug_traceBlockByNumber`` with ``callTracer`` (the "geth" API: geth, Erigon, Reth, anvil): one
  call tree per transaction; rewards are not traced.

Columns and their meaning follow ethereum-etl's ``traces`` (``export_traces`` for the parity API,
``extract_geth_traces`` for the geth one), with ``status``, ``trace_id`` and ``trace_index``
computed as ethereum-etl computes them, for both APIs. Where the two APIs state the same fact
differently, the rows say it one way (see ``_GETH_KINDS`` and the comments in the parsers):
CREATE2 is a ``create`` trace, a self-destruct has no gas, input or output, a STATICCALL moves 0
wei, a failed create created no contract (``to_address`` null), a frame that succeeded and returned
nothing has output ``0x``. What each node reports in its own words is kept as it is: error
messages, and the gas of the top-level frame (geth gives the gas limit as ``gas`` and counts
intrinsic gas in ``gasUsed``, the parity API leaves intrinsic gas out of both), which the
transform cannot reconcile without the transactions and receipts.

Replies are checked against the block headers they are for (``eth_getBlockByNumber(n, false)``):
one top-level trace per transaction, in order, with the header's transaction hashes and block
hash, so that a reorg between the header and the trace requests is an error, never wrong rows.
Anything malformed raises ``transform.TransformError`` naming the block, the trace and the field.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import pyarrow as pa
import pyarrow.compute as pc

# ``transform`` as a module, not its names: it imports ingestion.schemas, which registers this
# dataset, so this module may run while ingestion.transform is still being imported.
from ingestion import schemas, transform
from ingestion.dataset_names import TRACE_APIS
from ingestion.errors import RefusedError, TransformError
from ingestion.schemas import BIGINT, HEX, TEXT, TIMESTAMP, WEI, col, list_of, opt

if TYPE_CHECKING:
    from ingestion.rpc import RpcClient

__all__ = [
    "TRACES",
    "TRACE_APIS",
    "TracingUnsupportedError",
    "detect_trace_api",
    "fetch_traces",
    "traces_from_geth",
    "traces_from_parity",
]

TRACES = schemas.Table(
    name="traces",
    doc="One row per trace: each call frame of each transaction, self-destructs, block rewards.",
    key=("chain_id", "block_number", "trace_index"),
    columns=(
        *schemas.BLOCK_CONTEXT,
        opt("transaction_index", BIGINT, "Position of the transaction in the block; null for rewards."),
        opt("transaction_hash", HEX, "Transaction traced; null for rewards."),
        opt("from_address", HEX, "Caller (call, create) or self-destructing contract (suicide)."),
        opt("to_address", HEX,
            "Callee (call), created contract (create; null if it failed), beneficiary (suicide), "
            "rewarded address (reward)."),
        opt("value", WEI, "Wei sent (call, create), balance moved (suicide) or reward amount."),
        opt("input", HEX, "Call data (call) or init code (create)."),
        opt("output", HEX, "Return or revert data (call) or deployed code (create)."),
        col("trace_type", TEXT, "call, create, suicide or reward."),
        opt("call_type", TEXT, "call, callcode, delegatecall or staticcall; call traces only."),
        opt("reward_type", TEXT, "block or uncle (or a chain's own kind); reward traces only."),
        opt("gas", BIGINT, "Gas given to the frame (top level: as the node counts it)."),
        opt("gas_used", BIGINT,
            "Gas used by the frame (top level: as the node counts it; geth adds intrinsic gas)."),
        col("subtraces", BIGINT, "Number of direct child traces."),
        col("trace_address", list_of(BIGINT), "Child indices from the top-level frame; [] at the top."),
        opt("error", TEXT, "Why the frame failed, in the node's own words; null on success."),
        col("status", BIGINT, "1 success; 0 when this trace or any of its ancestors failed."),
        col("trace_id", TEXT,
            "ethereum-etl's id: {type}_{tx hash}_{address joined by _}, {type}_{block}_{n} for rewards."),
        col("trace_index", BIGINT,
            "Position in the block: transactions in order, each depth-first, then rewards."),
    ),
)

_METHODS = {"parity": "trace_block", "geth": "debug_traceBlockByNumber"}
_GETH_TRACER = {"tracer": "callTracer"}


def _params(api: str, block: str) -> list:
    return [block] if api == "parity" else [block, dict(_GETH_TRACER)]


# --------------------------------------------------------------------------------------------
# Converting one column (vectorized; the offending row is named only when a check fails).

_TS_MAX = (2**63 - 1) // 1_000_000  # seconds a microsecond TIMESTAMP holds


Label = Callable[[int], str]  # names row i, e.g. "block 12: transaction 3 trace [0, 1]"
FieldName = Callable[[int], str]  # the reply field row i's value came from


class _Invalid(Exception):
    """A vectorized check failed; the row-by-row diagnosis names the row."""


def _show(v: object) -> str:
    s = repr(v)
    return s if len(s) <= 90 else s[:80] + "…" + s[-8:]


def _fixed(name: str) -> FieldName:
    return lambda _i: name


def _quantities(raw: list, type_: pa.DataType, label: Label, name: FieldName, *,
                nullable: bool = True) -> pa.Array:
    """Hex quantities → BIGINT, WEI (DECIMAL(38,0)) or TIMESTAMP (from seconds)."""
    try:
        ints = [None if v is None else int(v, 16) for v in raw]
        if type_ == WEI:
            try:  # fast path: every value fits 64 bits
                check = pa.array(ints, BIGINT)
                arr = check.cast(WEI)
            except OverflowError:
                arr = check = pa.array(ints, WEI)  # ArrowInvalid beyond 38 digits
        else:
            arr = check = pa.array(ints, BIGINT)  # OverflowError beyond int64
            if type_ == TIMESTAMP:
                if arr.null_count < len(arr) and pc.max(arr).as_py() > _TS_MAX:
                    raise _Invalid("timestamp range")
                arr = pc.multiply(arr, 1_000_000).cast(TIMESTAMP)
        if not nullable and arr.null_count:
            raise _Invalid("null")
        if arr.null_count < len(arr) and pc.min(check).as_py() < 0:
            raise _Invalid("negative")
        return arr
    except (_Invalid, TypeError, ValueError, OverflowError, pa.ArrowException) as e:
        _diagnose(raw, lambda v: transform.quantity_problem(v, type_, nullable), label, name, e)


def _hexes(raw: list, label: Label, name: FieldName, *, nullable: bool = True) -> pa.Array:
    """0x-prefixed hex strings, lower-cased."""
    try:
        arr = pa.array(raw, pa.string())
        if not nullable and arr.null_count:
            raise _Invalid("null")
        if arr.null_count < len(arr) and not pc.all(pc.starts_with(arr, "0x")).as_py():
            raise _Invalid("not hex")
        return pc.ascii_lower(arr)
    except (_Invalid, TypeError, pa.ArrowException) as e:
        _diagnose(raw, lambda v: _hex_problem(v, nullable), label, name, e)


def _hex_problem(v: object, nullable: bool) -> str | None:
    if v is None:
        return None if nullable else "is null"
    if not isinstance(v, str):
        return "is not a string"
    return None if v.startswith("0x") else "is not 0x-prefixed hex"


def _texts(raw: list, label: Label, name: FieldName) -> pa.Array:
    try:
        return pa.array(raw, pa.string())
    except (TypeError, pa.ArrowException) as e:
        _diagnose(raw, lambda v: None if v is None or isinstance(v, str) else "is not a string",
                  label, name, e)


def _diagnose(raw: list, problem: Callable[[object], str | None], label: Label,
              name: FieldName, cause: BaseException) -> NoReturn:
    for i, v in enumerate(raw):
        p = problem(v)
        if p is not None:
            raise TransformError(f"{label(i)}: field {name(i)!r} = {_show(v)} {p}")
    raise TransformError(f"{label(0) if raw else 'empty batch'}…: field {name(0)!r}: {cause}") \
        from cause


def _natural(v: object) -> bool:
    """A JSON number usable as a count or position (not a bool, not negative)."""
    return v.__class__ is int and v >= 0


def _same_hex(a: object, b: str) -> bool:
    return isinstance(a, str) and a.lower() == b


# --------------------------------------------------------------------------------------------
# Block headers: the context columns and the transaction hashes replies are checked against.


@dataclass(slots=True)
class _Headers:
    numbers: list[int]
    context: dict[str, pa.Array]  # chain_id, block_number, block_hash, block_timestamp
    hashes: list[str]  # block hashes, lower-cased
    tx_hashes: list[list[str]]  # per block, lower-cased
    tx_hash_array: pa.Array  # all blocks' transaction hashes, flat
    tx_offsets: list[int]  # block b's transactions are tx_hash_array[tx_offsets[b]:...[b + 1]]


def _headers(chain_id: int, blocks: Sequence[dict], replies: Sequence[Any],
             method: str) -> _Headers:
    if len(blocks) != len(replies):
        raise TransformError(f"{len(blocks)} block headers but {len(replies)} {method} replies")
    for i, b in enumerate(blocks):
        if not isinstance(b, dict):
            raise TransformError(f"block at batch position {i}: header is {_show(b)}, "
                                 "not a JSON object")

    def position(i: int) -> str:
        h = blocks[i].get("hash")
        return f"block at batch position {i}" + (f" (hash {h})" if isinstance(h, str) else "")

    number_array = _quantities([b.get("number") for b in blocks], BIGINT, position,
                               _fixed("number"), nullable=False)
    numbers = number_array.to_pylist()

    def block_label(i: int) -> str:
        return f"block {numbers[i]}"

    hash_array = _hexes([b.get("hash") for b in blocks], block_label, _fixed("hash"),
                        nullable=False)
    try:
        chain = pa.array([chain_id] * len(blocks), BIGINT)
    except (OverflowError, TypeError, pa.ArrowException) as e:
        raise TransformError(f"chain id {chain_id!r} does not fit BIGINT") from e
    context = {
        "chain_id": chain,
        "block_number": number_array,
        "block_hash": hash_array,
        "block_timestamp": _quantities([b.get("timestamp") for b in blocks], TIMESTAMP,
                                       block_label, _fixed("timestamp"), nullable=False),
    }
    flat: list = []
    offsets = [0]
    for i, b in enumerate(blocks):
        txs = b.get("transactions")
        if txs.__class__ is not list:
            raise TransformError(f"block {numbers[i]}: field 'transactions' = {_show(txs)} "
                                 "is not a list")
        # eth_getBlockByNumber(n, false) gives hashes; a full block (true) is accepted too.
        flat += [t.get("hash") if t.__class__ is dict else t for t in txs]
        offsets.append(len(flat))

    def tx_label(j: int) -> str:
        b = bisect_right(offsets, j) - 1
        return f"block {numbers[b]}: transactions[{j - offsets[b]}]"

    tx_array = _hexes(flat, tx_label, _fixed("hash"), nullable=False)
    lowered = tx_array.to_pylist()
    return _Headers(numbers, context, hash_array.to_pylist(),
                    [lowered[offsets[b]:offsets[b + 1]] for b in range(len(blocks))],
                    tx_array, offsets)


# --------------------------------------------------------------------------------------------
# Rows parsed from either API, before conversion.


@dataclass(slots=True)
class _Rows:
    """The traces of a batch, one entry per row in every list, in ``trace_index`` order."""

    heads: _Headers
    block: list[int] = field(default_factory=list)  # block position in the batch
    tx: list[int | None] = field(default_factory=list)  # transaction position; None: block-scoped
    failed: list[bool] = field(default_factory=list)  # this trace or an ancestor failed
    subtraces: list[int] = field(default_factory=list)
    address: list[int] = field(default_factory=list)  # trace addresses, flat
    address_offsets: list[int] = field(default_factory=lambda: [0])
    block_starts: list[int] = field(default_factory=list)  # first row of each block
    # Raw column values (hex strings or None) and, for error messages, the fields they came from.
    raw: dict[str, list] = field(default_factory=dict)
    fields: dict[str, FieldName] = field(default_factory=dict)

    def trace_address(self, i: int) -> list[int]:
        return self.address[self.address_offsets[i]:self.address_offsets[i + 1]]

    def label(self, i: int) -> str:
        b = self.block[i]
        where = f"block {self.heads.numbers[b]}: "
        if self.tx[i] is None:
            return where + f"trace {i - self.block_starts[b]} (block reward or other block trace)"
        return where + f"transaction {self.tx[i]} trace {self.trace_address(i)}"


def _batch(rows: _Rows) -> pa.RecordBatch:
    """The record batch of the parsed rows, schema exactly ``TRACES.arrow_schema``."""
    heads, raw, label = rows.heads, rows.raw, rows.label
    n = len(rows.block)
    blocks = pa.array(rows.block, pa.int32())
    cols = {name: arr.take(blocks) for name, arr in heads.context.items()}
    scoped = [t is not None for t in rows.tx]
    tx_index = pa.array(rows.tx, BIGINT)
    # The hash from the header, which the reply was checked against.
    global_tx = [heads.tx_offsets[b] + t if t is not None else None
                 for b, t in zip(rows.block, rows.tx, strict=True)]
    cols["transaction_index"] = tx_index
    cols["transaction_hash"] = heads.tx_hash_array.take(pa.array(global_tx, pa.int64()))
    for name in ("from_address", "to_address", "input", "output"):
        cols[name] = _hexes(raw[name], label, rows.fields[name])
    cols["value"] = _quantities(raw["value"], WEI, label, rows.fields["value"])
    cols["trace_type"] = pa.array(raw["trace_type"], pa.string())
    for name in ("call_type", "reward_type", "error"):
        cols[name] = _texts(raw[name], label, rows.fields[name])
    for name in ("gas", "gas_used"):
        cols[name] = _quantities(raw[name], BIGINT, label, rows.fields[name])
    cols["subtraces"] = pa.array(rows.subtraces, BIGINT)
    if not {x.__class__ for x in rows.address} <= {int}:  # e.g. a JSON true (True == 1)
        i = next(i for i in range(n) if any(x.__class__ is not int for x in rows.trace_address(i)))
        raise TransformError(f"{label(i)}: field 'traceAddress' is not a list of child indices")
    cols["trace_address"] = pa.ListArray.from_arrays(
        pa.array(rows.address_offsets, pa.int32()), pa.array(rows.address, BIGINT),
        type=list_of(BIGINT))
    cols["status"] = pa.array([0 if f else 1 for f in rows.failed], BIGINT)
    ends = [*rows.block_starts[1:], n][:len(rows.block_starts)]
    cols["trace_index"] = pa.array(
        [i for start, end in zip(rows.block_starts, ends, strict=True) for i in range(end - start)],
        BIGINT)
    cols["trace_id"] = _trace_ids(cols, scoped)
    schema = TRACES.arrow_schema
    return pa.RecordBatch.from_arrays([cols[c] for c in schema.names], schema=schema)


def _trace_ids(cols: dict[str, pa.Array], scoped: list[bool]) -> pa.Array:
    """ethereum-etl's trace ids.

    In a transaction: ``{trace_type}_{transaction_hash}_{trace address joined by _}``. Block-scoped
    traces (rewards): ``{trace_type}_{block_number}_{n}``, n counting the block's traces of that
    type ordered by (reward_type, from_address, to_address, value), as ethereum-etl orders them.
    """
    path = pc.binary_join(pc.cast(cols["trace_address"], pa.list_(pa.string())), "_")
    ids = pc.binary_join_element_wise(cols["trace_type"], cols["transaction_hash"], path, "_")
    if all(scoped):
        return ids
    where = [i for i, s in enumerate(scoped) if not s]
    taken = pa.array(where, pa.int64())
    picked = {name: cols[name].take(taken).to_pylist() for name in
              ("block_number", "trace_type", "reward_type", "from_address", "to_address", "value")}
    groups: dict[tuple, list[int]] = {}
    for j in range(len(where)):
        groups.setdefault((picked["block_number"][j], picked["trace_type"][j]), []).append(j)
    block_ids: list[str] = [""] * len(where)
    for (number, trace_type), members in groups.items():
        members.sort(key=lambda j: (picked["reward_type"][j] or "", picked["from_address"][j] or "",
                                    picked["to_address"][j] or "", picked["value"][j] or 0))
        for k, j in enumerate(members):
            block_ids[j] = f"{trace_type}_{number}_{k}"
    mask = pa.array([not s for s in scoped], pa.bool_())
    return pc.replace_with_mask(ids, mask, pa.array(block_ids, pa.string()))


# --------------------------------------------------------------------------------------------
# The geth API: debug_traceBlockByNumber(n, {"tracer": "callTracer"}).

# callTracer frame type → (trace_type, call_type), in ethereum-etl's (parity's) words. ethereum-etl
# lower-cases the geth type, so a CREATE2 frame becomes trace_type "create2" there; the chain's rule
# (and the parity API) make it a contract creation like any other: "create" here.
_CALL = ("call", "call")
_STATIC = ("call", "staticcall")
_CREATE = ("create", None)
_SUICIDE = ("suicide", None)
_GETH_KINDS = {
    "CALL": _CALL,
    "CALLCODE": ("call", "callcode"),
    "DELEGATECALL": ("call", "delegatecall"),
    "STATICCALL": _STATIC,
    "CREATE": _CREATE,
    "CREATE2": _CREATE,
    "SELFDESTRUCT": _SUICIDE,
}


def traces_from_geth(chain_id: int, blocks: Sequence[dict], replies: Sequence[list]
                     ) -> pa.RecordBatch:
    """Trace rows from ``debug_traceBlockByNumber(n, {"tracer": "callTracer"})`` replies.

    ``blocks[i]`` is the header of the block ``replies[i]`` traces (``eth_getBlockByNumber(n,
    false)``: number, hash, timestamp, transaction hashes). One row per frame, depth-first.
    """
    heads = _headers(chain_id, blocks, replies, "debug_traceBlockByNumber")
    rows = _Rows(heads)
    frames: list[dict] = []
    for b, reply in enumerate(replies):
        n = heads.numbers[b]
        hashes = heads.tx_hashes[b]
        rows.block_starts.append(len(frames))
        if reply.__class__ is not list:
            raise TransformError(f"block {n}: debug_traceBlockByNumber reply is {_show(reply)}, "
                                 "not a list")
        if len(reply) != len(hashes):
            raise TransformError(
                f"block {n}: {len(reply)} transaction traces for {len(hashes)} transactions in "
                "the header (did the chain reorganize between the header and trace requests?)")
        for t, item in enumerate(reply):
            where = f"block {n}: transaction {t}"
            if item.__class__ is not dict:
                raise TransformError(f"{where}: trace item is {_show(item)}, not a JSON object")
            if item.get("error") is not None or "result" not in item:
                raise TransformError(f"{where}: the node did not trace it: "
                                     f"{_show(item.get('error', item))}")
            h = item.get("txHash")
            if h is not None and not _same_hex(h, hashes[t]):
                raise TransformError(
                    f"{where}: trace is for transaction {_show(h)}, the header says {hashes[t]} "
                    "(did the chain reorganize between the header and trace requests?)")
            _walk_geth(rows, frames, b, t, item["result"], where)
    _geth_columns(rows, frames)
    return _batch(rows)


def _walk_geth(rows: _Rows, frames: list[dict], b: int, t: int, root: object, where: str) -> None:
    """Append one transaction's frames in depth-first pre-order (iterative: calls nest 1024 deep)."""
    stack: list[tuple[object, tuple[int, ...], bool]] = [(root, (), False)]
    while stack:
        frame, path, parent_failed = stack.pop()
        if frame.__class__ is not dict:
            raise TransformError(f"{where} trace {list(path)}: frame is {_show(frame)}, "
                                 "not a JSON object")
        calls = frame.get("calls")
        if calls is None:
            calls = ()
        elif calls.__class__ is not list:
            raise TransformError(f"{where} trace {list(path)}: field 'calls' = {_show(calls)} "
                                 "is not a list")
        failed = parent_failed or bool(frame.get("error"))
        frames.append(frame)
        rows.block.append(b)
        rows.tx.append(t)
        rows.failed.append(failed)
        rows.subtraces.append(len(calls))
        rows.address += path
        rows.address_offsets.append(len(rows.address))
        stack += [(calls[k], (*path, k), failed) for k in range(len(calls) - 1, -1, -1)]


def _geth_columns(rows: _Rows, frames: list[dict]) -> None:
    types = [f.get("type") for f in frames]
    kinds = [_GETH_KINDS.get(t.upper()) if t.__class__ is str else None for t in types]
    if None in kinds:
        i = kinds.index(None)
        raise TransformError(f"{rows.label(i)}: field 'type' = {_show(types[i])} is not a "
                             f"callTracer frame type ({', '.join(_GETH_KINDS)})")
    raw = rows.raw
    raw["trace_type"] = [k[0] for k in kinds]
    raw["call_type"] = [k[1] for k in kinds]
    raw["reward_type"] = [None] * len(frames)
    raw["from_address"] = [f.get("from") for f in frames]
    # A failed create created nothing (geth omits "to" then; be explicit for every version).
    raw["to_address"] = [None if k is _CREATE and f.get("error") else f.get("to")
                         for k, f in zip(kinds, frames, strict=True)]
    # STATICCALL moves no value: geth omits the field, the parity API says 0x0.
    raw["value"] = [f.get("value") if k is not _STATIC else f.get("value", "0x0")
                    for k, f in zip(kinds, frames, strict=True)]
    # A self-destruct is not a frame: no gas, input or output (geth reports 0 and 0x, the parity
    # API nothing), as in ethereum-etl's parity rows.
    for name, key in (("input", "input"), ("output", "output"), ("gas", "gas"),
                      ("gas_used", "gasUsed")):
        raw[name] = [None if k is _SUICIDE else f.get(key)
                     for k, f in zip(kinds, frames, strict=True)]
    # geth's native callTracer omits empty output: a frame that succeeded returned "0x". (A failed
    # one without output stays null, as the parity API's failed frames without a result.)
    raw["output"] = [
        "0x" if v is None and k is not _SUICIDE and not f.get("error") else v
        for v, k, f in zip(raw["output"], kinds, frames, strict=True)]
    raw["error"] = [f.get("error") or None for f in frames]  # "" is no error
    rows.fields = {
        "from_address": _fixed("from"), "to_address": _fixed("to"), "value": _fixed("value"),
        "input": _fixed("input"), "output": _fixed("output"), "gas": _fixed("gas"),
        "gas_used": _fixed("gasUsed"), "error": _fixed("error"), "call_type": _fixed("type"),
        "reward_type": _fixed("type"),
    }


# --------------------------------------------------------------------------------------------
# The parity API: trace_block(n).

_PARITY_TYPES = frozenset(("call", "create", "suicide", "reward"))


def traces_from_parity(chain_id: int, blocks: Sequence[dict], replies: Sequence[list]
                       ) -> pa.RecordBatch:
    """Trace rows from ``trace_block(n)`` replies (block rewards included).

    ``blocks[i]`` is the header of the block ``replies[i]`` traces (``eth_getBlockByNumber(n,
    false)``). Rows keep the reply's order (transactions in order, each depth-first, then block
    traces); a reply in another order is put in that order.
    """
    heads = _headers(chain_id, blocks, replies, "trace_block")
    rows = _Rows(heads)
    items: list[dict] = []
    for b, reply in enumerate(replies):
        rows.block_starts.append(len(items))
        items += _parity_block(rows, b, reply)
    _parity_columns(rows, items)
    return _batch(rows)


def _parity_block(rows: _Rows, b: int, reply: object) -> list[dict]:
    """Check one block's reply against its header; append its row data; return its items."""
    heads = rows.heads
    n, block_hash, hashes = heads.numbers[b], heads.hashes[b], heads.tx_hashes[b]
    if reply.__class__ is not list:
        raise TransformError(f"block {n}: trace_block reply is {_show(reply)}, not a list")
    for k, item in enumerate(reply):
        if item.__class__ is not dict:
            raise TransformError(f"block {n}: trace {k}: is {_show(item)}, not a JSON object")
    # Checks over the whole reply; item by item only to name the one that fails.
    if not {item.get("blockHash") for item in reply} <= {None, block_hash}:
        for k, item in enumerate(reply):
            h = item.get("blockHash")
            if h is not None and not _same_hex(h, block_hash):
                raise TransformError(
                    f"block {n}: trace {k}: is from block {_show(h)}, expected {block_hash} "
                    "(did the chain reorganize between the header and trace requests?)")
    if not {item.get("blockNumber") for item in reply} <= {None, n}:
        for k, item in enumerate(reply):
            number = item.get("blockNumber")
            if number not in (None, n) and not (isinstance(number, str) and _hex_int(number) == n):
                raise TransformError(
                    f"block {n}: trace {k}: field 'blockNumber' = {_show(number)}, expected {n}")
    positions = [item.get("transactionPosition") for item in reply]
    if not ({p.__class__ for p in positions} <= {int, type(None)}
            and all(0 <= p < len(hashes) for p in set(positions) - {None})):
        for k, pos in enumerate(positions):
            if pos is not None and not (_natural(pos) and pos < len(hashes)):
                raise TransformError(
                    f"block {n}: trace {k}: field 'transactionPosition' = {_show(pos)} is not a "
                    f"position among the header's {len(hashes)} transactions")
    # trace_index order: transactions in order, then block traces (a stable sort keeps each
    # transaction's own depth-first order, which the walk below checks).
    keys = [len(hashes) if p is None else p for p in positions]
    if any(a > c for a, c in zip(keys, keys[1:], strict=False)):
        reply = [item for _, item in sorted(zip(keys, reply, strict=True), key=lambda kv: kv[0])]

    next_tx = 0  # transactions' top-level traces must come in order, none missing
    chain: list[tuple[list[int], bool]] = []  # ancestors of the current trace: (address, failed)
    tx = None
    for k, item in enumerate(reply):
        pos = item.get("transactionPosition")
        address = item.get("traceAddress")
        failed = bool(item.get("error"))
        subtraces = item.get("subtraces")
        if address.__class__ is not list:
            raise TransformError(f"block {n}: trace {k}: field 'traceAddress' = "
                                 f"{_show(address)} is not a list of child indices")
        if not _natural(subtraces):
            raise TransformError(f"block {n}: trace {k}: field 'subtraces' = {_show(subtraces)} "
                                 "is not a count")
        depth = len(address)
        if pos is None:
            if item.get("transactionHash") is not None or depth:
                raise TransformError(f"block {n}: trace {k}: a trace without "
                                     "'transactionPosition' must be a block trace (no "
                                     "transactionHash, traceAddress [])")
        else:
            txh = item.get("transactionHash")
            if txh != hashes[pos] and not _same_hex(txh, hashes[pos]):
                raise TransformError(
                    f"block {n}: trace {k}: field 'transactionHash' = {_show(txh)}, the header's "
                    f"transaction {pos} is {hashes[pos]} (did the chain reorganize between the "
                    "header and trace requests?)")
            if depth == 0:
                if pos != next_tx:
                    raise TransformError(f"block {n}: trace {k}: top-level trace of transaction "
                                         f"{pos}, expected transaction {next_tx}'s")
                next_tx += 1
                tx, chain = pos, []
            elif not _natural(address[-1]):  # the rest equals the (checked) parent's address
                raise TransformError(f"block {n}: trace {k}: field 'traceAddress' = "
                                     f"{_show(address)} is not a list of child indices")
            elif pos != tx or len(chain) < depth or chain[depth - 1][0] != address[:-1]:
                raise TransformError(f"block {n}: transaction {pos} trace {address}: its parent "
                                     "trace does not come before it")
            else:
                failed = failed or chain[depth - 1][1]
                del chain[depth:]
            chain.append((address, failed))
        rows.block.append(b)
        rows.tx.append(pos)
        rows.failed.append(failed)
        rows.subtraces.append(subtraces)
        rows.address += address
        rows.address_offsets.append(len(rows.address))
    if next_tx != len(hashes):
        raise TransformError(
            f"block {n}: traces for {next_tx} transactions, the header has {len(hashes)} (did the "
            "chain reorganize between the header and trace requests, or is the block pruned?)")
    return reply


def _hex_int(v: str) -> int | None:
    try:
        return int(v, 16)
    except ValueError:
        return None


def _parity_columns(rows: _Rows, items: list[dict]) -> None:
    types = [item.get("type") for item in items]
    for i, t in enumerate(types):
        if t not in _PARITY_TYPES:
            raise TransformError(f"{rows.label(i)}: field 'type' = {_show(t)} is not one of "
                                 f"{', '.join(sorted(_PARITY_TYPES))}")
    actions = [item.get("action") for item in items]
    results = [item.get("result") or {} for item in items]
    for i, (a, r) in enumerate(zip(actions, results, strict=True)):
        if a.__class__ is not dict or r.__class__ is not dict:
            what, v = ("action", a) if a.__class__ is not dict else ("result", items[i]["result"])
            raise TransformError(f"{rows.label(i)}: field {what!r} = {_show(v)} is not a JSON "
                                 "object")
    errors = [item.get("error") or None for item in items]  # "" is no error (as ethereum-etl)
    rta = list(zip(types, actions, results, strict=True))
    raw = rows.raw
    raw["trace_type"] = types
    raw["error"] = errors
    raw["call_type"] = [a.get("callType") if t == "call" else None for t, a, _ in rta]
    raw["reward_type"] = [a.get("rewardType") if t == "reward" else None for t, a, _ in rta]
    raw["from_address"] = [a.get("address") if t == "suicide" else a.get("from") if t != "reward"
                           else None for t, a, _ in rta]
    # A failed create created nothing: OpenEthereum gave no result, revm-based nodes (Reth, anvil)
    # give the address it would have had; null either way, as geth says.
    raw["to_address"] = [
        a.get("to") if t == "call" else (None if e else r.get("address")) if t == "create"
        else a.get("refundAddress") if t == "suicide" else a.get("author")
        for (t, a, r), e in zip(rta, errors, strict=True)]
    raw["value"] = [a.get("balance") if t == "suicide" else a.get("value") for t, a, _ in rta]
    raw["input"] = [a.get("input") if t == "call" else a.get("init") if t == "create" else None
                    for t, a, _ in rta]
    raw["output"] = [r.get("output") if t == "call" else r.get("code") if t == "create" else None
                     for t, _, r in rta]
    raw["gas"] = [a.get("gas") if t in ("call", "create") else None for t, a, _ in rta]
    raw["gas_used"] = [r.get("gasUsed") if t in ("call", "create") else None for t, _, r in rta]

    def by_type(call: str, create: str, suicide: str, reward: str) -> FieldName:
        names = {"call": call, "create": create, "suicide": suicide, "reward": reward}
        return lambda i: names[types[i]]

    rows.fields = {
        "from_address": by_type("action.from", "action.from", "action.address", "-"),
        "to_address": by_type("action.to", "result.address", "action.refundAddress",
                              "action.author"),
        "value": by_type("action.value", "action.value", "action.balance", "action.value"),
        "input": by_type("action.input", "action.init", "-", "-"),
        "output": by_type("result.output", "result.code", "-", "-"),
        "gas": _fixed("action.gas"),
        "gas_used": _fixed("result.gasUsed"),
        "error": _fixed("error"),
        "call_type": _fixed("action.callType"),
        "reward_type": _fixed("action.rewardType"),
    }


# --------------------------------------------------------------------------------------------
# Fetching.


class TracingUnsupportedError(RefusedError):
    """The node serves neither trace API (or cannot trace with it): traces cannot be ingested."""


def detect_trace_api(client: RpcClient) -> str:
    """Which trace API the node serves: ``"parity"`` (``trace_block``) or ``"geth"``.

    The parity API is preferred when both are served: it is what ethereum-etl's traces come from
    (same rows, ids and order), it carries block rewards, and its top-level ``gasUsed`` leaves out
    intrinsic gas like every inner frame. Each API is probed on block 0, then block 1, then the
    latest block: geth refuses to trace the genesis block, and a node that prunes state cannot
    trace old blocks, so only an answer that the method is unknown (or no list on any of the
    three) rules an API out. Transport errors (node down) are raised as they are.
    """
    from ingestion.rpc import RpcMethodNotFoundError, RpcResponseError

    problems = []
    for api in TRACE_APIS:
        method = _METHODS[api]
        tried = []
        for block in ("0x0", "0x1", "latest"):
            try:
                result = client.call(method, _params(api, block))
            except RpcMethodNotFoundError as e:
                tried.append(f"not served ({e})")
                break
            except RpcResponseError as e:
                tried.append(f"block {block}: {e}")
                continue
            if isinstance(result, list):
                return api
            tried.append(f"block {block}: returned {_show(result)}, not a list")
        problems.append(f"{method}: " + "; ".join(tried))
    raise TracingUnsupportedError(
        f"node at {client.redacted_url} cannot trace blocks with trace_block (Erigon, Reth, "
        "Nethermind, anvil) nor with debug_traceBlockByNumber and callTracer (geth): "
        + " | ".join(problems))


def fetch_traces(client: RpcClient, numbers: Sequence[int], api: str, *,
                 blocks_per_request: int = 8) -> list[list]:
    """The trace replies for these blocks, in order: input for ``traces_from_<api>``.

    ``blocks_per_request`` bounds each HTTP request: a mainnet block's traces run to megabytes,
    and a batch of 100 would outlast any timeout. A null reply (a lagging node behind a load
    balancer) is asked again, then ``RpcResponseError``; anything else but a list is an error.
    """
    from ingestion.rpc import RpcResponseError

    if api not in _METHODS:
        raise ValueError(f"unknown trace API {api!r}; expected one of {', '.join(TRACE_APIS)}")
    if blocks_per_request < 1:
        raise ValueError(f"blocks_per_request must be >= 1, got {blocks_per_request!r}")
    method = _METHODS[api]
    numbers = [int(n) for n in numbers]
    out: list[list] = []
    for start in range(0, len(numbers), blocks_per_request):
        chunk = numbers[start:start + blocks_per_request]
        calls = [(method, _params(api, hex(n))) for n in chunk]

        def check(i: int, result: Any, chunk: list[int] = chunk) -> str | None:
            if result is None:
                return "null traces"
            if not isinstance(result, list):
                raise RpcResponseError(f"{method} for block {chunk[i]} from {client.redacted_url}: "
                                       f"expected a list, got {_show(result)}")
            return None

        out += client.fetch_checked(calls, check, what="null traces")
    return out
