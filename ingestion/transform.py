"""JSON-RPC replies → Arrow record batches for the bronze tables (and the nested bundle).

Pure functions: no Spark, no network. The input is what ``orjson`` makes of the node's replies:
``eth_getBlockByNumber(n, true)`` (full transaction objects) and the receipts of the block's
transactions, hex-string quantities everywhere.

How it is built, for speed: each table declares, column by column, which JSON key of which
object fills it (``_BLOCK_FIELDS``, ``_TRANSACTION_FIELDS``, ``_RECEIPT_FIELDS``, ``_LOG_FIELDS``);
the Arrow type and nullability come from :mod:`ingestion.schemas`. A column is built for the whole
batch at once — one list comprehension over all the batch's objects, then one ``pa.array`` call —
and nested columns (withdrawals, access lists, …) are assembled column-wise from flat child arrays
and offsets. Checks that apply to a whole column (nulls in a required column, 64-bit and
DECIMAL(38,0) range, ``0x`` prefixes) are vectorized; only when one fails is the column scanned
row by row to name the offending block, transaction and field in a :class:`TransformError`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

import pyarrow as pa
import pyarrow.compute as pc

from ingestion import schemas
from ingestion.errors import TransformError
from ingestion.schemas import BIGINT, TIMESTAMP, WEI

__all__ = [
    "RawBlock",
    "TransformError",
    "bundle_batch",
    "dataset_batch",
    "empty_table",
    "split_bundle",
    "table_batches",
]


@dataclass(frozen=True, slots=True)
class RawBlock:
    """One block as the node returned it."""

    block: dict  # eth_getBlockByNumber(n, true) result (full transaction objects)
    receipts: list[dict]  # receipts of its transactions, in transaction-index order
    traces: list | None = None  # the trace API's reply for the block, when traces are read
    trace_api: str | None = None  # which API gave ``traces``: "parity" or "geth"


# --------------------------------------------------------------------------------------------
# Column declarations: which JSON key fills which column. Types and nullability: schemas.py.


@dataclass(frozen=True, slots=True)
class _Field:
    keys: tuple[str, ...]  # the JSON key, then fallbacks tried when it is absent or null
    default: str | None = None  # used when every key is absent or null
    text: bool = False  # a string kept as given (not hex: no 0x check, no lower-casing)
    items: dict[str, _Field] | None = None  # for list<struct>: the struct's fields


def _f(*keys: str, default: str | None = None, text: bool = False,
       items: dict[str, _Field] | None = None) -> _Field:
    return _Field(keys, default, text, items)


_WITHDRAWAL_FIELDS = {
    "index": _f("index"),
    "validator_index": _f("validatorIndex"),
    "address": _f("address"),
    "amount": _f("amount"),
}

_BLOCK_FIELDS = {  # from the block object; block context columns are built apart
    "parent_hash": _f("parentHash"),
    "nonce": _f("nonce"),
    "sha3_uncles": _f("sha3Uncles"),
    "logs_bloom": _f("logsBloom"),
    "transactions_root": _f("transactionsRoot"),
    "state_root": _f("stateRoot"),
    "receipts_root": _f("receiptsRoot"),
    "miner": _f("miner", "author"),  # old Parity replies say "author"
    "difficulty": _f("difficulty"),
    "total_difficulty": _f("totalDifficulty"),
    "size": _f("size"),
    "extra_data": _f("extraData"),
    "gas_limit": _f("gasLimit"),
    "gas_used": _f("gasUsed"),
    "base_fee_per_gas": _f("baseFeePerGas"),
    # transaction_count: len(transactions), built apart
    "withdrawals_root": _f("withdrawalsRoot"),
    "withdrawals": _f("withdrawals", items=_WITHDRAWAL_FIELDS),
    "blob_gas_used": _f("blobGasUsed"),
    "excess_blob_gas": _f("excessBlobGas"),
    "parent_beacon_block_root": _f("parentBeaconBlockRoot"),
    "requests_hash": _f("requestsHash"),
}

_ACCESS_LIST_FIELDS = {
    "address": _f("address"),
    "storage_keys": _f("storageKeys"),
}
_AUTHORIZATION_FIELDS = {
    "chain_id": _f("chainId"),
    "address": _f("address"),
    "nonce": _f("nonce"),
    "y_parity": _f("yParity", "v"),
    "r": _f("r"),
    "s": _f("s"),
    "authority": _f("authority"),
}

_TRANSACTION_FIELDS = {  # from the transaction object
    "transaction_index": _f("transactionIndex"),
    "transaction_hash": _f("hash"),
    "nonce": _f("nonce"),
    "from_address": _f("from"),
    "to_address": _f("to"),
    "value": _f("value"),
    "gas": _f("gas"),
    "gas_price": _f("gasPrice"),
    "input": _f("input"),
    "max_fee_per_gas": _f("maxFeePerGas"),
    "max_priority_fee_per_gas": _f("maxPriorityFeePerGas"),
    "transaction_type": _f("type", default="0x0"),  # absent in pre-Berlin replies: legacy
    "max_fee_per_blob_gas": _f("maxFeePerBlobGas"),
    "blob_versioned_hashes": _f("blobVersionedHashes"),
    "access_list": _f("accessList", items=_ACCESS_LIST_FIELDS),
    "authorization_list": _f("authorizationList", items=_AUTHORIZATION_FIELDS),
}

_RECEIPT_FIELDS = {  # from the transaction's receipt
    "receipt_status": _f("status"),
    "receipt_gas_used": _f("gasUsed"),
    "receipt_cumulative_gas_used": _f("cumulativeGasUsed"),
    "receipt_effective_gas_price": _f("effectiveGasPrice"),
    "receipt_contract_address": _f("contractAddress"),
    "receipt_root": _f("root"),
    "receipt_blob_gas_used": _f("blobGasUsed"),
    "receipt_blob_gas_price": _f("blobGasPrice"),
    "l1_fee": _f("l1Fee"),
    "l1_gas_used": _f("l1GasUsed"),
    "l1_gas_price": _f("l1GasPrice"),
    "l1_fee_scalar": _f("l1FeeScalar", text=True),
}

_LOG_FIELDS = {  # from each receipt log; transaction_index/hash come from the transaction
    "log_index": _f("logIndex"),
    "address": _f("address"),
    "data": _f("data"),
    "topics": _f("topics"),
}

def _check_declarations() -> None:
    """Every declared column exists in its table (fails at import if schemas.py drifts)."""
    for table, *specs in (
        (schemas.BLOCKS, _BLOCK_FIELDS),
        (schemas.TRANSACTIONS, _TRANSACTION_FIELDS, _RECEIPT_FIELDS),
        (schemas.LOGS, _LOG_FIELDS),
    ):
        names = set(table.column_names)
        for spec in specs:
            unknown = set(spec) - names
            assert not unknown, f"{table.name}: undeclared columns {sorted(unknown)}"


_check_declarations()


# --------------------------------------------------------------------------------------------
# Building one column for a whole batch.

_INT64_MAX = 2**63 - 1
_WEI_MAX = 10**38 - 1
_TS_MAX = _INT64_MAX // 1_000_000
_QUANTITY_TYPES = (BIGINT, WEI, TIMESTAMP)
_TYPE_LABEL = {BIGINT: "BIGINT", WEI: "DECIMAL(38,0)", TIMESTAMP: "a microsecond TIMESTAMP"}


@dataclass(frozen=True, slots=True)
class _Rows:
    """The JSON objects that one table's (or nested list's) rows come from, one per row."""

    objs: Sequence[dict]
    label: Callable[[int], str]  # names row i in an error, e.g. "block 12: transaction 3"


def _extract(objs: Sequence[dict], spec: _Field) -> list:
    key = spec.keys[0]
    if len(spec.keys) == 1 and spec.default is None:
        return [o.get(key) for o in objs]
    raw = [o.get(key) for o in objs]
    for alt in spec.keys[1:]:
        if None in raw:
            raw = [o.get(alt) if v is None else v for v, o in zip(raw, objs, strict=True)]
    if spec.default is not None and None in raw:
        raw = [spec.default if v is None else v for v in raw]
    return raw


class _Invalid(Exception):
    """A vectorized check failed; the row-by-row diagnosis names the row."""


def _column(rows: _Rows, spec: _Field, type_: pa.DataType, nullable: bool) -> pa.Array:
    try:
        raw = _extract(rows.objs, spec)
    except AttributeError as e:  # an element that is not a JSON object
        _diagnose(rows, spec, type_, nullable, e)
    if pa.types.is_list(type_) and pa.types.is_struct(type_.value_type):
        return _struct_list(rows, raw, spec, type_, nullable)
    try:
        return _convert(raw, spec, type_, nullable)
    except (_Invalid, TypeError, ValueError, OverflowError, pa.ArrowException) as e:
        _diagnose(rows, spec, type_, nullable, e)


def _convert(raw: list, spec: _Field, type_: pa.DataType, nullable: bool) -> pa.Array:
    if type_ in _QUANTITY_TYPES:
        if nullable:
            ints = [None if v is None else int(v, 16) for v in raw]
        else:
            ints = [int(v, 16) for v in raw]  # TypeError on None
        if type_ == TIMESTAMP:
            arr = pa.array([None if s is None else s * 1_000_000 for s in ints], TIMESTAMP)
            check = arr.cast(BIGINT)
        elif type_ == WEI:
            try:  # fast path: every value fits 64 bits (about 5x faster than Python ints)
                check = pa.array(ints, BIGINT)
                arr = check.cast(WEI)
            except OverflowError:
                arr = pa.array(ints, WEI)  # ArrowInvalid beyond 38 digits
                check = arr
        else:
            arr = check = pa.array(ints, BIGINT)  # OverflowError beyond int64
        if arr.null_count < len(arr) and pc.min(check).as_py() < 0:
            raise _Invalid("negative")
        return arr
    if pa.types.is_string(type_):
        arr = pa.array(raw, pa.string())
        if not nullable and arr.null_count:
            raise _Invalid("null")
        return arr if spec.text else _hex(arr)
    if pa.types.is_list(type_) and pa.types.is_string(type_.value_type):
        if str in set(map(type, raw)):  # pyarrow would take a string for a list of characters
            raise _Invalid("not a list")
        arr = pa.array(raw, type_)
        if not nullable and arr.null_count:
            raise _Invalid("null")
        values = arr.values  # arr is fresh: offsets start at 0
        if values.null_count:
            raise _Invalid("null element")
        return pa.ListArray.from_arrays(
            arr.offsets, _hex(values), type=type_, mask=arr.is_null() if arr.null_count else None
        )
    raise NotImplementedError(f"no conversion to {type_}")


def _hex(arr: pa.Array) -> pa.Array:
    """Lower-cased hex strings; _Invalid unless every value starts with 0x."""
    if len(arr) and arr.null_count < len(arr) and not pc.all(pc.starts_with(arr, "0x")).as_py():
        raise _Invalid("not hex")
    return pc.ascii_lower(arr)


def _struct_list(rows: _Rows, raw: list, spec: _Field, type_: pa.ListType,
                 nullable: bool) -> pa.Array:
    """A list<struct> column assembled from flat child columns (one conversion per child)."""
    entries: list = []
    offsets = [0]
    nulls = []
    for v in raw:
        if v is None:
            nulls.append(True)
        elif v.__class__ is list:
            entries += v
            nulls.append(False)
        else:
            _diagnose(rows, spec, type_, nullable, None)
        offsets.append(len(entries))
    if not nullable and any(nulls):
        _diagnose(rows, spec, type_, nullable, None)
    key = spec.keys[0]

    def label(j: int) -> str:  # entry j belongs to row i
        i = bisect_right(offsets, j) - 1
        return f"{rows.label(i)}: {key}[{j - offsets[i]}]"

    item_rows = _Rows(entries, label)
    struct_type: pa.StructType = type_.value_type
    children = [
        _column(item_rows, spec.items[f.name], f.type, f.nullable) for f in struct_type
    ]
    structs = pa.StructArray.from_arrays(children, fields=list(struct_type))
    mask = pa.array(nulls, pa.bool_()) if any(nulls) else None
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), structs, type=type_, mask=mask)


# Row-by-row diagnosis (the slow path, only taken when a column fails).


def _diagnose(rows: _Rows, spec: _Field, type_: pa.DataType, nullable: bool,
              cause: BaseException | None) -> NoReturn:
    raw = None
    for i, obj in enumerate(rows.objs):
        if not isinstance(obj, dict):
            raise TransformError(f"{rows.label(i)}: is {_show(obj)}, not a JSON object")
        raw = _extract([obj], spec)[0]
        problem = _problem(raw, spec, type_, nullable)
        if problem is None:
            continue
        key = spec.keys[0]
        if raw is None and not any(k in obj for k in spec.keys):
            raise TransformError(f"{rows.label(i)}: required field {key!r} is missing")
        raise TransformError(f"{rows.label(i)}: field {key!r} = {_show(raw)} {problem}")
    raise TransformError(  # not expected: the vectorized and row-wise checks disagree
        f"{rows.label(0) if rows.objs else 'empty batch'}…: field {spec.keys[0]!r}: {cause}"
    ) from cause


def quantity_problem(v: object, type_: pa.DataType, nullable: bool) -> str | None:
    """Why a hex quantity does not fit a BIGINT, DECIMAL(38,0) or TIMESTAMP column, or None."""
    if v is None:
        return None if nullable else "is null"
    if not isinstance(v, str):
        return "is not a hex string"
    try:
        n = int(v, 16)
    except ValueError:
        return "is not a hex quantity"
    if n < 0:
        return "is negative"
    limit = {BIGINT: _INT64_MAX, WEI: _WEI_MAX, TIMESTAMP: _TS_MAX}[type_]
    return f"does not fit {_TYPE_LABEL[type_]}" if n > limit else None


def _problem(v: object, spec: _Field, type_: pa.DataType, nullable: bool) -> str | None:
    """Why a single value does not fit its column, or None."""
    if v is None:
        return None if nullable else "is null"
    if type_ in _QUANTITY_TYPES:
        return quantity_problem(v, type_, nullable)
    if pa.types.is_string(type_):
        if not isinstance(v, str):
            return "is not a string"
        return None if spec.text or v.startswith("0x") else "is not 0x-prefixed hex"
    if pa.types.is_list(type_):
        if not isinstance(v, list):
            return "is not a list"
        if pa.types.is_string(type_.value_type):
            for j, item in enumerate(v):
                p = _problem(item, spec, type_.value_type, False)
                if p is not None:
                    return f"(element {j} {p})"
        return None
    return None


def _show(v: object) -> str:
    s = repr(v)
    return s if len(s) <= 90 else s[:80] + "…" + s[-8:]


def _table_columns(table: schemas.Table, fields: dict[str, _Field], rows: _Rows,
                   only: Sequence[str] | None = None) -> dict[str, pa.Array]:
    out = {}
    try:  # the keys any row has: a column whose keys none has is all null, built at once
        present = set().union(*rows.objs)
    except TypeError:  # a row that is not an object: _column names it
        present = None
    for column in table.columns:
        spec = fields.get(column.name)
        if spec is None or (only is not None and column.name not in only):
            continue
        if column.nullable and present is not None and present.isdisjoint(spec.keys):
            out[column.name] = pa.nulls(len(rows.objs), column.type)  # no row has the field
        else:
            out[column.name] = _column(rows, spec, column.type, column.nullable)
    return out


# --------------------------------------------------------------------------------------------
# The batch: blocks, their transactions, receipts and logs, flattened once.


@dataclass
class _Batch:
    blocks: list[dict]
    numbers: list[int]
    context: dict[str, pa.Array]  # chain_id, block_number, block_hash, block_timestamp
    txs: list[dict]
    receipts: list[dict]
    tx_block: list[int]  # block position of each transaction row
    tx_pos: list[int]  # position of each transaction in its block
    tx_offsets: list[int]  # per block, into txs
    logs: list[dict]
    log_tx: list[int]  # transaction row of each log
    log_offsets: list[int]  # per block, into logs
    receipts_matched: bool = False

    def block_label(self, i: int) -> str:
        return f"block {self.numbers[i]}"

    def tx_label(self, j: int) -> str:
        return f"block {self.numbers[self.tx_block[j]]}: transaction {self.tx_pos[j]}"

    def receipt_label(self, j: int) -> str:
        return f"block {self.numbers[self.tx_block[j]]}: receipt {self.tx_pos[j]}"

    def log_label(self, k: int) -> str:
        return self.log_label_of(self.log_tx, k)

    def log_label_of(self, log_tx: list[int], k: int) -> str:
        """Names log k, whose transaction row is log_tx[k]."""
        t = log_tx[k]
        first = bisect_left(log_tx, self.tx_offsets[self.tx_block[t]])  # first log of its block
        block = self.numbers[self.tx_block[t]]
        return f"block {block}: log {k - first} (transaction {self.tx_pos[t]})"


def _prepare(chain_id: int, raw_blocks: Sequence[RawBlock], *, with_txs: bool,
             with_receipts: bool) -> _Batch:
    blocks = []
    for i, rb in enumerate(raw_blocks):
        if not isinstance(rb.block, dict):
            raise TransformError(f"block at batch position {i}: node returned {_show(rb.block)}")
        blocks.append(rb.block)

    def position_label(i: int) -> str:
        h = blocks[i].get("hash")
        return f"block at batch position {i}" + (f" (hash {h})" if h else "")

    number_array = _column(_Rows(blocks, position_label), _f("number"), BIGINT, False)
    numbers = number_array.to_pylist()
    block_rows = _Rows(blocks, lambda i: f"block {numbers[i]}")
    try:
        chain = pa.array([chain_id] * len(blocks), BIGINT)
    except (OverflowError, TypeError, pa.ArrowException) as e:
        raise TransformError(f"chain id {chain_id!r} does not fit BIGINT") from e
    context = {
        "chain_id": chain,
        "block_number": number_array,
        "block_hash": _column(block_rows, _f("hash"), schemas.HEX, False),
        "block_timestamp": _column(block_rows, _f("timestamp"), TIMESTAMP, False),
    }
    batch = _Batch(blocks, numbers, context, [], [], [], [], [0], [], [], [0])
    if not with_txs:
        return batch

    txs, tx_block, tx_pos, receipts = batch.txs, batch.tx_block, batch.tx_pos, batch.receipts
    expected_hashes: list = []  # the block hash, once per receipt
    for b, (rb, block) in enumerate(zip(raw_blocks, blocks, strict=True)):
        n = numbers[b]
        btxs = block.get("transactions")
        if btxs.__class__ is not list:
            raise TransformError(f"block {n}: field 'transactions' = {_show(btxs)} is not a list")
        if btxs and btxs[0].__class__ is not dict:
            raise TransformError(
                f"block {n}: transactions are {_show(btxs[0])}…, not objects "
                "(fetch the block with full transactions)")
        txs += btxs
        tx_block += [b] * len(btxs)
        tx_pos += range(len(btxs))
        batch.tx_offsets.append(len(txs))
        if with_receipts:
            rcpts = rb.receipts
            if not isinstance(rcpts, (list, tuple)):
                raise TransformError(f"block {n}: receipts are {_show(rcpts)}, not a list")
            if len(rcpts) != len(btxs):
                raise TransformError(
                    f"block {n}: {len(btxs)} transactions but {len(rcpts)} receipts")
            receipts += rcpts
            expected_hashes += [block.get("hash")] * len(rcpts)
    if with_receipts:
        _collect_logs(batch, expected_hashes)
    return batch


def _collect_logs(batch: _Batch, expected_hashes: list) -> None:
    """Flatten the receipts' logs, checking that receipts and logs are from the same block."""
    receipts = batch.receipts
    receipt_block_hashes = logs = None
    try:
        receipt_block_hashes = [r.get("blockHash") for r in receipts]
        log_lists = [r.get("logs") for r in receipts]
        logs = [lg for lgs in log_lists for lg in lgs]
        log_tx = [j for j, lgs in enumerate(log_lists) for _ in lgs]
        log_block_hashes = [lg.get("blockHash") for lg in logs]
    except (AttributeError, TypeError):
        logs = None  # something is not an object or not a list: found below
    if receipt_block_hashes != expected_hashes or logs is None:
        for j, r in enumerate(receipts):
            where = f"block {batch.numbers[batch.tx_block[j]]}: receipt {batch.tx_pos[j]}"
            if r.__class__ is not dict:
                raise TransformError(f"{where} is {_show(r)}, not an object")
            if _other_block(r.get("blockHash"), expected_hashes[j]):
                raise TransformError(
                    f"{where} is from block {r.get('blockHash')}, expected {expected_hashes[j]} "
                    "(did the chain reorganize between the block and receipt requests?)")
            lgs = r.get("logs")
            if lgs.__class__ is not list:
                if "logs" not in r:
                    raise TransformError(f"{where}: required field 'logs' is missing")
                raise TransformError(f"{where}: field 'logs' = {_show(lgs)} is not a list")
            for k, lg in enumerate(lgs):
                if lg.__class__ is not dict:
                    raise TransformError(f"{where}: log {k} is {_show(lg)}, not an object")
        if logs is None:
            raise TransformError(f"blocks {batch.numbers[0]}…: malformed receipts")
    expected_log_hashes = [expected_hashes[j] for j in log_tx]
    if log_block_hashes != expected_log_hashes:
        for k, (h, e) in enumerate(zip(log_block_hashes, expected_log_hashes, strict=True)):
            if _other_block(h, e):
                raise TransformError(f"{batch.log_label_of(log_tx, k)} is from block {h}, "
                                     f"expected {e}")
    batch.logs, batch.log_tx = logs, log_tx
    batch.log_offsets = [bisect_left(log_tx, t) for t in batch.tx_offsets]


