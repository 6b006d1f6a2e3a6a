"""The devnet's chain as web3 reads it: an independent decoding path to compare rows against."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from web3 import HTTPProvider, Web3


def _hex(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.lower()
    return value.to_0x_hex().lower()


def _addr(value) -> str | None:
    return value.lower() if value is not None else None


def reference_rows(url: str, start: int, end: int) -> dict[str, list[dict]]:
    """Rows of blocks ``[start, end)`` for the columns web3 decodes, keyed like the bronze tables."""
    w3 = Web3(HTTPProvider(url))
    chain_id = w3.eth.chain_id
    rows: dict[str, list[dict]] = {"blocks": [], "transactions": [], "logs": []}
    for number in range(start, end):
        block = w3.eth.get_block(number, full_transactions=True)
        receipts = w3.eth.get_block_receipts(number)
        context = {
            "chain_id": chain_id,
            "block_number": block["number"],
            "block_hash": _hex(block["hash"]),
            "block_timestamp": datetime.fromtimestamp(block["timestamp"], tz=UTC),
        }
        rows["blocks"].append({
            **context,
            "parent_hash": _hex(block["parentHash"]),
            "miner": _addr(block["miner"]),
            "state_root": _hex(block["stateRoot"]),
            "transactions_root": _hex(block["transactionsRoot"]),
            "receipts_root": _hex(block["receiptsRoot"]),
            "logs_bloom": _hex(block["logsBloom"]),
            "gas_limit": block["gasLimit"],
            "gas_used": block["gasUsed"],
            "size": block["size"],
            "base_fee_per_gas": Decimal(block.get("baseFeePerGas")),
            "transaction_count": len(block["transactions"]),
            "blob_gas_used": block.get("blobGasUsed"),
            "excess_blob_gas": block.get("excessBlobGas"),
            "parent_beacon_block_root": _hex(block.get("parentBeaconBlockRoot")),
            "requests_hash": _hex(block.get("requestsHash")),
            "withdrawals_root": _hex(block.get("withdrawalsRoot")),
        })
        for tx, receipt in zip(block["transactions"], receipts, strict=True):
            rows["transactions"].append({
                **context,
                "transaction_index": tx["transactionIndex"],
                "transaction_hash": _hex(tx["hash"]),
                "nonce": tx["nonce"],
                "from_address": _addr(tx["from"]),
                "to_address": _addr(tx.get("to")),
                "value": Decimal(tx["value"]),
                "gas": tx["gas"],
                "input": _hex(tx["input"]),
                "transaction_type": tx["type"],
                "max_fee_per_gas": _dec(tx.get("maxFeePerGas")),
                "max_priority_fee_per_gas": _dec(tx.get("maxPriorityFeePerGas")),
                "max_fee_per_blob_gas": _dec(tx.get("maxFeePerBlobGas")),
                "blob_versioned_hashes": ([_hex(h) for h in tx["blobVersionedHashes"]]
                                          if "blobVersionedHashes" in tx else None),
                "access_list": ([{"address": _addr(e["address"]),
                                  "storage_keys": [_hex(k) for k in e["storageKeys"]]}
                                 for e in tx["accessList"]] if "accessList" in tx else None),
                "authorization_list": ([(_addr(a["address"]), a["nonce"])
                                        for a in tx["authorizationList"]]
                                       if "authorizationList" in tx else None),
                "receipt_status": receipt["status"],
                "receipt_gas_used": receipt["gasUsed"],
                "receipt_cumulative_gas_used": receipt["cumulativeGasUsed"],
                "receipt_effective_gas_price": _dec(receipt.get("effectiveGasPrice")),
                "receipt_contract_address": _addr(receipt.get("contractAddress")),
                "receipt_blob_gas_used": receipt.get("blobGasUsed"),
                "receipt_blob_gas_price": _dec(receipt.get("blobGasPrice")),
            })
            for entry in receipt["logs"]:
                rows["logs"].append({
                    **context,
                    "transaction_index": entry["transactionIndex"],
                    "transaction_hash": _hex(entry["transactionHash"]),
                    "log_index": entry["logIndex"],
                    "address": _addr(entry["address"]),
                    "data": _hex(entry["data"]),
                    "topics": [_hex(t) for t in entry["topics"]],
                })
    return rows


def _dec(value) -> Decimal | None:
    return None if value is None else Decimal(value)


def project(rows: list[dict], columns: list[str]) -> list[dict]:
    """Bronze rows (Arrow ``to_pylist``) reduced to the reference's columns, in the same form."""
    out = []
    for row in rows:
        item = {c: row[c] for c in columns}
        if "authorization_list" in item and item["authorization_list"] is not None:
            item["authorization_list"] = [(a["address"], a["nonce"])
                                          for a in item["authorization_list"]]
        out.append(item)
    return out
