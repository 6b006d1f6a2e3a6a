"""Silver ``contracts``: one row per contract creation that took effect, derived from traces.

A contract exists where a ``create`` trace succeeded *and* every one of its ancestors did too
(the bronze traces' ``status`` is 0 when any ancestor failed, since a failed frame reverts the
creations under it). For such a trace ``to_address`` is the new contract and ``output`` its
deployed (runtime) bytecode.

**Function selectors.** ethereum-etl disassembles the runtime code and keeps every ``PUSH4``
operand of the first basic block (everything before the first ``JUMPDEST`` instruction). For
contracts compiled by solc before ~0.5 that block *is* the function dispatcher, so this yields
the selectors (plus ``0xffffffff``, the mask old solc applied to ``msg.sig``). Modern solc starts
the runtime code with a contract-wide ``CALLVALUE`` check whose ``JUMPDEST`` ends the first block
before any selector, and large contracts split the dispatcher into several blocks (binary search
on the selector), so ethereum-etl reports no or only some selectors for them and calls DAI or any
OpenZeppelin 4 token neither ERC-20 nor ERC-721 (ethereum-etl issue #349). Those selectors are
real functions of the deployed code, so :func:`function_sighashes` returns ethereum-etl's set
*plus* every ``PUSH4`` constant compared for equality in the dispatcher idioms solc emits
anywhere in the code (``DUP1 PUSH4 s EQ`` and ``PUSH4 s DUP2 EQ``). On code whose dispatcher
fits in the first block (the pre-0.5 era ethereum-etl was written for) both sets are the same:
the tests check it on ethereum-etl's mainnet fixtures. Selectors behind other dispatch schemes
(Vyper's hash-bucket dispatch, hand-written assembly) are found only if they sit in the first
basic block, as in ethereum-etl; so are selectors with a leading zero byte, which modern solc
pushes with a shorter PUSH (``PUSH3 0xf55d9d`` for ``0x00f55d9d``) and ethereum-etl misses too
(no ERC-20 or ERC-721 selector has one).

**Key.** ``(chain_id, block_number, transaction_index, trace_address)``: the position of the
creating frame, which is also how a row joins back to the traces. ``(chain_id, address)`` is not
unique: since CREATE2, a contract that self-destructed can be created again at the same address
(possibly in the same block, by a later transaction), and both creations are facts of the chain.
Within one transaction an address is created at most once, so
``(chain_id, block_number, transaction_index, address)`` is unique too.
"""

from __future__ import annotations

from collections.abc import Collection

import pyarrow as pa
import pyarrow.compute as pc
from eth_utils import keccak

from ingestion import schemas
from ingestion.schemas import BIGINT, BOOL, HEX, col, list_of, opt
from ingestion.transform import TransformError

__all__ = [
    "CONTRACTS",
    "contracts_from_traces",
    "function_sighashes",
    "is_erc20",
    "is_erc721",
]

CONTRACTS = schemas.Table(
    name="contracts",
    doc="One row per contract creation that took effect (a successful `create` trace none of "
        "whose ancestors failed), from the traces.",
    key=("chain_id", "block_number", "transaction_index", "trace_address"),
    columns=(
        *schemas.BLOCK_CONTEXT,
        col("transaction_index", BIGINT, "Position of the creating transaction in the block."),
        col("transaction_hash", HEX, "Creating transaction."),
        col("trace_address", list_of(BIGINT),
            "Path of the creating frame in the transaction's call tree (empty: the transaction "
            "itself is the creation)."),
        col("address", HEX, "Address of the new contract."),
        col("creator_address", HEX,
            "Account that executed the creation: the sender for a creation transaction, the "
            "factory contract for CREATE/CREATE2 from code."),
        opt("transaction_from_address", HEX,
            "Sender of the creating transaction (from its root trace); null if the input lacked "
            "that trace."),
        col("bytecode", HEX, "Deployed runtime bytecode (`0x` when the constructor returned none)."),
        col("bytecode_hash", HEX, "Keccak-256 of the bytecode: the account's code hash."),
        col("function_sighashes", list_of(HEX),
            "Sorted 4-byte function selectors found in the bytecode's dispatcher "
            "(ethereum-etl's set, extended to modern solc dispatchers)."),
        col("is_erc20", BOOL,
            "Has the selectors of totalSupply, balanceOf, transfer, transferFrom, approve and "
            "allowance (ethereum-etl's rule)."),
        col("is_erc721", BOOL,
            "Has balanceOf, ownerOf, approve and transfer or transferFrom (ethereum-etl's "
            "rule, which omits the rest of EIP-721 so that CryptoKitties qualifies)."),
    ),
)