def _other_block(block_hash: object, expected: object) -> bool:
    """A reply's blockHash names another block (absent is fine, case is ignored)."""
    return block_hash is not None and block_hash != expected and not _same_hex(block_hash, expected)


def _same_hex(a: object, b: object) -> bool:
    return isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower()


def _repeat(context: dict[str, pa.Array], rows: list[int] | pa.Array) -> dict[str, pa.Array]:
    """The block context columns repeated for child rows (rows[i] = block position)."""
    indices = rows if isinstance(rows, pa.Array) else pa.array(rows, pa.int32())
    return {name: arr.take(indices) for name, arr in context.items()}


# --------------------------------------------------------------------------------------------
# Tables.


def _blocks(batch: _Batch) -> dict[str, pa.Array]:
    rows = _Rows(batch.blocks, batch.block_label)
    cols = {**batch.context, **_table_columns(schemas.BLOCKS, _BLOCK_FIELDS, rows)}
    counts = []
    for i, block in enumerate(batch.blocks):
        txs = block.get("transactions")
        if txs.__class__ is not list:
            raise TransformError(
                f"block {batch.numbers[i]}: field 'transactions' = {_show(txs)} is not a list")
        counts.append(len(txs))
    cols["transaction_count"] = pa.array(counts, BIGINT)
    return cols


