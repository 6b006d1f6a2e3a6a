"""Traffic for the local devnet: every transaction shape the bronze tables must hold, and big
benchmark chains.

- ``generate_coverage``: a small chain with one of each shape per round, signed locally with
  anvil's well-known dev accounts (legacy, access-list, EIP-1559, blob, EIP-7702 set-code,
  contract creation, ERC-20 calls with one or several logs, a reverted call, an empty block, a
  value above 2**64 wei), and once every call-trace shape (``TRACE_SHAPES``: nested calls
  carrying value, CREATE and CREATE2 from a contract, an inner revert in a successful
  transaction, a top-level revert after inner calls, SELFDESTRUCT of a new and of an older
  contract). Needs a prague devnet (EIP-7702).
- ``generate_load``: many full blocks fast, from impersonated senders (unsigned
  ``eth_sendTransaction``). anvil re-recovers the sender of every signed transaction each time it
  serves a block; impersonated ones it serves about 4x faster (DESIGN.md). Use ``--hardfork
  cancun`` for large chains: prague mining slows with every block in anvil 1.7.1.
- ``run_devnet``: the ``chainlake devnet`` command in the foreground.

Transactions go out as raw JSON-RPC (arrays for bulk): web3 8 refuses ``eth_sendTransaction`` in
batches. Automine is switched off while a generator runs, so each block holds exactly the
transactions sent for it, and switched back on afterwards.
"""

from __future__ import annotations

import hashlib
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache

import ckzg
import httpx
import orjson
import rlp
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions.base import TRUSTED_SETUP
from eth_utils import keccak, to_checksum_address

from ingestion.devnet import contracts
from ingestion.devnet.node import DEFAULT_HOST, Devnet

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
GWEI = 10**9
# Fixed fees keep the chain deterministic. anvil's base fee starts at 1 gwei and only falls while
# blocks stay under half full, so these always suffice.
GAS_PRICE = 2 * GWEI
MAX_FEE_PER_GAS = 10 * GWEI
MAX_PRIORITY_FEE_PER_GAS = 1 * GWEI
MAX_FEE_PER_BLOB_GAS = 1 * GWEI
TOKEN_SUPPLY = 10**30  # 10**12 tokens of 18 decimals
WHALE_BALANCE = 2**80  # wei; funds the > 2**64 wei transfers (still far below DECIMAL(38,0))
BIG_VALUE = 2**65  # wei; does not fit a signed or unsigned 64-bit integer
# Hardforks without EIP-7702 (anvil_nodeInfo spelling, lower-cased).
PRE_PRAGUE_FORKS = {
    "frontier", "homestead", "dao", "tangerine", "spuriousdragon", "byzantium",
    "constantinople", "petersburg", "istanbul", "muirglacier", "berlin", "london",
    "arrowglacier", "grayglacier", "paris", "shanghai", "cancun",
}

# Gas limits. Explicit limits skip anvil's estimation (which would also refuse the reverted call).
ETH_TRANSFER_GAS = 21_000
TOKEN_CALL_GAS = 100_000
TOKEN_TRANSFER_GAS = 65_000  # a transfer to a fresh holder uses ~51k
TOKEN_DEPLOY_GAS = 1_500_000
BATCH_TRANSFER_GAS_BASE = 50_000
BATCH_TRANSFER_GAS_PER_RECIPIENT = 35_000
SET_CODE_GAS = 200_000
TRACE_CALL_GAS = 500_000  # TraceLab calls; each uses under 100k (createAndDestroy ~85k)
TRACE_VALUE = 10**15  # wei sent with each trace-shape call, passed on to inner calls
BLOB_FIELD_ELEMENTS = 4096


class TrafficError(RuntimeError):
    """The node refused traffic or a block did not come out as planned."""


@dataclass
class TrafficReport:
    """What a generator mined. ``by_type`` counts transactions by shape (each transaction once)
    and, under ``empty_block``, the empty blocks. ``trace_shapes`` names the transaction hash of
    each call-trace shape (``TRACE_SHAPES``; coverage traffic only)."""

    blocks_mined: int
    transactions: int
    by_type: dict[str, int]
    token_address: str
    head: int
    seconds: float = 0.0
    trace_shapes: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# JSON-RPC