# Selectors: first 4 bytes of keccak256(signature) (a test recomputes them).
_TOTAL_SUPPLY = "0x18160ddd"  # totalSupply()
_BALANCE_OF = "0x70a08231"  # balanceOf(address)
_TRANSFER = "0xa9059cbb"  # transfer(address,uint256)
_TRANSFER_FROM = "0x23b872dd"  # transferFrom(address,address,uint256)
_APPROVE = "0x095ea7b3"  # approve(address,uint256)
_ALLOWANCE = "0xdd62ed3e"  # allowance(address,address)
_OWNER_OF = "0x6352211e"  # ownerOf(uint256)

_ERC20 = frozenset({_TOTAL_SUPPLY, _BALANCE_OF, _TRANSFER, _TRANSFER_FROM, _APPROVE, _ALLOWANCE})

# Opcodes the scan needs.
_JUMPDEST = 0x5B
_PUSH1 = 0x60
_PUSH4 = 0x63
_PUSH32 = 0x7F
_EQ = 0x14
_DUP1 = 0x80
_DUP2 = 0x81


def _code_bytes(bytecode: str) -> bytes:
    """The code as bytes. Like ethereum-etl (whose cleaner and disassembler each strip one
    ``0x``), a doubled ``0x0x`` prefix is tolerated; anything else that is not hex raises."""
    text = bytecode.strip()
    for _ in range(2):
        if text.startswith("0x"):
            text = text[2:]
    return bytes.fromhex(text)


def function_sighashes(bytecode: str | None) -> list[str]:
    """Sorted, distinct ``0x`` 4-byte function selectors of runtime ``bytecode``.

    Walks the code instruction by instruction (PUSH1..PUSH32 carry 1..32 data bytes, which are
    skipped, not decoded as opcodes; a PUSH cut short by the end of the code is not a PUSH), and
    collects (a) every complete ``PUSH4`` operand before the first ``JUMPDEST`` instruction,
    which is ethereum-etl's rule, and (b) every ``PUSH4`` operand in the dispatcher idioms
    ``DUP1 PUSH4 s EQ`` or ``PUSH4 s DUP2 EQ`` anywhere in the code (see the module docstring).
    ``None`` or ``0x`` gives ``[]``; text that is not hex raises ``ValueError``.
    """
    if bytecode is None:
        return []
    code = _code_bytes(bytecode)
    found: set[bytes] = set()
    # Instructions as (opcode, operand); the dispatcher idioms need a 3-instruction window.
    ops: list[int] = []
    operands: list[bytes] = []
    in_first_block = True
    n = len(code)
    i = 0
    while i < n:
        op = code[i]
        size = op - _PUSH1 + 1 if _PUSH1 <= op <= _PUSH32 else 0
        if i + 1 + size > n:  # truncated PUSH: the disassembler names it INVALID, not PUSHn
            break
        operand = code[i + 1:i + 1 + size]
        if op == _JUMPDEST:
            in_first_block = False
        elif op == _PUSH4 and in_first_block:
            found.add(operand)
        ops.append(op)
        operands.append(operand)
        if len(ops) >= 3:
            a, b, c = ops[-3], ops[-2], ops[-1]
            if a == _DUP1 and b == _PUSH4 and c == _EQ:
                found.add(operands[-2])
            elif a == _PUSH4 and b == _DUP2 and c == _EQ:
                found.add(operands[-3])
        i += 1 + size
    return sorted("0x" + s.hex() for s in found)


def is_erc20(sighashes: Collection[str]) -> bool:
    """ethereum-etl's ERC-20 rule: all six EIP-20 functions other than the optional metadata."""
    return _ERC20.issubset(sighashes)


def is_erc721(sighashes: Collection[str]) -> bool:
    """ethereum-etl's ERC-721 rule: balanceOf, ownerOf, approve, and transfer or transferFrom."""
    return (_BALANCE_OF in sighashes and _OWNER_OF in sighashes and _APPROVE in sighashes
            and (_TRANSFER in sighashes or _TRANSFER_FROM in sighashes))