def _transactions(batch: _Batch, only: Sequence[str] | None = None) -> dict[str, pa.Array]:
    """Transaction columns (``only``: a subset, e.g. what the logs need)."""
    tx_rows = _Rows(batch.txs, batch.tx_label)
    cols = _table_columns(schemas.TRANSACTIONS, _TRANSACTION_FIELDS, tx_rows, only)
    if batch.txs:
        positions = cols["transaction_index"].to_pylist()
        if positions != batch.tx_pos:
            j = next(j for j, (a, b) in enumerate(zip(positions, batch.tx_pos, strict=True))
                     if a != b)
            raise TransformError(
                f"{batch.tx_label(j)}: field 'transactionIndex' = {positions[j]}, "
                "expected its position in the block")
    if only is None or any(c in _RECEIPT_FIELDS for c in only):
        _match_receipts(batch, cols["transaction_hash"])
        receipt_rows = _Rows(batch.receipts, batch.receipt_label)
        cols.update(_table_columns(schemas.TRANSACTIONS, _RECEIPT_FIELDS, receipt_rows, only))
    if only is not None:
        return cols
    return {**_repeat(batch.context, batch.tx_block), **cols}


def _match_receipts(batch: _Batch, tx_hashes: pa.Array) -> None:
    """Each receipt is for the transaction at its position (``tx_hashes``: lower-cased)."""
    if batch.receipts_matched:
        return
    receipt_hashes = [r.get("transactionHash") for r in batch.receipts]
    try:
        matched = pc.ascii_lower(pa.array(receipt_hashes, pa.string())).equals(tx_hashes)
    except (pa.ArrowException, TypeError):
        matched = False
    if not matched:
        for j, (t, r) in enumerate(zip(tx_hashes.to_pylist(), receipt_hashes, strict=True)):
            if not _same_hex(t, r):
                raise TransformError(
                    f"block {batch.numbers[batch.tx_block[j]]}: receipt {batch.tx_pos[j]} is for "
                    f"transaction {r}, expected {t}")
    batch.receipts_matched = True


