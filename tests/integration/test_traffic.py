"""The traffic generator, read back through web3 from the shared session devnet: every transaction
shape the bronze tables must hold is really on the chain, every call-trace shape shows in both
trace APIs anvil serves (``debug_traceBlockByNumber`` with the callTracer, parity
``trace_block``), and the load generator fills blocks exactly. Only the determinism test starts a
second, fresh anvil (that is what it tests)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_utils import keccak, to_checksum_address
from web3 import HTTPProvider, Web3

from ingestion.devnet import Devnet, contracts, free_port
from ingestion.devnet.traffic import (
    CREATE2_SALT,
    TRACE_SHAPES,
    TRACE_VALUE,
    TrafficReport,
    dev_account,
    generate_coverage,
    generate_load,
)

pytestmark = pytest.mark.devnet

TRANSFER_TOPIC = bytes.fromhex(contracts.TRANSFER_TOPIC[2:])
APPROVAL_TOPIC = bytes.fromhex(contracts.APPROVAL_TOPIC[2:])


@dataclass
class Chain:
    w3: Web3
    report: TrafficReport
    blocks: list  # blocks of the coverage run, with full transactions
    receipts: dict  # transaction hash -> receipt

    @property
    def transactions(self) -> list:
        return [tx for block in self.blocks for tx in block["transactions"]]

    def receipt(self, tx):
        return self.receipts[tx["hash"]]


ROUNDS = 2  # tests/conftest.py runs generate_coverage(rounds=2)


@pytest.fixture(scope="module")
def chain(devnet) -> Chain:
    report = devnet.coverage
    w3 = Web3(HTTPProvider(devnet.url))
    blocks = [w3.eth.get_block(n, full_transactions=True)
              for n in range(devnet.coverage_start, report.head + 1)]
    receipts = {tx["hash"]: w3.eth.get_transaction_receipt(tx["hash"])
                for block in blocks for tx in block["transactions"]}
    return Chain(w3=w3, report=report, blocks=blocks, receipts=receipts)


def test_report_matches_the_chain(chain):
    report = chain.report
    assert report.blocks_mined == len(chain.blocks) == 1 + 3 * ROUNDS
    assert report.transactions == len(chain.transactions)
    assert report.head == chain.blocks[-1]["number"]
    assert sum(n for shape, n in report.by_type.items() if shape != "empty_block") == (
        report.transactions)
    for shape in ("legacy", "access_list", "eip1559", "blob", "set_code", "create",
                  "erc20_transfer", "erc20_batch_transfer", "erc20_transfer_from", "reverted",
                  "big_value"):
        assert report.by_type[shape] >= ROUNDS, shape
    assert report.by_type["empty_block"] == ROUNDS
    # The call-trace shapes: once each, in the first round.
    assert list(report.trace_shapes) == list(TRACE_SHAPES)
    assert all(report.by_type[shape] == 1 for shape in TRACE_SHAPES)
    assert len(set(report.trace_shapes.values())) == len(TRACE_SHAPES)


def test_every_envelope_type_is_mined(chain):
    assert {tx["type"] for tx in chain.transactions} == {0, 1, 2, 3, 4}


def test_blocks_hold_several_transactions(chain):
    assert max(len(block["transactions"]) for block in chain.blocks) >= 5


def test_legacy_transactions_are_eip155_protected(chain):
    chain_id = chain.w3.eth.chain_id
    legacy = [tx for tx in chain.transactions if tx["type"] == 0]
    assert legacy
    assert all(tx["v"] in (35 + 2 * chain_id, 36 + 2 * chain_id) for tx in legacy)


def test_access_list_transactions_name_storage_keys(chain):
    typed = [tx for tx in chain.transactions if tx["type"] == 1]
    assert typed
    for tx in typed:
        assert tx["accessList"] and tx["accessList"][0]["storageKeys"]


def test_contract_creation_has_a_contract_address(chain):
    creations = [tx for tx in chain.transactions if tx["to"] is None]
    assert len(creations) == chain.report.by_type["create"]
    for tx in creations:
        address = chain.receipt(tx)["contractAddress"]
        assert address and len(chain.w3.eth.get_code(address)) > 0
    first_token = chain.receipt(creations[0])["contractAddress"]
    assert chain.report.token_address == first_token.lower()


def test_erc20_transfers_emit_transfer_logs(chain):
    logs_per_tx = [chain.receipt(tx)["logs"] for tx in chain.transactions]
    transfer_counts = [sum(log["topics"][0] == TRANSFER_TOPIC for log in logs)
                       for logs in logs_per_tx]
    assert sum(transfer_counts) >= 5 * ROUNDS
    assert max(transfer_counts) >= 3  # a batch transfer
    # transferFrom: Approval and Transfer in one transaction.
    assert any({log["topics"][0] for log in logs} >= {TRANSFER_TOPIC, APPROVAL_TOPIC}
               for logs in logs_per_tx)
    for logs in logs_per_tx:
        for log in logs:
            if log["topics"][0] == TRANSFER_TOPIC:
                assert len(log["topics"]) == 3 and len(log["data"]) == 32


def test_a_reverted_call_is_mined_with_status_0(chain):
    reverted = [tx for tx in chain.transactions if chain.receipt(tx)["status"] == 0]
    assert chain.report.by_type["reverted"] == ROUNDS
    assert len(reverted) == ROUNDS + 1  # and the trace shape top_level_revert
    assert chain.report.trace_shapes["top_level_revert"] in {tx_hash(tx) for tx in reverted}
    assert all(chain.receipt(tx)["logs"] == [] for tx in reverted)


def test_empty_blocks_exist(chain):
    assert sum(not block["transactions"] for block in chain.blocks) == ROUNDS


def test_a_value_above_2_64_wei(chain):
    assert max(tx["value"] for tx in chain.transactions) > 2**64


def test_blob_transactions_carry_versioned_hashes(chain):
    blobs = [tx for tx in chain.transactions if tx["type"] == 3]
    assert len(blobs) == ROUNDS
    assert {len(tx["blobVersionedHashes"]) for tx in blobs} == {1, 2}
    for tx in blobs:
        assert all(h[0] == 1 for h in tx["blobVersionedHashes"])  # KZG version byte
        assert chain.receipt(tx)["blobGasUsed"] == 131072 * len(tx["blobVersionedHashes"])
        block = chain.w3.eth.get_block(tx["blockNumber"])
        assert block["blobGasUsed"] == chain.receipt(tx)["blobGasUsed"]


def test_set_code_transactions_delegate_the_authority(chain):
    set_code = [tx for tx in chain.transactions if tx["type"] == 4]
    assert len(set_code) == ROUNDS
    for tx in set_code:
        (authorization,) = tx["authorizationList"]
        assert authorization["chainId"] == chain.w3.eth.chain_id
        receipt = chain.receipt(tx)
        # PingDelegate ran as the authority's EOA and logged from its address.
        assert receipt["status"] == 1 and receipt["logs"][0]["address"] == tx["to"]
    authority = set_code[0]["to"]
    assert authority == dev_account(5).address
    # EIP-7702 delegation designator: 0xef0100 ++ delegate address.
    code = chain.w3.eth.get_code(authority)
    assert code[:3] == b"\xef\x01\x00"
    assert "0x" + code[3:].hex() == authorization["address"].lower()


# --------------------------------------------------------------------------------------------
# Call traces: every shape in debug_traceBlockByNumber (callTracer) and in parity trace_block


@dataclass(frozen=True)
class Frame:
    """One call frame, as both trace APIs describe it (their common part)."""

    address: tuple[int, ...]  # parity traceAddress: child indexes from the root
    kind: str  # CALL, DELEGATECALL, STATICCALL, CREATE, CREATE2, SELFDESTRUCT
    source: str  # caller; for SELFDESTRUCT the destroyed contract
    target: str | None  # callee or created contract; for SELFDESTRUCT the beneficiary
    value: int
    failed: bool

    @property
    def depth(self) -> int:
        return len(self.address)


def call_tracer_frames(root: dict) -> list[Frame]:
    """A callTracer tree, depth first (parity's order)."""
    frames: list[Frame] = []

    def walk(frame: dict, address: tuple[int, ...]) -> None:
        frames.append(Frame(address, frame["type"], frame["from"].lower(),
                            frame.get("to", "").lower() or None, int(frame.get("value", "0x0"), 16),
                            "error" in frame))
        for i, child in enumerate(frame.get("calls", [])):
            walk(child, (*address, i))

    walk(root, ())
    return frames


def parity_frames(traces: list[dict]) -> list[Frame]:
    frames = []
    for trace in traces:
        action = trace["action"]
        if trace["type"] == "call":
            kind, source, target, value = (action["callType"].upper(), action["from"], action["to"],
                                           action["value"])
        elif trace["type"] == "create":
            kind, source, value = action["creationMethod"].upper(), action["from"], action["value"]
            target = (trace.get("result") or {}).get("address")
        else:
            assert trace["type"] == "suicide", trace
            kind, source, target, value = ("SELFDESTRUCT", action["address"],
                                           action["refundAddress"], action["balance"])
        frames.append(Frame(tuple(trace["traceAddress"]), kind, source.lower(),
                            target.lower() if target else None, int(value, 16), "error" in trace))
    return frames


@dataclass
class Traces:
    call_tracer: dict  # transaction hash -> callTracer root frame
    parity: dict  # transaction hash -> its trace_block entries, in order
    report: TrafficReport

    def root(self, shape: str) -> dict:
        return self.call_tracer[self.report.trace_shapes[shape]]

    def parity_of(self, shape: str) -> list[dict]:
        return self.parity[self.report.trace_shapes[shape]]

    def frames(self, api: str, shape: str) -> list[Frame]:
        if api == "callTracer":
            return call_tracer_frames(self.root(shape))
        return parity_frames(self.parity_of(shape))


@pytest.fixture(scope="module")
def traces(devnet, chain) -> Traces:
    call_tracer: dict[str, dict] = {}
    parity: dict[str, list[dict]] = {}
    for block in chain.blocks:
        number = hex(block["number"])
        for item in devnet.call("debug_traceBlockByNumber", [number, {"tracer": "callTracer"}]):
            call_tracer[item["txHash"]] = item["result"]
        for trace in devnet.call("trace_block", [number]) or []:
            parity.setdefault(trace["transactionHash"], []).append(trace)
    return Traces(call_tracer=call_tracer, parity=parity, report=chain.report)


API = pytest.mark.parametrize("api", ["callTracer", "trace_block"])


def tx_hash(tx) -> str:
    return Web3.to_hex(tx["hash"])


def code_at(chain: Chain, address: str) -> bytes:
    return bytes(chain.w3.eth.get_code(to_checksum_address(address)))


def test_both_trace_apis_describe_the_same_call_trees(chain, traces):
    hashes = {tx_hash(tx) for tx in chain.transactions}
    assert set(traces.call_tracer) == set(traces.parity) == hashes
    for hash_ in hashes:
        assert call_tracer_frames(traces.call_tracer[hash_]) == parity_frames(traces.parity[hash_])


def test_trace_shape_statuses(chain, traces):
    receipts = {tx_hash(tx): chain.receipt(tx) for tx in chain.transactions}
    for shape, hash_ in chain.report.trace_shapes.items():
        assert receipts[hash_]["status"] == (0 if shape == "top_level_revert" else 1), shape


@API
def test_nested_calls_reach_depth_3_and_carry_value(traces, api):
    frames = traces.frames(api, "nested_calls")
    lab = frames[0].target
    payee = dev_account(9).address.lower()
    assert max(frame.depth for frame in frames) >= 3
    # lab.nest(3) -> nest(2) -> nest(1) -> nest(0), which pays the payee (value in inner calls)
    # and makes a DELEGATECALL and a STATICCALL to the lab.
    assert [(f.depth, f.kind, f.target, f.value) for f in frames] == [
        (0, "CALL", lab, TRACE_VALUE), (1, "CALL", lab, TRACE_VALUE), (2, "CALL", lab, TRACE_VALUE),
        (3, "CALL", lab, TRACE_VALUE), (4, "CALL", payee, TRACE_VALUE),
        (4, "DELEGATECALL", lab, TRACE_VALUE), (4, "STATICCALL", lab, 0)]
    assert not any(frame.failed for frame in frames)


@API
@pytest.mark.parametrize("shape, kind", [("create_from_contract", "CREATE"),
                                         ("create2_from_contract", "CREATE2")])
def test_a_contract_creates_a_contract(chain, traces, api, shape, kind):
    root, created = traces.frames(api, shape)
    assert (created.depth, created.kind, created.source) == (1, kind, root.target)
    assert created.value == TRACE_VALUE and not created.failed
    assert code_at(chain, created.target)  # still there
    if kind == "CREATE2":
        init = bytes.fromhex(contracts.TRACE_CHILD_BYTECODE[2:])
        expected = keccak(b"\xff" + bytes.fromhex(root.target[2:])
                          + CREATE2_SALT.to_bytes(32, "big") + keccak(init))[12:]
        assert created.target == "0x" + expected.hex()


@API
def test_an_inner_call_reverts_in_a_successful_transaction(traces, api):
    root, inner = traces.frames(api, "inner_revert")
    assert not root.failed
    assert inner.failed and inner.depth == 1 and inner.value == TRACE_VALUE


@API
def test_a_top_level_revert_keeps_its_inner_calls(traces, api):
    frames = traces.frames(api, "top_level_revert")
    assert frames[0].failed
    # The inner calls succeeded; the revert above them undoes their effects.
    assert len(frames) == 7 and max(frame.depth for frame in frames) == 4
    assert not any(frame.failed for frame in frames[1:])


@API
def test_selfdestruct_of_a_contract_created_in_the_same_transaction(chain, traces, api):
    root, create, destroy_call, destruct = traces.frames(api, "selfdestruct_new")
    child = create.target
    assert create.kind == "CREATE" and destroy_call.target == child
    assert (destruct.kind, destruct.depth, destruct.source) == ("SELFDESTRUCT", 2, child)
    assert destruct.target == dev_account(9).address.lower() and destruct.value == TRACE_VALUE
    # EIP-6780 (Cancun): created in the same transaction, so the account is gone.
    assert code_at(chain, child) == b""


@API
def test_selfdestruct_of_an_older_contract(chain, traces, api):
    root, destruct = traces.frames(api, "selfdestruct_old")
    elder = root.target
    assert (destruct.kind, destruct.depth, destruct.source) == ("SELFDESTRUCT", 1, elder)
    # Its balance: the value of its creation in block 1 and of this call.
    assert destruct.value == 2 * TRACE_VALUE
    # EIP-6780 (Cancun): an older contract only hands over its balance; its code stays.
    assert code_at(chain, elder)
    assert chain.w3.eth.get_balance(to_checksum_address(elder)) == 0


def test_call_tracer_details(traces):
    inner = traces.root("inner_revert")["calls"][0]
    assert (inner["error"], inner["revertReason"]) == ("execution reverted", "inner")
    top = traces.root("top_level_revert")
    assert (top["error"], top["revertReason"]) == ("execution reverted", "boom")


def test_trace_block_details(traces):
    assert [t.get("error") for t in traces.parity_of("inner_revert")] == [None, "Reverted"]
    assert traces.parity_of("top_level_revert")[0]["error"] == "Reverted"
    (_, create2) = traces.parity_of("create2_from_contract")
    assert create2["action"]["creationMethod"] == "create2"
    assert create2["action"]["init"] == contracts.TRACE_CHILD_BYTECODE
    for shape in ("selfdestruct_new", "selfdestruct_old"):
        suicide = traces.parity_of(shape)[-1]
        assert suicide["type"] == "suicide" and suicide["subtraces"] == 0
        assert set(suicide["action"]) == {"address", "refundAddress", "balance"}


def test_automine_is_restored(devnet, chain):
    assert devnet.call("anvil_getAutomine") is True


def test_same_call_on_a_fresh_anvil_gives_the_same_transactions(chain):
    with Devnet(port=free_port()) as other:
        generate_coverage(other.url, rounds=ROUNDS)
        w3 = Web3(HTTPProvider(other.url))
        again = [[tx.hex() for tx in w3.eth.get_block(n)["transactions"]]
                 for n in range(1, other.head() + 1)]
    assert again == [[tx["hash"].hex() for tx in block["transactions"]] for block in chain.blocks]


def test_generate_load_fills_blocks_exactly(devnet, chain):
    first = devnet.live_head() + 1
    report = generate_load(devnet.url, blocks=20, txs_per_block=10)
    assert report.blocks_mined == 20 and report.transactions == 200
    assert report.head == first + 19 == devnet.live_head()
    w3 = Web3(HTTPProvider(devnet.url))
    counts = [w3.eth.get_block_transaction_count(n) for n in range(first, first + 20)]
    assert counts == [10] * 20
    assert report.by_type["erc20_transfer"] > 0 and report.by_type["eth_transfer"] > 0
    receipts = w3.eth.get_block_receipts(first + 19)
    assert all(r["status"] == 1 for r in receipts)
    assert any(log["topics"][0] == TRANSFER_TOPIC and log["address"].lower() == report.token_address
               for r in receipts for log in r["logs"])
    assert devnet.call("anvil_getAutomine") is True
