"""The traffic generator, read back through web3 from the shared session devnet: every transaction
shape the bronze tables must hold is really on the chain, and the load generator fills blocks
exactly. Only the determinism test starts a second, fresh anvil (that is what it tests)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from web3 import HTTPProvider, Web3

from ingestion import contracts
from ingestion.devnet import Devnet, free_port
from ingestion.traffic import TrafficReport, dev_account, generate_coverage, generate_load

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
    assert len(reverted) == ROUNDS
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