def _logs(batch: _Batch, txs: dict[str, pa.Array]) -> dict[str, pa.Array]:
    """Log columns; ``txs`` must hold transaction_index and transaction_hash."""
    _match_receipts(batch, txs["transaction_hash"])
    rows = _Rows(batch.logs, batch.log_label)
    cols = _table_columns(schemas.LOGS, _LOG_FIELDS, rows)
    owners = pa.array(batch.log_tx, pa.int32())
    cols["transaction_index"] = txs["transaction_index"].take(owners)
    cols["transaction_hash"] = txs["transaction_hash"].take(owners)
    log_blocks = pa.array(batch.tx_block, pa.int32()).take(owners)
    # The key (chain_id, block_number, log_index) must be unique: indices rise within a block.
    index = cols["log_index"]
    if len(index) > 1:
        ok = pc.or_(pc.not_equal(log_blocks[1:], log_blocks[:-1]),
                    pc.greater(index[1:], index[:-1]))
        if not pc.all(ok).as_py():
            k = ok.to_pylist().index(False) + 1
            raise TransformError(
                f"{batch.log_label(k)}: field 'logIndex' = {index[k]} does not follow "
                f"{index[k - 1]} (log indices must rise within a block)")
    return {**_repeat(batch.context, log_blocks), **cols}