class _JsonRpc:
    """A keep-alive JSON-RPC client for single calls and arrays (many calls, one HTTP request)."""

    def __init__(self, url: str, timeout: float = 120.0):
        self.url = url
        self._http = httpx.Client(timeout=timeout, headers={"content-type": "application/json"})

    def __enter__(self) -> _JsonRpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def call(self, method: str, *params):
        return self.batch([(method, list(params))])[0]

    def batch(self, calls: list[tuple[str, list]]) -> list:
        """Results in call order (anvil answers array members in any order); an error raises."""
        if not calls:
            return []
        body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                for i, (m, p) in enumerate(calls)]
        reply = self._http.post(self.url, content=orjson.dumps(body))
        reply.raise_for_status()
        answers = sorted(orjson.loads(reply.content), key=lambda answer: answer["id"])
        for answer in answers:
            if answer.get("error"):
                method = calls[answer["id"]][0]
                raise TrafficError(f"{method} failed: {answer['error']}")
        return [answer["result"] for answer in answers]

    def head(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def block(self, number: int | str = "latest") -> dict:
        tag = hex(number) if isinstance(number, int) else number
        return self.call("eth_getBlockByNumber", tag, False)


@contextmanager
def _manual_mining(rpc: _JsonRpc) -> Iterator[None]:
    """Automine off, so a block holds exactly what was sent for it; back on afterwards."""
    rpc.call("evm_setAutomine", False)
    try:
        yield
    finally:
        rpc.call("evm_setAutomine", True)


def _mine(rpc: _JsonRpc) -> dict:
    rpc.call("evm_mine")
    return rpc.block()


def _ensure_block_gas_limit(rpc: _JsonRpc, gas_needed: int) -> None:
    """Raise the block gas limit when a planned block would not fit (takes effect next block)."""
    if int(rpc.block()["gasLimit"], 16) < gas_needed:
        rpc.call("evm_setBlockGasLimit", hex(gas_needed))


# --------------------------------------------------------------------------------------------
# Calldata and addresses


def _word(value: int) -> str:
    return f"{value:064x}"


def _address_word(address: str) -> str:
    return address[2:].lower().rjust(64, "0")


def _transfer_calldata(to: str, amount: int) -> str:
    return contracts.SELECTOR_TRANSFER + _address_word(to) + _word(amount)


def _approve_calldata(spender: str, amount: int) -> str:
    return contracts.SELECTOR_APPROVE + _address_word(spender) + _word(amount)


def _transfer_from_calldata(owner: str, to: str, amount: int) -> str:
    return contracts.SELECTOR_TRANSFER_FROM + _address_word(owner) + _address_word(to) + _word(
        amount)


def _batch_transfer_calldata(recipients: list[str], amounts: list[int]) -> str:
    args = abi_encode(["address[]", "uint256[]"], [recipients, amounts])
    return contracts.SELECTOR_BATCH_TRANSFER + args.hex()


def _token_deploy_calldata(supply: int = TOKEN_SUPPLY) -> str:
    return contracts.DEV_TOKEN_BYTECODE + _word(supply)


def _balance_slot(holder: str) -> str:
    """Storage key of ``balanceOf[holder]`` in DevToken (Solidity mapping layout)."""
    key = bytes.fromhex(_address_word(holder) + _word(contracts.DEV_TOKEN_BALANCE_SLOT))
    return "0x" + keccak(key).hex()


def _create_address(sender: str, nonce: int) -> str:
    """Address of a contract created by ``sender`` at ``nonce`` (CREATE)."""
    return "0x" + keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:].hex()


def _derived_address(label: str) -> str:
    """A fixed, realistic-looking address nobody holds a key for (load senders, recipients)."""
    return "0x" + keccak(text=f"chainlake/{label}")[12:].hex()


# --------------------------------------------------------------------------------------------
# Coverage: one of every shape, signed with the dev accounts


@cache
def dev_account(index: int) -> LocalAccount:
    """anvil's dev account ``index`` (from its default mnemonic; each holds 10,000 ETH)."""
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")


# Roles of the dev accounts in coverage traffic. The reverter never receives tokens, so its
# transfer always fails; the authority never sends, it only signs EIP-7702 authorizations.
DEPLOYER, LEGACY_SENDER, EIP1559_SENDER, BLOB_SENDER, SPENDER, AUTHORITY, REVERTER, WHALE = range(8)
RECIPIENTS = (8, 9)


@cache
def _kzg_setup():
    return ckzg.load_trusted_setup(TRUSTED_SETUP, 0)  # ~2 s: load once per process