_REQUIRED = ("chain_id", "block_number", "block_hash", "block_timestamp", "transaction_index",
             "transaction_hash", "from_address", "to_address", "output", "trace_type", "status",
             "trace_address")


def _senders(traces: pa.Table) -> dict[tuple[int, int], str]:
    """(block_number, transaction_index) -> from of the transaction's root trace."""
    is_root = pc.and_(pc.equal(pc.list_value_length(traces["trace_address"]), 0),
                      pc.is_valid(traces["transaction_hash"]))
    roots = traces.filter(pc.fill_null(is_root, False))
    return {(b, t): f for b, t, f in zip(roots["block_number"].to_pylist(),
                                         roots["transaction_index"].to_pylist(),
                                         roots["from_address"].to_pylist(), strict=True)
            if t is not None}


def contracts_from_traces(traces: pa.Table) -> pa.Table:
    """The ``contracts`` rows of the creations in ``traces`` (bronze traces columns), in input
    order. Only ``trace_type == 'create'`` with ``status == 1`` counts; such a trace without a
    created address, bytecode or transaction index, or with bytecode that is not hex, is a
    :class:`TransformError` (bronze guarantees them, so it means the input is not bronze)."""
    missing = [c for c in _REQUIRED if c not in traces.column_names]
    if missing:
        raise TransformError(f"traces lack column(s) {', '.join(missing)}")
    is_create = pc.and_(pc.equal(traces["trace_type"], "create"), pc.equal(traces["status"], 1))
    creates = traces.filter(pc.fill_null(is_create, False))
    senders = _senders(traces)

    blocks = creates["block_number"].to_pylist()
    tx_indexes = creates["transaction_index"].to_pylist()
    tx_hashes = creates["transaction_hash"].to_pylist()
    addresses = creates["to_address"].to_pylist()
    creators = creates["from_address"].to_pylist()
    outputs = creates["output"].to_pylist()

    tx_froms: list[str | None] = []
    code_hashes: list[str] = []
    sighashes: list[list[str]] = []
    erc20: list[bool] = []
    erc721: list[bool] = []
    for i, bytecode in enumerate(outputs):
        where = (f"create trace of transaction {tx_hashes[i]} (block {blocks[i]}, "
                 f"trace {creates['trace_address'][i].as_py()})")
        for name, value in (("to_address", addresses[i]), ("output", bytecode),
                            ("transaction_index", tx_indexes[i]), ("from_address", creators[i])):
            if value is None:
                raise TransformError(f"{where}: succeeded but {name} is null")
        try:
            code = _code_bytes(bytecode)
            selectors = function_sighashes(bytecode)
        except ValueError:
            raise TransformError(f"{where}: output is not hex: {bytecode[:80]!r}") from None
        tx_froms.append(senders.get((blocks[i], tx_indexes[i])))
        code_hashes.append("0x" + keccak(code).hex())
        sighashes.append(selectors)
        erc20.append(is_erc20(selectors))
        erc721.append(is_erc721(selectors))

    schema = CONTRACTS.arrow_schema

    def passthrough(name: str, source: str | None = None) -> pa.ChunkedArray:
        return creates[source or name].cast(schema.field(name).type)

    columns = {
        "chain_id": passthrough("chain_id"),
        "block_number": passthrough("block_number"),
        "block_hash": passthrough("block_hash"),
        "block_timestamp": passthrough("block_timestamp"),
        "transaction_index": passthrough("transaction_index"),
        "transaction_hash": passthrough("transaction_hash"),
        "trace_address": passthrough("trace_address"),
        "address": passthrough("address", "to_address"),
        "creator_address": passthrough("creator_address", "from_address"),
        "transaction_from_address": pa.array(tx_froms, HEX),
        "bytecode": passthrough("bytecode", "output"),
        "bytecode_hash": pa.array(code_hashes, HEX),
        "function_sighashes": pa.array(sighashes, schema.field("function_sighashes").type),
        "is_erc20": pa.array(erc20, BOOL),
        "is_erc721": pa.array(erc721, BOOL),
    }
    return pa.Table.from_pydict(columns, schema=schema)