def _record_batch(table: schemas.Table, cols: dict[str, pa.Array]) -> pa.RecordBatch:
    schema = table.arrow_schema
    return pa.RecordBatch.from_arrays([cols[name] for name in schema.names], schema=schema)


def _struct_list_column(table: schemas.Table, cols: dict[str, pa.Array],
                        offsets: list[int]) -> pa.Array:
    """A table's rows grouped per block: list<struct<all columns>>, one list per block."""
    fields = list(table.arrow_schema)
    structs = pa.StructArray.from_arrays([cols[f.name] for f in fields], fields=fields)
    list_type = schemas.list_of(pa.struct(fields))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), structs, type=list_type)


# --------------------------------------------------------------------------------------------
# Public API.


def table_batches(chain_id: int, blocks: Sequence[RawBlock],
                  tables: Sequence[str] = schemas.CORE_TABLES) -> dict[str, pa.RecordBatch]:
    """The bronze tables' rows for these blocks, for each of ``tables`` (default the three
    core tables; ``traces`` needs ``RawBlock.traces``, ``blocks`` alone needs no receipts).

    Each batch's schema is exactly ``schemas.TABLES[name].arrow_schema``.
    """
    out: dict[str, pa.RecordBatch] = {}
    with_txs = "transactions" in tables or "logs" in tables
    batch = _prepare(chain_id, blocks, with_txs=with_txs, with_receipts=with_txs)
    if "blocks" in tables:
        out["blocks"] = _record_batch(schemas.BLOCKS, _blocks(batch))
    if with_txs:
        txs = _transactions(batch)
        if "transactions" in tables:
            out["transactions"] = _record_batch(schemas.TRANSACTIONS, txs)
        if "logs" in tables:
            out["logs"] = _record_batch(schemas.LOGS, _logs(batch, txs))
    if "traces" in tables:
        out["traces"] = trace_batch(chain_id, blocks)
    return out