def _blob(text: str) -> bytes:
    """A blob carrying ``text``: 31 data bytes per field element, first byte zero so every
    element stays below the BLS modulus."""
    blob = bytearray(32 * BLOB_FIELD_ELEMENTS)
    for i, byte in enumerate(text.encode()):
        blob[32 * (i // 31) + 1 + i % 31] = byte
    return bytes(blob)


class _DevWallet:
    """Signs for the dev accounts, tracking each sender's next nonce locally."""

    def __init__(self, rpc: _JsonRpc, chain_id: int):
        self.rpc = rpc
        self.chain_id = chain_id
        self._nonces: dict[str, int] = {}

    def next_nonce(self, account: LocalAccount) -> int:
        if account.address not in self._nonces:
            count = self.rpc.call("eth_getTransactionCount", account.address, "pending")
            self._nonces[account.address] = int(count, 16)
        nonce = self._nonces[account.address]
        self._nonces[account.address] += 1
        return nonce

    def sign(self, account: LocalAccount, tx: dict) -> str:
        tx = {"chainId": self.chain_id, "nonce": self.next_nonce(account), **tx}
        return "0x" + account.sign_transaction(tx).raw_transaction.hex()

    def sign_blob(self, account: LocalAccount, tx: dict, blobs: list[bytes]) -> str:
        """A type-3 transaction in the EIP-4844 network form ``[tx, blobs, commitments, proofs]``.

        eth-account 0.14's own ``sign_transaction(..., blobs=...)`` emits the EIP-7594 (Osaka)
        form with cell proofs: anvil 1.7.1 on cancun/prague accepts it into the pool but never
        mines it. It also reloads the trusted setup and computes cell proofs (~6 s per blob
        transaction here); one commitment and proof take ~50 ms.
        """
        setup = _kzg_setup()
        commitments = [ckzg.blob_to_kzg_commitment(blob, setup) for blob in blobs]
        proofs = [ckzg.compute_blob_kzg_proof(blob, commitment, setup)
                  for blob, commitment in zip(blobs, commitments, strict=True)]
        versioned_hashes = [b"\x01" + hashlib.sha256(c).digest()[1:] for c in commitments]
        signed = self.sign(account, {**tx, "type": 3, "blobVersionedHashes": versioned_hashes})
        body = rlp.decode(bytes.fromhex(signed[4:]))  # drop "0x03"
        return "0x03" + rlp.encode([body, blobs, commitments, proofs]).hex()

    def authorization(self, authority: LocalAccount, delegate: str):
        """An EIP-7702 authorization by ``authority`` (which never sends: nonce = its tx count)."""
        nonce = int(self.rpc.call("eth_getTransactionCount", authority.address, "latest"), 16)
        auth = {"chainId": self.chain_id, "address": delegate, "nonce": nonce}
        return Account.sign_authorization(auth, authority.key)


def _dynamic_fees() -> dict:
    return {"maxFeePerGas": MAX_FEE_PER_GAS, "maxPriorityFeePerGas": MAX_PRIORITY_FEE_PER_GAS}


Planned = list[tuple[str, str]]  # (shape, raw signed transaction) in sending order


# Shapes mined with status 0; every other transaction must succeed.
REVERTING_SHAPES = frozenset({"reverted", "top_level_revert"})


def _mine_planned(rpc: _JsonRpc, planned: Planned) -> list[dict]:
    """Send the block's transactions one by one (so pool order is the sending order among equal
    fees), mine, check that exactly they were included and that only ``REVERTING_SHAPES``
    failed; return the receipts in planned order."""
    hashes = [rpc.call("eth_sendRawTransaction", raw) for _, raw in planned]
    block = _mine(rpc)
    if sorted(block["transactions"]) != sorted(hashes):
        raise TrafficError(f"block {int(block['number'], 16)} holds {block['transactions']}, "
                           f"expected {hashes}")
    receipts = rpc.call("eth_getBlockReceipts", block["number"])
    by_hash = {r["transactionHash"]: r for r in receipts}
    for (shape, _), tx_hash in zip(planned, hashes, strict=True):
        expected = 0 if shape in REVERTING_SHAPES else 1
        status = int(by_hash[tx_hash]["status"], 16)
        if status != expected:
            raise TrafficError(f"{shape} transaction {tx_hash} has status {status}")
    return [by_hash[tx_hash] for tx_hash in hashes]


@dataclass
class _CoverageContracts:
    token: str
    delegate: str
    trace_lab: str  # TraceLab: makes the call-trace shapes
    elder: str  # a TraceChild deployed on its own, destroyed in a later block


def _deploy_contracts(rpc: _JsonRpc, wallet: _DevWallet) -> tuple[_CoverageContracts, Planned]:
    deployer = dev_account(DEPLOYER)

    def create(code: str, value: int = 0) -> str:
        return wallet.sign(deployer, {"type": 2, "data": code, "value": value,
                                      "gas": TOKEN_DEPLOY_GAS, **_dynamic_fees()})

    planned = [
        ("create", create(_token_deploy_calldata())),
        ("create", create(contracts.PING_DELEGATE_BYTECODE)),
        ("create", create(contracts.TRACE_LAB_BYTECODE)),
        # A creation carrying value (TraceChild's constructor is payable).
        ("create", create(contracts.TRACE_CHILD_BYTECODE, TRACE_VALUE)),
    ]
    receipts = _mine_planned(rpc, planned)
    # eth-account wants checksummed addresses.
    token, delegate, trace_lab, elder = (to_checksum_address(r["contractAddress"])
                                         for r in receipts)
    return _CoverageContracts(token=token, delegate=delegate, trace_lab=trace_lab,
                              elder=elder), planned


def _value_shapes_block(wallet: _DevWallet, deployed: _CoverageContracts, rnd: int) -> Planned:
    """Plain transfers of every envelope, a big value, a blob, a creation and an approval."""
    to_a, to_b = (dev_account(i).address for i in RECIPIENTS)
    return [
        # Legacy (type 0: eth-account wants no "type" key, only gasPrice), EIP-155 protected
        # because chainId is set.
        ("legacy", wallet.sign(dev_account(LEGACY_SENDER), {
            "to": to_a, "value": 10**18 + rnd, "gas": ETH_TRANSFER_GAS,
            "gasPrice": GAS_PRICE})),
        ("eip1559", wallet.sign(dev_account(EIP1559_SENDER), {
            "type": 2, "to": to_b, "value": 2 * 10**18 + rnd, "gas": ETH_TRANSFER_GAS,
            **_dynamic_fees()})),
        ("big_value", wallet.sign(dev_account(WHALE), {
            "type": 2, "to": to_a, "value": BIG_VALUE + rnd, "gas": ETH_TRANSFER_GAS,
            **_dynamic_fees()})),
        ("blob", wallet.sign_blob(dev_account(BLOB_SENDER), {
            "to": to_b, "value": 0, "gas": ETH_TRANSFER_GAS, "data": "0x",
            "maxFeePerBlobGas": MAX_FEE_PER_BLOB_GAS, **_dynamic_fees()},
            # One blob in even rounds, two in odd ones.
            blobs=[_blob(f"chainlake devnet round {rnd} blob {i}") for i in range(1 + rnd % 2)])),
        # Another token each round: a creation whose constructor also logs (the mint).
        ("create", wallet.sign(dev_account(DEPLOYER), {
            "type": 2, "data": _token_deploy_calldata(TOKEN_SUPPLY + rnd),
            "gas": TOKEN_DEPLOY_GAS, **_dynamic_fees()})),
        ("erc20_approve", wallet.sign(dev_account(DEPLOYER), {
            "type": 2, "to": deployed.token, "gas": TOKEN_CALL_GAS,
            "data": _approve_calldata(dev_account(SPENDER).address, 1000 * 10**18),
            **_dynamic_fees()})),
    ]


def _token_shapes_block(wallet: _DevWallet, deployed: _CoverageContracts, rnd: int) -> Planned:
    """ERC-20 calls with one or several logs, a type-1 call, a revert and an EIP-7702 call."""
    deployer, spender = dev_account(DEPLOYER), dev_account(SPENDER)
    to_a, to_b = (dev_account(i).address for i in RECIPIENTS)
    token = deployed.token
    return [
        # Type 1 with the storage keys the transfer touches.
        ("access_list", wallet.sign(deployer, {
            "type": 1, "to": token, "gas": TOKEN_CALL_GAS, "gasPrice": GAS_PRICE,
            "data": _transfer_calldata(to_b, 5 * 10**18 + rnd),
            "accessList": [{"address": token, "storageKeys": [
                _balance_slot(deployer.address), _balance_slot(to_b)]}]})),
        ("erc20_transfer", wallet.sign(deployer, {
            "type": 2, "to": token, "gas": TOKEN_CALL_GAS,
            "data": _transfer_calldata(to_a, 7 * 10**18 + rnd), **_dynamic_fees()})),
        # Three Transfer logs in one transaction.
        ("erc20_batch_transfer", wallet.sign(deployer, {
            "type": 2, "to": token, "gas": 300_000, **_dynamic_fees(),
            "data": _batch_transfer_calldata(
                [to_a, to_b, dev_account(LEGACY_SENDER).address], [1 + rnd, 2 + rnd, 3 + rnd])})),
        # Approval + Transfer logs (the approval was mined in the block before).
        ("erc20_transfer_from", wallet.sign(spender, {
            "type": 2, "to": token, "gas": TOKEN_CALL_GAS, **_dynamic_fees(),
            "data": _transfer_from_calldata(deployer.address, to_b, 100 * 10**18 + rnd)})),
        # Mined with status 0: the reverter holds no tokens.
        ("reverted", wallet.sign(dev_account(REVERTER), {
            "type": 2, "to": token, "gas": TOKEN_CALL_GAS,
            "data": _transfer_calldata(to_a, 1), **_dynamic_fees()})),
        # Sponsored EIP-7702: the deployer pays, the authority's EOA runs PingDelegate.ping()
        # and logs from its own address.
        ("set_code", wallet.sign(deployer, {
            "type": 4, "to": dev_account(AUTHORITY).address, "gas": SET_CODE_GAS, "value": 0,
            "data": contracts.SELECTOR_PING, **_dynamic_fees(),
            "authorizationList": [wallet.authorization(dev_account(AUTHORITY), deployed.delegate)]
        })),
    ]


# Call-trace shapes, each one transaction (TrafficReport.trace_shapes names its hash).
TRACE_SHAPES = (
    "nested_calls",  # lab.nest(3): CALLs 4 deep passing value on, the innermost pays an EOA
    #                  and makes a DELEGATECALL and a STATICCALL (trace depth 4)
    "create_from_contract",  # lab.createChild(): CREATE (with value) from a contract
    "create2_from_contract",  # lab.create2Child(salt): CREATE2 (with value) from a contract
    "inner_revert",  # lab.tryFail(): an inner call (with value) reverts, caught; status 1
    "top_level_revert",  # lab.boom(): nested calls moving value, then revert; status 0
    "selfdestruct_new",  # lab.createAndDestroy(): CREATE then SELFDESTRUCT in the same
    #                      transaction, so the child's account is deleted (EIP-6780)
    "selfdestruct_old",  # elder.destroy(): SELFDESTRUCT of a contract from an earlier block;
    #                      since Cancun it only sends the balance, the code stays
)
CREATE2_SALT = int.from_bytes(keccak(text="chainlake/create2"))


def _trace_shapes(wallet: _DevWallet, deployed: _CoverageContracts) -> Planned:
    """One transaction per ``TRACE_SHAPES`` entry, from the deployer, each sending TRACE_VALUE."""
    sender = dev_account(DEPLOYER)
    payee = dev_account(RECIPIENTS[1]).address
    lab = deployed.trace_lab

    def call(to: str, data: str) -> str:
        return wallet.sign(sender, {"type": 2, "to": to, "data": data, "value": TRACE_VALUE,
                                    "gas": TRACE_CALL_GAS, **_dynamic_fees()})

    planned = [
        ("nested_calls", call(lab, contracts.SELECTOR_NEST + _word(3) + _address_word(payee))),
        ("create_from_contract", call(lab, contracts.SELECTOR_CREATE_CHILD)),
        ("create2_from_contract", call(lab, contracts.SELECTOR_CREATE2_CHILD + _word(CREATE2_SALT))),
        ("inner_revert", call(lab, contracts.SELECTOR_TRY_FAIL)),
        ("top_level_revert", call(lab, contracts.SELECTOR_BOOM + _address_word(payee))),
        ("selfdestruct_new", call(lab, contracts.SELECTOR_CREATE_AND_DESTROY + _address_word(payee))),
        ("selfdestruct_old", call(deployed.elder, contracts.SELECTOR_DESTROY + _address_word(payee))),
    ]
    assert [shape for shape, _ in planned] == list(TRACE_SHAPES)
    return planned


def _require_eip7702(rpc: _JsonRpc) -> None:
    fork = str(rpc.call("anvil_nodeInfo").get("hardFork", "")).lower().replace(" ", "")
    if fork in PRE_PRAGUE_FORKS:
        raise TrafficError(f"coverage traffic needs EIP-7702 (--hardfork prague); node runs {fork}")


def generate_coverage(rpc_url: str, *, rounds: int = 3) -> TrafficReport:
    """Mine every transaction shape the bronze tables must hold on an anvil devnet (prague).

    Block 1 deploys the token, the EIP-7702 delegate, TraceLab and a TraceChild (with value);
    then each round mines three blocks: plain transfers of each envelope (legacy, EIP-1559, blob,
    > 2**64 wei) plus a creation and an approval; ERC-20 calls (access-list, transfer, batch
    transfer, transferFrom, a revert) and an EIP-7702 set-code call, plus in the first round one
    transaction of each call-trace shape (``TRACE_SHAPES``, hashes in the report's
    ``trace_shapes``); an empty block. Same call on a fresh anvil, same chain (timestamps aside).
    """
    started = time.monotonic()
    with _JsonRpc(rpc_url) as rpc:
        _require_eip7702(rpc)
        first_block = rpc.head() + 1
        wallet = _DevWallet(rpc, chain_id=int(rpc.call("eth_chainId"), 16))
        shapes: Counter[str] = Counter()
        trace_shapes: dict[str, str] = {}
        with _manual_mining(rpc):
            rpc.call("anvil_setBalance", dev_account(WHALE).address, hex(WHALE_BALANCE))
            deployed, planned = _deploy_contracts(rpc, wallet)
            shapes.update(shape for shape, _ in planned)
            for rnd in range(rounds):
                for build in (_value_shapes_block, _token_shapes_block):
                    planned = build(wallet, deployed, rnd)
                    if rnd == 0 and build is _token_shapes_block:
                        planned += _trace_shapes(wallet, deployed)
                    receipts = _mine_planned(rpc, planned)
                    shapes.update(shape for shape, _ in planned)
                    trace_shapes.update(
                        (shape, receipt["transactionHash"])
                        for (shape, _), receipt in zip(planned, receipts, strict=True)
                        if shape in TRACE_SHAPES)
                _mine(rpc)  # no transactions pending: an empty block
                shapes["empty_block"] += 1
        head = rpc.head()
    return TrafficReport(
        blocks_mined=head - first_block + 1,
        transactions=sum(n for shape, n in shapes.items() if shape != "empty_block"),
        by_type=dict(shapes), token_address=deployed.token.lower(), head=head,
        seconds=time.monotonic() - started, trace_shapes=trace_shapes)


# --------------------------------------------------------------------------------------------
# Load: many full blocks from impersonated senders


MAX_LOAD_SENDERS = 256
LOAD_RECIPIENTS = 1024
SENDER_BALANCE = 10**24  # wei each
LEGACY_EVERY = 10  # every 10th ETH transfer is a legacy (type 0) transaction


@dataclass
class _LoadTraffic:
    """ETH and ERC-20 transfers from impersonated senders, a JSON-RPC array per block.

    The first block also deploys a token from sender 0 and hands every sender a share in one
    batch transfer (same sender, consecutive nonces, so both run before anyone spends tokens;
    other senders only move ETH in that block).
    """

    rpc: _JsonRpc
    n_senders: int
    seed: int
    erc20_share: float = 0.5
    senders: list[str] = field(init=False)
    recipients: list[str] = field(init=False)
    token: str | None = field(default=None, init=False)
    shapes: Counter = field(default_factory=Counter, init=False)
    _nonces: dict[str, int] = field(init=False)
    _cursor: int = field(default=0, init=False)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.senders = [_derived_address(f"load-sender/{i}") for i in range(self.n_senders)]
        self.recipients = [_derived_address(f"recipient/{i}") for i in range(LOAD_RECIPIENTS)]
        self._rng = random.Random(self.seed)

    def prepare(self) -> None:
        """Impersonate and fund the senders; read their nonces."""
        self.rpc.batch([("anvil_impersonateAccount", [s]) for s in self.senders]
                       + [("anvil_setBalance", [s, hex(SENDER_BALANCE)]) for s in self.senders])
        counts = self.rpc.batch([("eth_getTransactionCount", [s, "pending"])
                                 for s in self.senders])
        self._nonces = {s: int(c, 16) for s, c in zip(self.senders, counts, strict=True)}

    def mine_blocks(self, blocks: int, txs_per_block: int, *, batch_blocks: int,
                    progress: Callable[[int, float], None] | None = None,
                    check: bool = True) -> None:
        """Mine ``blocks`` blocks; every ``batch_blocks`` check (if ``check``) that all was mined
        and report progress."""
        if txs_per_block < 2:
            raise ValueError("txs_per_block must be at least 2 (token deploy + distribution)")
        _ensure_block_gas_limit(self.rpc, self._max_block_gas(txs_per_block))
        started = time.monotonic()
        for done in range(1, blocks + 1):
            # evm_mine goes separately: anvil runs the members of an array concurrently, so a
            # mine inside the array could overtake the sends before it.
            self.rpc.batch(self._block_calls(txs_per_block))
            self.rpc.call("evm_mine")
            if done % batch_blocks == 0 or done == blocks:
                if check:
                    self._check_drained(txs_per_block)
                if progress:
                    progress(done, time.monotonic() - started)

    def _block_calls(self, txs_per_block: int) -> list[tuple[str, list]]:
        txs = []
        setup_block = self.token is None
        if setup_block:
            txs += self._token_setup_txs()
        while len(txs) < txs_per_block:
            sender = self.senders[self._cursor % self.n_senders]
            self._cursor += 1
            if not setup_block and self._rng.random() < self.erc20_share:
                txs.append(self._erc20_transfer(sender))
            else:
                txs.append(self._eth_transfer(sender))
        return [("eth_sendTransaction", [tx]) for tx in txs]

    def _token_setup_txs(self) -> list[dict]:
        owner = self.senders[0]
        self.token = _create_address(owner, self._nonces[owner])
        share = TOKEN_SUPPLY // (self.n_senders + 1)
        deploy = self._tx(owner, None, TOKEN_DEPLOY_GAS, data=_token_deploy_calldata())
        distribute = self._tx(
            owner, self.token, self._distribution_gas(),
            data=_batch_transfer_calldata(self.senders[1:], [share] * (self.n_senders - 1)))
        self.shapes.update(["create", "erc20_batch_transfer"])
        return [deploy, distribute]

    def _eth_transfer(self, sender: str) -> dict:
        to = self._rng.choice(self.recipients)
        value = self._rng.randrange(1, 10**18)
        if self._cursor % LEGACY_EVERY == 0:
            self.shapes["legacy"] += 1
            return self._tx(sender, to, ETH_TRANSFER_GAS, value=value, legacy=True)
        self.shapes["eth_transfer"] += 1
        return self._tx(sender, to, ETH_TRANSFER_GAS, value=value)

    def _erc20_transfer(self, sender: str) -> dict:
        self.shapes["erc20_transfer"] += 1
        to = self._rng.choice(self.recipients)
        amount = self._rng.randrange(1, 10**18)
        return self._tx(sender, self.token, TOKEN_TRANSFER_GAS, data=_transfer_calldata(to, amount))

    def _tx(self, sender: str, to: str | None, gas: int, *, value: int = 0, data: str = "0x",
            legacy: bool = False) -> dict:
        nonce = self._nonces[sender]
        self._nonces[sender] = nonce + 1
        tx = {"from": sender, "gas": hex(gas), "nonce": hex(nonce), "value": hex(value),
              "data": data}
        if to is not None:
            tx["to"] = to
        if legacy:
            tx["gasPrice"] = hex(GAS_PRICE)
        else:
            tx["maxFeePerGas"] = hex(MAX_FEE_PER_GAS)
            tx["maxPriorityFeePerGas"] = hex(MAX_PRIORITY_FEE_PER_GAS)
        return tx

    def _distribution_gas(self) -> int:
        return BATCH_TRANSFER_GAS_BASE + BATCH_TRANSFER_GAS_PER_RECIPIENT * self.n_senders

    def _max_block_gas(self, txs_per_block: int) -> int:
        setup = TOKEN_DEPLOY_GAS + self._distribution_gas() if self.token is None else 0
        return setup + TOKEN_TRANSFER_GAS * txs_per_block

    def _check_drained(self, txs_per_block: int) -> None:
        """Everything sent was mined: an empty pool and a full last block."""
        status = self.rpc.call("txpool_status")
        if int(status["pending"], 16) or int(status["queued"], 16):
            raise TrafficError(f"transactions left in the pool after mining: {status}")
        mined = int(self.rpc.call("eth_getBlockTransactionCountByNumber", "latest"), 16)
        if mined != txs_per_block:
            raise TrafficError(f"last block holds {mined} transactions, expected {txs_per_block}")


def generate_load(rpc_url: str, *, blocks: int, txs_per_block: int = 50, batch_blocks: int = 500,
                  erc20_share: float = 0.5,
                  progress: Callable[[int, float], None] | None = None) -> TrafficReport:
    """Mine ``blocks`` blocks of exactly ``txs_per_block`` transactions each, fast.

    About half the transactions are ERC-20 transfers (one Transfer log each), the rest ETH
    transfers (every tenth legacy). The first block deploys a fresh token and funds the senders
    with it. Each block is one JSON-RPC array of ``eth_sendTransaction`` plus ``evm_mine``; every
    ``batch_blocks`` blocks the pool is checked empty and ``progress(blocks_done, seconds)`` is
    called. Deterministic for a given chain state.
    """
    started = time.monotonic()
    with _JsonRpc(rpc_url) as rpc:
        first_block = rpc.head() + 1
        load = _LoadTraffic(rpc, n_senders=min(txs_per_block, MAX_LOAD_SENDERS),
                            seed=first_block, erc20_share=erc20_share)
        with _manual_mining(rpc):
            load.prepare()
            load.mine_blocks(blocks, txs_per_block, batch_blocks=max(1, batch_blocks),
                             progress=progress)
        head = rpc.head()
    return TrafficReport(
        blocks_mined=head - first_block + 1, transactions=blocks * txs_per_block,
        by_type=dict(load.shapes), token_address=(load.token or "0x" + "0" * 40).lower(),
        head=head, seconds=time.monotonic() - started)


# --------------------------------------------------------------------------------------------
# The `chainlake devnet` command


FOLLOW_INTERVAL_SECONDS = 2.0
FOLLOW_TXS_PER_BLOCK = 4
FILL_TXS_PER_BLOCK = 10


def _stop_on_signal(signum, frame) -> None:
    raise KeyboardInterrupt


def run_devnet(port: int, blocks: int, *, hardfork: str = "prague", follow: bool = True,
               host: str = DEFAULT_HOST) -> None:
    """Start anvil on ``port``, mine coverage traffic, then light load until block ``blocks``;
    print the URL and a summary; if ``follow``, mine a block with a little traffic every ~2 s
    until Ctrl-C or SIGTERM. anvil is always stopped on the way out."""
    # SIGTERM (and SIGINT, which a background start may have left ignored) unwind through the
    # finally below: anvil runs in its own session and would outlive us otherwise.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _stop_on_signal)
                for sig in (signal.SIGINT, signal.SIGTERM) if in_main_thread}
    devnet = Devnet(port=port, hardfork=hardfork, host=host)
    try:
        devnet.start()
        coverage = generate_coverage(devnet.url)
        transactions = coverage.transactions
        with _JsonRpc(devnet.url) as rpc:
            load = _LoadTraffic(rpc, n_senders=FILL_TXS_PER_BLOCK, seed=rpc.head())
            load.prepare()
            fill = blocks - rpc.head()
            if fill > 0:
                with _manual_mining(rpc):
                    load.mine_blocks(fill, FILL_TXS_PER_BLOCK, batch_blocks=500)
                transactions += fill * FILL_TXS_PER_BLOCK
            print(f"devnet: {devnet.url} (chain id {devnet.chain_id}, {hardfork}): "
                  f"{rpc.head() + 1} blocks, {transactions} transactions, "
                  f"token {coverage.token_address}", flush=True)
            if follow:
                print(f"devnet: a block every {FOLLOW_INTERVAL_SECONDS:.0f} s; Ctrl-C to stop",
                      flush=True)
                while True:
                    time.sleep(FOLLOW_INTERVAL_SECONDS)
                    # No check: a user's own transaction may land in this block too.
                    with _manual_mining(rpc):
                        load.mine_blocks(1, FOLLOW_TXS_PER_BLOCK, batch_blocks=1, check=False)
    except KeyboardInterrupt:
        print("devnet: stopping", flush=True)
    finally:
        devnet.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
