"""Silver ``tokens``: ERC-20/ERC-721 metadata read from the chain with ``eth_call``.

For each (address, block) :func:`fetch_tokens` calls ``symbol()``, ``name()``, ``decimals()`` and
``totalSupply()`` at that block, all tokens' calls batched together, and decodes the
replies the way ethereum-etl does, so that mainnet's many malformed tokens come out the same:

* ``symbol``/``name`` are read as an ABI ``string``; a reply that is not one is read as a
  ``bytes32`` holding UTF-8 text padded with NULs (MKR, EOS and other early tokens). A token
  that answers neither gets the upper-case ``SYMBOL()``/``NAME()`` tried in the same ways, in
  ethereum-etl's order (string lower, string upper, bytes32 lower, bytes32 upper). NUL characters
  are removed from the text, as ethereum-etl does (``"ETH\\x00\\x00\\x00"`` is ``ETH``): they are
  padding garbage, and Postgres, BigQuery and CSV tools reject them.
* ``decimals`` is a ``uint8``: a reply that does not fit (any non-zero byte above the last) is no
  answer, and ``DECIMALS()`` is tried; none gives null.
* ``totalSupply`` is a ``uint256``: ``total_supply`` is DECIMAL(38,0), null when the value has
  more than 38 digits; ``total_supply_text`` always holds the exact decimal digits.

A call the EVM fails (revert, invalid opcode, out of gas: a JSON-RPC error object about the call)
or that returns too few bytes gives null for that field. A transport failure raises, and so does
an error about the node rather than the call (state pruned, unknown block, method not found):
nulls there would silently empty the table.

Where this deliberately differs from ethereum-etl (tests/unit/test_tokens.py shows each):

* calls are made at the given block (ethereum-etl calls at ``latest`` and labels the row with the
  creation block); ``block_number`` is the block whose post-state was read;
* a well-formed ABI string that is not valid UTF-8 is null; ethereum-etl then re-reads the
  reply's first word (the string's offset, ``0x…20``) as ``bytes32`` text and reports ``" "``;
* an ABI string with non-zero or missing padding after its text keeps its text (ethereum-etl's
  strict decoder rejects it and falls back as above).

Key: ``(chain_id, address, block_number)``: the same address can hold different contracts over
time (CREATE2 after self-destruct) and metadata can be re-read at later blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from ingestion import schemas
from ingestion.rpc import RpcMethodNotFoundError, RpcResponseError
from ingestion.schemas import BIGINT, BOOL, HEX, TEXT, WEI, col, opt

__all__ = [
    "NOT_UTF8",
    "TOKENS",
    "RpcBatchClient",
    "decode_bytes32_text",
    "decode_string",
    "decode_uint",
    "fetch_tokens",
]

TOKENS = schemas.Table(
    name="tokens",
    doc="One row per token contract and block: its ERC-20/ERC-721 metadata as `eth_call` "
        "returned it at that block.",
    key=("chain_id", "address", "block_number"),
    columns=(
        col("chain_id", BIGINT, "EIP-155 chain id."),
        col("address", HEX, "Token contract."),
        col("block_number", BIGINT,
            "Block whose post-state the calls read (the creation block when built from "
            "`contracts`)."),
        opt("symbol", TEXT, "`symbol()` (string or bytes32 text, NULs removed); null if none."),
        opt("name", TEXT, "`name()` (string or bytes32 text, NULs removed); null if none."),
        opt("decimals", BIGINT, "`decimals()` as uint8 (0-255); null if absent or out of range."),
        opt("total_supply", WEI, "`totalSupply()`; null if absent or above DECIMAL(38,0)."),
        opt("total_supply_text", TEXT,
            "`totalSupply()` as exact decimal digits (any uint256); null if absent."),
        opt("is_erc20", BOOL, "From `contracts.is_erc20`; null when not built from contracts."),
        opt("is_erc721", BOOL, "From `contracts.is_erc721`; null when not built from contracts."),
    ),
)

# Selectors: first 4 bytes of keccak256(signature) (a test recomputes them).
_SYMBOL = "0x95d89b41"  # symbol()
_NAME = "0x06fdde03"  # name()
_DECIMALS = "0x313ce567"  # decimals()
_TOTAL_SUPPLY = "0x18160ddd"  # totalSupply()
_SYMBOL_UPPER = "0xf76f8d78"  # SYMBOL()
_NAME_UPPER = "0xa3f4df7e"  # NAME()
_DECIMALS_UPPER = "0x2e0f2625"  # DECIMALS()
_FIRST = (_SYMBOL, _NAME, _DECIMALS, _TOTAL_SUPPLY)

_WORD = 32
_DECIMAL38_MAX = 10**38 - 1
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_DEFAULT_GROUP = 100


class RpcBatchClient(Protocol):
    """What :func:`fetch_tokens` needs of ``ingestion.rpc.RpcClient``."""

    def batch(self, calls: Sequence[tuple[str, list]]) -> list[Any]: ...


# ---------------------------------------------------------------------------------------------
# Decoding return data (the rules of eth-abi 2, which ethereum-etl uses, except where noted).


class _NotUtf8:
    """A well-formed ABI string whose bytes are not UTF-8."""


NOT_UTF8 = _NotUtf8()


def decode_string(data: bytes | None) -> str | _NotUtf8 | None:
    """``data`` as an ABI-encoded ``string``: the text; ``NOT_UTF8`` if the encoding is well
    formed but the bytes are not UTF-8; ``None`` if ``data`` is not such an encoding (too short,
    offset or length beyond the data). Unlike eth-abi, the padding after the text is neither
    required nor checked: the text is what the contract returned."""
    if data is None or len(data) < _WORD:
        return None
    offset = int.from_bytes(data[:_WORD], "big")
    if offset + _WORD > len(data):
        return None
    length = int.from_bytes(data[offset:offset + _WORD], "big")
    start = offset + _WORD
    if start + length > len(data):
        return None
    try:
        return data[start:start + length].decode("utf-8")
    except UnicodeDecodeError:
        return NOT_UTF8


def decode_bytes32_text(data: bytes | None) -> str | None:
    """The first 32 bytes of ``data`` as UTF-8 (NULs kept), ``None`` if shorter or not UTF-8."""
    if data is None or len(data) < _WORD:
        return None
    try:
        return data[:_WORD].decode("utf-8")
    except UnicodeDecodeError:
        return None


def decode_uint(data: bytes | None, bits: int = 256) -> int | None:
    """The first word of ``data`` as a ``uint<bits>``; ``None`` if shorter than a word or if the
    value does not fit (eth-abi's non-zero padding bytes)."""
    if data is None or len(data) < _WORD:
        return None
    value = int.from_bytes(data[:_WORD], "big")
    return value if value < 1 << bits else None


def _clean(text: str | None) -> str | None:
    return None if text is None else text.replace("\x00", "")


def _pick_text(lower: bytes | None, upper: bytes | None) -> str | None:
    """ethereum-etl's order: string lower, string upper, bytes32 lower, bytes32 upper. ``None``
    for a call means it failed (or, for ``upper``, was not needed)."""
    as_string = [decode_string(lower), decode_string(upper)]
    for text in as_string:
        if isinstance(text, str):
            return _clean(text)
    for raw, text in zip((lower, upper), as_string, strict=True):
        # A well-formed string that is not UTF-8 is not re-read as bytes32 (unlike ethereum-etl).
        if text is None and raw is not None and len(raw) >= _WORD:
            return _clean(decode_bytes32_text(raw))
    return None


# ---------------------------------------------------------------------------------------------
# Calling: one batch, with per-call failures isolated.


class _Failed:
    """The call's own failure (a JSON-RPC error object about the execution)."""


_FAILED = _Failed()

# ``RpcClient`` reports a JSON-RPC error object as "...: error <code>: <message>" (the tests
# run a real client against a real server, so a change of that wording fails them loudly).
_ERROR_OBJECT = re.compile(r": error (-?\d+|None): (.*)$", re.DOTALL)
# Errors about the node's state rather than the call: raising beats a table of nulls.
_NODE_PROBLEMS = ("header not found", "missing trie node", "not available", "pruned",
                  "unknown block", "block not found", "no state", "state not found",
                  "historical state", "not synced", "syncing")


def _is_call_failure(err: RpcResponseError) -> bool:
    """Is ``err`` (from a single call) the EVM failing the call, not a node problem or a
    malformed reply? Reverts always are; so is any other error object not about the node."""
    if isinstance(err, RpcMethodNotFoundError):
        return False
    match = _ERROR_OBJECT.search(str(err))
    if match is None:
        return False  # not an error object: a malformed reply
    code, message = match.group(1), match.group(2).lower()
    if code == "3" or "revert" in message:
        return True
    return not any(p in message for p in _NODE_PROBLEMS)


def _tolerant_batch(client: RpcBatchClient, calls: list[tuple[str, list]]) -> list[Any]:
    """``client.batch(calls)``, with ``_FAILED`` for each call the EVM failed.

    ``RpcClient.batch`` raises on the first error object of a batch reply, so a failing batch is
    split in halves until the failing calls stand alone (k failures cost about k*log2(n) extra
    round trips).
    """
    try:
        return list(client.batch(calls))
    except RpcMethodNotFoundError:
        raise
    except RpcResponseError as err:
        if len(calls) == 1:
            if _is_call_failure(err):
                return [_FAILED]
            raise
        mid = len(calls) // 2
        return _tolerant_batch(client, calls[:mid]) + _tolerant_batch(client, calls[mid:])


def _call_all(client: RpcBatchClient, calls: list[tuple[str, list]]) -> list[bytes | None]:
    """Return data of each ``eth_call`` (``None`` where the call failed or returned null)."""
    group = getattr(client, "batch_size", None) or _DEFAULT_GROUP
    out: list[bytes | None] = []
    for start in range(0, len(calls), group):
        chunk = calls[start:start + group]
        for (_, params), result in zip(chunk, _tolerant_batch(client, chunk), strict=True):
            if result is _FAILED or result is None:
                out.append(None)
            elif isinstance(result, str) and result[:2] in ("0x", "0X"):
                try:
                    out.append(bytes.fromhex(result[2:]))
                except ValueError:
                    raise RpcResponseError(f"eth_call {params}: result is not hex: "
                                           f"{result[:80]!r}") from None
            else:
                raise RpcResponseError(f"eth_call {params}: result is not hex: {result!r:.80}")
    return out


def _eth_call(address: str, selector: str, block: int) -> tuple[str, list]:
    return "eth_call", [{"to": address, "data": selector}, hex(block)]


# ---------------------------------------------------------------------------------------------
# The table.


def _targets(contracts: pa.Table | Iterable[tuple[str, int]], chain_id: int, only_tokens: bool
             ) -> list[tuple[str, int, bool | None, bool | None]]:
    """Distinct (address, block, is_erc20, is_erc721), first occurrence wins, input order."""
    if isinstance(contracts, pa.Table):
        table = contracts
        if "chain_id" in table.column_names:
            chains = set(table["chain_id"].to_pylist())
            if chains - {chain_id}:
                raise ValueError(f"contracts of chain(s) {sorted(chains - {chain_id})} given for "
                                 f"chain {chain_id}")
        flags = "is_erc20" in table.column_names and "is_erc721" in table.column_names
        if flags and only_tokens:
            keep = pc.fill_null(pc.or_(table["is_erc20"], table["is_erc721"]), False)
            table = table.filter(keep)
        rows = zip(table["address"].to_pylist(), table["block_number"].to_pylist(),
                   table["is_erc20"].to_pylist() if flags else [None] * table.num_rows,
                   table["is_erc721"].to_pylist() if flags else [None] * table.num_rows,
                   strict=True)
    else:
        rows = ((address, block, None, None) for address, block in contracts)
    seen: set[tuple[str, int]] = set()
    out = []
    for address, block, erc20, erc721 in rows:
        if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
            raise ValueError(f"not an address: {address!r}")
        if isinstance(block, bool) or not isinstance(block, int) or block < 0:
            raise ValueError(f"block number of {address} must be an integer >= 0, got {block!r}")
        key = (address.lower(), block)
        if key not in seen:
            seen.add(key)
            out.append((key[0], block, erc20, erc721))
    return out


def fetch_tokens(client: RpcBatchClient, contracts: pa.Table | Iterable[tuple[str, int]],
                 chain_id: int, *, only_tokens: bool = True) -> pa.Table:
    """The ``tokens`` rows of ``contracts``, read with ``eth_call`` at each row's block.

    ``contracts`` is a ``contracts`` table (or any table with ``address`` and ``block_number``;
    when it has ``is_erc20``/``is_erc721``, only rows with either are fetched unless
    ``only_tokens`` is false, and both are carried over) or ``(address, block_number)`` pairs.
    Duplicate (address, block) pairs give one row. ``client`` is an ``ingestion.rpc.RpcClient``
    (anything with its ``batch``). Raises ``RpcTransportError`` when the node cannot be reached
    and ``RpcResponseError`` for errors that are not the call's own (see the module docstring).
    """
    targets = _targets(contracts, chain_id, only_tokens)
    if not targets:
        return TOKENS.arrow_schema.empty_table()

    first = _call_all(client, [_eth_call(a, s, b) for a, b, _, _ in targets for s in _FIRST])
    replies = [dict(zip(_FIRST, first[i * 4:i * 4 + 4], strict=True))
               for i in range(len(targets))]

    # Upper-case fallbacks, only for the fields the lower-case call did not answer.
    wanted: list[tuple[int, str]] = []
    for i, got in enumerate(replies):
        if not isinstance(decode_string(got[_SYMBOL]), str):
            wanted.append((i, _SYMBOL_UPPER))
        if not isinstance(decode_string(got[_NAME]), str):
            wanted.append((i, _NAME_UPPER))
        if decode_uint(got[_DECIMALS], 8) is None:
            wanted.append((i, _DECIMALS_UPPER))
    if wanted:
        again = _call_all(client, [_eth_call(targets[i][0], s, targets[i][1]) for i, s in wanted])
        for (i, selector), data in zip(wanted, again, strict=True):
            replies[i][selector] = data

    columns: dict[str, list[Any]] = {name: [] for name in TOKENS.column_names}
    for (address, block, erc20, erc721), got in zip(targets, replies, strict=True):
        decimals = decode_uint(got[_DECIMALS], 8)
        if decimals is None:
            decimals = decode_uint(got.get(_DECIMALS_UPPER), 8)
        supply = decode_uint(got[_TOTAL_SUPPLY])
        columns["chain_id"].append(chain_id)
        columns["address"].append(address)
        columns["block_number"].append(block)
        columns["symbol"].append(_pick_text(got[_SYMBOL], got.get(_SYMBOL_UPPER)))
        columns["name"].append(_pick_text(got[_NAME], got.get(_NAME_UPPER)))
        columns["decimals"].append(decimals)
        columns["total_supply"].append(
            Decimal(supply) if supply is not None and supply <= _DECIMAL38_MAX else None)
        columns["total_supply_text"].append(None if supply is None else str(supply))
        columns["is_erc20"].append(erc20)
        columns["is_erc721"].append(erc721)
    return pa.Table.from_pydict(columns, schema=TOKENS.arrow_schema)