def trace_batch(chain_id: int, blocks: Sequence[RawBlock]) -> pa.RecordBatch:
    """The ``traces`` rows of blocks read with their traces (``RawBlock.traces``)."""
    from ingestion.datasets.traces import traces_from_geth, traces_from_parity

    apis = {rb.trace_api for rb in blocks}
    if len(apis) != 1 or None in apis or any(rb.traces is None for rb in blocks):
        raise ValueError("trace rows need every block read with its traces, from one trace API")
    build = traces_from_parity if apis == {"parity"} else traces_from_geth
    return build(chain_id, [rb.block for rb in blocks], [rb.traces for rb in blocks])


def bundle_batch(chain_id: int, blocks: Sequence[RawBlock]) -> pa.RecordBatch:
    """One row per block: the block's columns, its ``transactions`` and its ``logs`` as lists.

    Schema: exactly ``schemas.BUNDLE_SCHEMA``; :func:`split_bundle` is the inverse.
    """
    batch = _prepare(chain_id, blocks, with_txs=True, with_receipts=True)
    txs = _transactions(batch)
    cols = _blocks(batch)
    cols["transactions"] = _struct_list_column(schemas.TRANSACTIONS, txs, batch.tx_offsets)
    cols["logs"] = _struct_list_column(schemas.LOGS, _logs(batch, txs), batch.log_offsets)
    schema = schemas.BUNDLE_SCHEMA
    return pa.RecordBatch.from_arrays([cols[name] for name in schema.names], schema=schema)


