"""Traces of the session devnet (anvil) through both trace APIs, fetched and transformed as
ingestion does: ``detect_trace_api``, ``fetch_traces``, ``traces_from_geth`` and
``traces_from_parity`` on the same blocks.

The two APIs agree row for row on every fact they both carry. What differs, and why:

* ``gas_used`` of a top-level frame: geth's callTracer reports the transaction's gas used
  (intrinsic gas included, as in the receipt), the parity API leaves intrinsic gas out (as for
  every inner frame); anvil 1.7's callTracer even reports the block's cumulative gas there. anvil
  gives both APIs the same top-level ``gas`` (the gas limit less intrinsic gas); geth itself
  reports the gas limit there.
* ``error``: each node's own words ("execution reverted" / "Reverted").
* ``output`` of a failed frame: geth omits it unless the frame reverted with data, anvil's parity
  API gives "0x".
* Block rewards: only the parity API traces them; a post-merge devnet has none.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ingestion.datasets.traces import (
    TRACES,
    detect_trace_api,
    fetch_traces,
    traces_from_geth,
    traces_from_parity,
)
from ingestion.rpc import RpcClient

pytestmark = pytest.mark.devnet

# Columns where the two APIs must say exactly the same (see the module docstring for the rest).
SAME = [c for c in TRACES.column_names if c not in ("gas_used", "error", "output")]


@dataclass
class Traced:
    headers: list[dict]
    receipts: dict[str, dict]  # transaction hash -> receipt
    geth: list[dict]
    parity: list[dict]
    api: str


@pytest.fixture(scope="module")
def traced(devnet) -> Traced:
    numbers = list(range(1, devnet.head + 1))
    with RpcClient(devnet.url) as client:
        api = detect_trace_api(client)
        headers = client.get_blocks(numbers, full_transactions=False)
        receipts = {r["transactionHash"]: r
                    for block in client.batch([("eth_getBlockReceipts", [hex(n)]) for n in numbers])
                    for r in block}
        geth = traces_from_geth(devnet.chain_id, headers, fetch_traces(client, numbers, "geth"))
        parity = traces_from_parity(devnet.chain_id, headers,
                                    fetch_traces(client, numbers, "parity"))
    for batch in (geth, parity):
        assert batch.schema.equals(TRACES.arrow_schema)
        batch.validate(full=True)
    return Traced(headers, receipts, geth.to_pylist(), parity.to_pylist(), api)


def test_anvil_serves_both_and_parity_is_preferred(traced):
    assert traced.api == "parity"


def test_one_top_level_trace_per_transaction_with_the_receipt_status(traced):
    for rows in (traced.geth, traced.parity):
        roots = [r for r in rows if r["trace_address"] == []]
        assert [r["transaction_hash"] for r in roots] == [
            h for block in traced.headers for h in block["transactions"]]
        for r in roots:
            assert r["status"] == int(traced.receipts[r["transaction_hash"]]["status"], 16), r
    # Inner traces of a failed transaction failed too.
    failed = {r["transaction_hash"] for r in traced.parity if r["trace_address"] == []
              and r["status"] == 0}
    assert failed, "the devnet has reverted transactions"
    assert all(r["status"] == 0 for r in traced.parity if r["transaction_hash"] in failed)


def test_geth_and_parity_rows_agree(traced):
    geth, parity = traced.geth, traced.parity
    assert not any(r["trace_type"] == "reward" for r in parity)  # post-merge: no rewards
    assert len(geth) == len(parity) > len(traced.receipts)
    for g, p in zip(geth, parity, strict=True):
        where = p["trace_id"]
        assert {c: g[c] for c in SAME} == {c: p[c] for c in SAME}, where
        assert (g["error"] is None) == (p["error"] is None), where
        if p["error"] is None:
            assert g["output"] == p["output"], where
        else:
            assert g["output"] in (p["output"], None), where
        if p["trace_address"] or p["trace_type"] == "suicide":
            assert g["gas_used"] == p["gas_used"], where
        else:  # top level: the parity API leaves intrinsic gas (21,000 at least) out
            receipt = traced.receipts[p["transaction_hash"]]
            assert int(receipt["gasUsed"], 16) - p["gas_used"] >= 21_000, where
            # geth reports the receipt's gasUsed; anvil 1.7's debug_traceBlockByNumber reports
            # the block's gas used so far (the receipt's cumulativeGasUsed), a node bug kept as
            # the node says it (the transform cannot know: it has no receipts).
            assert g["gas_used"] in (int(receipt["gasUsed"], 16),
                                     int(receipt["cumulativeGasUsed"], 16)), where


def test_every_trace_kind_is_on_the_devnet(devnet, traced):
    """The coverage traffic makes every call-trace shape (``TrafficReport.trace_shapes``)."""
    assert devnet.coverage.trace_shapes
    inner = {(r["trace_type"], r["call_type"]) for r in traced.parity if r["trace_address"]}
    assert {("call", "call"), ("call", "delegatecall"), ("call", "staticcall"), ("create", None),
            ("suicide", None)} <= inner
    suicides = [r for r in traced.parity if r["trace_type"] == "suicide"]
    assert all(r["gas"] is None and r["input"] is None and r["output"] is None for r in suicides)
    # An inner revert in a successful transaction: that frame failed, its transaction did not.
    assert any(r["status"] == 0 and r["trace_address"] for r in traced.parity
               if traced.receipts[r["transaction_hash"]]["status"] == "0x1")


@pytest.mark.parametrize("api", ["parity", "geth"])
def test_the_spark_source_reads_traces_as_the_transform_builds_them(spark, devnet, traced, api):
    """`spark.read.format("evm").option("dataset", "traces")`: the same rows as the pure path,
    in the declared schema, with the API forced or (parity) chosen by the node."""
    options = {"rpc_url": devnet.url, "start_block": "1", "end_block": str(devnet.head + 1),
               "dataset": "traces", "blocks_per_partition": "7"}
    if api == "geth":
        options["trace_api"] = "geth"
    rows = spark.read.format("evm").options(**options).load().toArrow()
    assert rows.schema.equals(TRACES.arrow_schema)
    expected = traced.parity if api == "parity" else traced.geth
    key = ("block_number", "trace_index")
    assert sorted(rows.to_pylist(), key=lambda r: tuple(r[k] for k in key)) == expected