def dataset_batch(dataset: str, chain_id: int, blocks: Sequence[RawBlock]) -> pa.RecordBatch:
    """The rows of one source dataset (``schemas.DATASETS``), computing only what it needs.

    ``blocks`` needs no receipts (``RawBlock.receipts`` may be empty); the others do.
    """
    if dataset == "blocks":
        batch = _prepare(chain_id, blocks, with_txs=False, with_receipts=False)
        return _record_batch(schemas.BLOCKS, _blocks(batch))
    if dataset == "transactions":
        batch = _prepare(chain_id, blocks, with_txs=True, with_receipts=True)
        return _record_batch(schemas.TRANSACTIONS, _transactions(batch))
    if dataset == "logs":
        batch = _prepare(chain_id, blocks, with_txs=True, with_receipts=True)
        txs = _transactions(batch, only=("transaction_index", "transaction_hash"))
        return _record_batch(schemas.LOGS, _logs(batch, txs))
    if dataset == schemas.BUNDLE_NAME:
        return bundle_batch(chain_id, blocks)
    if dataset == "traces":
        return trace_batch(chain_id, blocks)
    raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(schemas.DATASETS)}")


def split_bundle(bundle: pa.Table | pa.RecordBatch) -> dict[str, pa.Table]:
    """The three bronze tables from bundle rows, each cast to exactly its declared schema."""
    batches = [bundle] if isinstance(bundle, pa.RecordBatch) else bundle.to_batches()
    parts: dict[str, list[pa.Table]] = {name: [] for name in schemas.CORE_TABLES}
    block_names = schemas.BLOCKS.column_names
    for b in batches:
        parts["blocks"].append(pa.Table.from_batches([b.select(block_names)]))
        for name in ("transactions", "logs"):
            items: pa.StructArray = b.column(name).flatten()  # respects offsets and slices
            children = items.flatten()  # (StructArray.field would ignore the struct's offset)
            by_name = {f.name: children[i] for i, f in enumerate(items.type)}
            names = schemas.TABLES[name].column_names
            parts[name].append(pa.Table.from_arrays([by_name[n] for n in names], names=names))
    out = {}
    for name, tables in parts.items():
        schema = schemas.TABLES[name].arrow_schema
        out[name] = (pa.concat_tables([t.cast(schema) for t in tables]) if tables
                     else schema.empty_table())
    return out


def empty_table(name: str) -> pa.Table:
    """A table with no rows and the declared schema of a bronze table or the bundle."""
    return schemas.arrow_schema_of(name).empty_table()
