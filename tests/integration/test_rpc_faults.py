"""ingestion.rpc against a real anvil behind a fault-injecting proxy.

Every fault is either retried to the exact answer anvil gives directly, or ends, after the retry
budget, in the documented exception with a message naming the call. Backoffs are tiny so the file
runs in seconds.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from email.utils import formatdate

import pytest
from fault_proxy import FORK_HASH, Fault, FaultProxy, Rule

from ingestion.devnet import free_port, rpc_call
from ingestion.rpc import (
    ChainIdMismatchError,
    MissingBlockError,
    RpcClient,
    RpcResponseError,
    RpcTransportError,
)

pytestmark = pytest.mark.devnet

FAST = dict(timeout_s=2.0, max_retries=3, backoff_base_s=0.01, backoff_max_s=0.05)


@pytest.fixture(scope="module")
def chain(devnet):
    """The shared session devnet: these tests only read it and compare with the node's answers."""
    return devnet


def live_head(chain) -> int:
    """The node's head now (a shared devnet may have grown since the fixture was built)."""
    return int(rpc_call(chain.url, "eth_blockNumber"), 16)


@pytest.fixture(scope="module")
def numbers(chain) -> list[int]:
    """20 consecutive blocks, some with transactions."""
    assert live_head(chain) >= 20
    return list(range(1, 21))


@pytest.fixture(scope="module")
def expected(chain, numbers):
    """What anvil answers directly: blocks and receipts by number."""
    blocks = {n: rpc_call(chain.url, "eth_getBlockByNumber", [hex(n), True]) for n in numbers}
    receipts = {n: rpc_call(chain.url, "eth_getBlockReceipts", [hex(n)]) for n in numbers}
    assert sum(len(r) for r in receipts.values()) >= 10, "the test chain needs transactions"
    return blocks, receipts


@pytest.fixture(scope="module")
def busy_block(expected) -> int:
    """A block with at least two transactions."""
    _, receipts = expected
    return next(n for n, r in receipts.items() if len(r) >= 2)


@pytest.fixture(scope="module")
def _proxy(chain):
    with FaultProxy(chain.url) as proxy:
        yield proxy


@pytest.fixture()
def proxy(_proxy):
    _proxy.reset()
    yield _proxy
    _proxy.reset()


@pytest.fixture()
def make_client(proxy):
    clients: list[RpcClient] = []

    def make(url: str | None = None, **options) -> RpcClient:
        client = RpcClient(url or proxy.url, **{**FAST, **options})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def blocks_of(expected, numbers):
    return [expected[0][n] for n in numbers]


def receipts_of(expected, numbers):
    return [expected[1][n] for n in numbers]


# -- the happy path -------------------------------------------------------------------------------


def test_blocks_and_receipts_equal_direct_answers(make_client, proxy, expected, numbers, chain):
    client = make_client(max_batch_size=7)
    assert client.check_chain_id(chain.chain_id) == chain.chain_id
    assert client.block_number() >= numbers[-1]
    blocks = client.get_blocks(numbers)
    assert blocks == blocks_of(expected, numbers)
    assert client.get_block_receipts(blocks) == receipts_of(expected, numbers)
    assert client.uses_block_receipts is True
    # 20 blocks in batches of at most 7; empty blocks need no receipts call.
    assert proxy.batch_sizes("eth_getBlockByNumber") == [7, 7, 6]
    assert proxy.count("eth_getBlockReceipts") == sum(1 for n in numbers if expected[1][n])


def test_fetch_raw_blocks(make_client, expected, numbers):
    from ingestion.transform import RawBlock

    raw = make_client().fetch_raw_blocks(numbers[0], numbers[-1] + 1)
    assert raw == [RawBlock(block=expected[0][n], receipts=expected[1][n]) for n in numbers]
    assert make_client().fetch_raw_blocks(5, 5) == []


def test_batch_replies_in_any_order(make_client, proxy, expected, numbers):
    proxy.push(Fault("reverse"))
    assert make_client().get_blocks(numbers) == blocks_of(expected, numbers)
    assert proxy.seen[0].fault == "reverse"


def test_concurrent_use_from_threads(make_client, proxy, expected, numbers):
    proxy.max_batch = 3
    client = make_client(max_batch_size=8)
    results: dict[int, list] = {}

    def work(k: int) -> None:
        results[k] = client.get_blocks(numbers)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k] == blocks_of(expected, numbers) for k in range(4))
    assert client.batch_size <= 3


# -- HTTP-level faults, retried to success --------------------------------------------------------


@pytest.mark.parametrize("fault", [
    Fault("status", status=500),
    Fault("status", status=502, body=b"<html>bad gateway</html>"),
    Fault("status", status=503),
    Fault("status", status=429, headers={"Retry-After": "0"}),
    Fault("status", status=408),
    Fault("drop"),
    Fault("reset"),
    Fault("truncate"),
    Fault("raw", body=b"not json at all"),
], ids=lambda f: f"{f.kind}-{f.status}" if f.kind == "status" else f.kind)
def test_fault_is_retried_to_the_direct_answer(make_client, proxy, expected, numbers, fault):
    proxy.push(fault, fault)
    assert make_client().get_blocks(numbers) == blocks_of(expected, numbers)
    assert [s.fault for s in proxy.seen[:3]] == [fault.kind, fault.kind, None]


def test_slow_reply_times_out_and_is_retried(make_client, proxy, expected, numbers):
    proxy.push(Fault("delay", delay=1.0))
    started = time.monotonic()
    assert make_client(timeout_s=0.3).get_blocks(numbers) == blocks_of(expected, numbers)
    assert time.monotonic() - started < 1.0  # it did not wait for the slow reply
    assert len(proxy.seen) == 2


def test_retry_after_is_honoured_and_capped(make_client, proxy, expected, numbers):
    client = make_client(backoff_max_s=5.0)
    delays: list[float] = []
    client._sleep = delays.append  # record instead of sleeping
    future = formatdate(time.time() + 3, usegmt=True)
    proxy.push(Fault("status", status=429, headers={"Retry-After": "2"}),
               Fault("status", status=429, headers={"Retry-After": "60"}),
               Fault("status", status=503, headers={"Retry-After": future}))
    assert client.get_blocks(numbers) == blocks_of(expected, numbers)
    assert delays[0] == 2.0
    assert delays[1] == 5.0  # capped at backoff_max_s
    assert 1.0 <= delays[2] <= 3.0  # HTTP-date form


def test_backoff_grows_with_full_jitter(make_client, proxy):
    client = make_client(max_retries=5, backoff_base_s=0.1, backoff_max_s=0.4)
    delays: list[float] = []
    client._sleep = delays.append
    proxy.push(*[Fault("status", status=500)] * 5)
    client.block_number()
    caps = [0.1, 0.2, 0.4, 0.4, 0.4]
    assert len(delays) == 5
    assert all(0 <= d <= cap for d, cap in zip(delays, caps, strict=True))


# -- faults that exhaust the retry budget ---------------------------------------------------------


@pytest.mark.parametrize(("fault", "error", "text"), [
    (Fault("status", status=503), RpcTransportError, "HTTP 503"),
    (Fault("status", status=429, headers={"Retry-After": "0"}), RpcTransportError, "HTTP 429"),
    (Fault("drop"), RpcTransportError, "RemoteProtocolError"),
    (Fault("truncate"), RpcResponseError, "invalid JSON"),
], ids=["503", "429", "drop", "truncate"])
def test_persistent_fault_fails_after_budget(make_client, proxy, fault, error, text):
    proxy.push(*[fault] * 4)
    with pytest.raises(error) as info:
        make_client().get_blocks([3, 4, 5])
    message = str(info.value)
    assert text in message
    assert "failed after 4 attempts" in message
    assert "batch of 3 calls (eth_getBlockByNumber, blocks 3..5)" in message
    assert proxy.url in message
    assert len(proxy.seen) == 4
    assert info.value.__cause__ is None


def test_persistent_timeout(make_client, proxy):
    proxy.push(Fault("delay", delay=0.8), Fault("delay", delay=0.8))
    with pytest.raises(RpcTransportError, match=r"eth_blockNumber\(\) to .* failed after 2 "
                                                r"attempts: timed out"):
        make_client(timeout_s=0.2, max_retries=1).block_number()


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_other_4xx_are_not_retried(make_client, proxy, status):
    proxy.push(Fault("status", status=status, body=b'{"message":"invalid project id"}'))
    with pytest.raises(RpcTransportError, match=f"HTTP {status}") as info:
        make_client().call("eth_blockNumber")
    assert "invalid project id" in str(info.value)
    assert len(proxy.seen) == 1


def test_connection_refused(make_client):
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RpcTransportError, match="ConnectError") as info:
        make_client(dead, max_retries=1).chain_id()
    assert "eth_chainId() to " + dead in str(info.value)


# -- reply-shape faults ---------------------------------------------------------------------------


def test_missing_reply_in_batch(make_client, proxy, busy_block):
    proxy.rules.append(Rule("eth_getBlockByNumber", "omit", block=busy_block))
    with pytest.raises(RpcResponseError) as info:
        make_client().get_blocks([busy_block - 1, busy_block, busy_block + 1])
    message = str(info.value)
    assert f'eth_getBlockByNumber("{hex(busy_block)}",true) [block {busy_block}]' in message
    assert "no reply with id 1" in message
    assert len(proxy.seen) == 1  # not retried


def test_error_object_for_one_call(make_client, proxy, busy_block):
    proxy.rules.append(Rule("eth_getBlockByNumber", "error", block=busy_block,
                            message="header not found"))
    with pytest.raises(RpcResponseError) as info:
        make_client().get_blocks([busy_block - 1, busy_block])
    assert f"[block {busy_block}] failed at {proxy.url}: error -32000: header not found" \
        in str(info.value)
    assert len(proxy.seen) == 1


def test_single_call_id_mismatch(make_client, proxy):
    proxy.push(Fault("raw", body=b'{"jsonrpc":"2.0","id":7,"result":"0x1"}'))
    with pytest.raises(RpcResponseError, match="reply id 7 does not match"):
        make_client().block_number()


def test_rate_limit_error_in_reply_is_retried(make_client, proxy, expected, numbers):
    body = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"rate limit exceeded"}}'
    proxy.push(Fault("raw", body=body))
    assert make_client().get_blocks(numbers[:1]) == blocks_of(expected, numbers[:1])
    assert len(proxy.seen) == 2


# -- null blocks ----------------------------------------------------------------------------------


def test_null_block_below_head_is_retried(make_client, proxy, expected, numbers, busy_block):
    proxy.rules.append(Rule("eth_getBlockByNumber", "null", block=busy_block, times=2))
    assert make_client().get_blocks(numbers) == blocks_of(expected, numbers)
    # Re-asked only for the null block.
    assert proxy.count("eth_getBlockByNumber") == len(numbers) + 2


def test_null_block_after_budget(make_client, proxy, chain, busy_block):
    proxy.rules.append(Rule("eth_getBlockByNumber", "null", block=busy_block, times=-1))
    with pytest.raises(MissingBlockError) as info:
        make_client().get_blocks([busy_block])
    assert str(info.value) == (f"block {busy_block} not available from {proxy.url} "
                               f"(head is {live_head(chain)}) after 4 attempts")


def test_block_beyond_head_fails_at_once(make_client, proxy, chain):
    head = live_head(chain)
    with pytest.raises(MissingBlockError) as info:
        make_client().get_blocks([head, head + 1, head + 2])
    assert str(info.value) == (f"block {head + 1} (and 1 more) not available from "
                               f"{proxy.url} (head is {head})")
    assert proxy.count("eth_getBlockByNumber") == 3  # no retry


# -- batch size -----------------------------------------------------------------------------------


@pytest.mark.parametrize("reject", ["413", "object", "items"])
def test_batch_too_large_halves_and_remembers(make_client, proxy, expected, numbers, reject):
    proxy.max_batch = 5
    proxy.batch_reject = reject
    client = make_client(max_batch_size=16)
    assert client.get_blocks(numbers) == blocks_of(expected, numbers)
    assert proxy.batch_sizes() == [16, 8, 4, 4, 4, 4, 4]
    assert client.batch_size == 4
    proxy.seen.clear()
    assert client.get_blocks(numbers[:6]) == blocks_of(expected, numbers[:6])
    assert proxy.batch_sizes() == [4, 2]  # the smaller size is kept


def test_node_without_batches_gets_single_requests(make_client, proxy, expected, numbers):
    proxy.max_batch = 1
    proxy.batch_reject = "object"
    client = make_client(max_batch_size=4)
    assert client.get_blocks(numbers[:5]) == blocks_of(expected, numbers[:5])
    assert client.batch_size == 1
    assert [s.batch for s in proxy.seen] == [True, True, False, False, False, False, False]


# -- receipts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["code", "message"])
def test_receipts_fall_back_to_per_transaction(make_client, proxy, expected, numbers, style):
    proxy.unsupported = {"eth_getBlockReceipts"}
    proxy.unsupported_style = style
    client = make_client(max_batch_size=5)
    blocks = blocks_of(expected, numbers)
    assert client.get_block_receipts(blocks) == receipts_of(expected, numbers)
    assert client.uses_block_receipts is False
    asked = proxy.count("eth_getBlockReceipts")
    n_txs = sum(len(b["transactions"]) for b in blocks)
    assert proxy.count("eth_getTransactionReceipt") == n_txs
    # Batched, and eth_getBlockReceipts is never asked again by this client.
    assert max(proxy.batch_sizes("eth_getTransactionReceipt")) == 5
    assert client.get_block_receipts(blocks) == receipts_of(expected, numbers)
    assert proxy.count("eth_getBlockReceipts") == asked


def test_null_receipts_are_retried(make_client, proxy, expected, busy_block):
    proxy.rules.append(Rule("eth_getBlockReceipts", "null", block=busy_block, times=2))
    blocks = [expected[0][busy_block]]
    assert make_client().get_block_receipts(blocks) == [expected[1][busy_block]]
    assert proxy.count("eth_getBlockReceipts") == 3


def test_null_receipts_after_budget(make_client, proxy, expected, busy_block):
    proxy.rules.append(Rule("eth_getBlockReceipts", "null", block=busy_block, times=-1))
    with pytest.raises(RpcResponseError) as info:
        make_client().get_block_receipts([expected[0][busy_block]])
    assert str(info.value) == (f'eth_getBlockReceipts("{hex(busy_block)}") [block {busy_block}] '
                               f"from {proxy.url}: null receipts after 4 attempts")


def test_null_transaction_receipt_retried_then_fails(make_client, proxy, expected, busy_block):
    proxy.unsupported = {"eth_getBlockReceipts"}
    first_tx = expected[0][busy_block]["transactions"][0]["hash"]
    proxy.rules.append(Rule("eth_getTransactionReceipt", "null", times=2))
    client = make_client()
    assert client.get_block_receipts([expected[0][busy_block]]) == [expected[1][busy_block]]
    proxy.rules.append(Rule("eth_getTransactionReceipt", "null", times=-1))
    with pytest.raises(RpcResponseError) as info:
        client.get_block_receipts([expected[0][busy_block]])
    assert str(info.value) == (f'eth_getTransactionReceipt("{first_tx}") (block {busy_block}) '
                               f"from {proxy.url}: null receipt after 4 attempts")


def test_receipts_from_another_fork_are_reread(make_client, proxy, expected, numbers, busy_block):
    from ingestion.transform import RawBlock

    # The first receipts answer names another block hash (a reorg between the two reads):
    # fetch_raw_blocks reads that block and its receipts again.
    proxy.rules.append(Rule("eth_getBlockReceipts", "fork", block=busy_block))
    raw = make_client().fetch_raw_blocks(numbers[0], numbers[-1] + 1)
    assert raw == [RawBlock(block=expected[0][n], receipts=expected[1][n]) for n in numbers]
    assert proxy.count("eth_getBlockByNumber") == len(numbers) + 1

    proxy.rules.append(Rule("eth_getBlockReceipts", "fork", block=busy_block, times=-1))
    with pytest.raises(RpcResponseError, match=f"belong to block {FORK_HASH}.*reorganised"):
        make_client().fetch_raw_blocks(busy_block, busy_block + 1)
    with pytest.raises(RpcResponseError, match="reorganised"):
        make_client().get_block_receipts([expected[0][busy_block]])


# -- chain id -------------------------------------------------------------------------------------


def test_wrong_chain_id(make_client, proxy, chain):
    proxy.chain_id = 5
    client = make_client()
    with pytest.raises(ChainIdMismatchError) as info:
        client.check_chain_id(chain.chain_id)
    assert str(info.value) == f"node at {proxy.url} reports chain id 5, expected {chain.chain_id}"
    assert client.check_chain_id(None) == 5
    assert client.check_chain_id(5) == 5


# -- rate limit -----------------------------------------------------------------------------------


def test_requests_per_second_paces_calls(make_client, proxy):
    client = make_client(requests_per_second=20)
    started = time.monotonic()
    for _ in range(6):
        client.block_number()
    assert time.monotonic() - started >= 0.24  # 5 intervals of 50 ms
    client = make_client(requests_per_second=100, max_batch_size=10)
    started = time.monotonic()
    client.batch([("eth_blockNumber", [])] * 20)  # two batches of 10 calls: 10 tokens each
    client.batch([("eth_blockNumber", [])] * 10)
    assert time.monotonic() - started >= 0.19


# -- secrets --------------------------------------------------------------------------------------

USER, PASSWORD = "alice_user", "hunter2pw"
KEY, APIKEY = "0123456789abcdef0123456789abcdef", "SECRETVALUE42"
SECRETS = (USER, PASSWORD, KEY, APIKEY)


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into: {text}"


def test_url_secrets_never_leak(make_client, proxy, chain, expected, busy_block, caplog):
    caplog.set_level(logging.DEBUG)
    secret_url = (f"http://{USER}:{PASSWORD}@127.0.0.1:{proxy.port}/v3/{KEY}"
                  f"?apikey={APIKEY}")
    shown = f"http://***@127.0.0.1:{proxy.port}/v3/***?apikey=***"
    client = make_client(secret_url)
    _assert_clean(repr(client))
    _assert_clean(repr(client.settings))
    assert client.get_blocks([busy_block]) == [expected[0][busy_block]]
    assert proxy.seen[-1].path == f"/v3/{KEY}?apikey={APIKEY}"  # the secret URL was used
    assert proxy.seen[-1].authorization.startswith("Basic ")

    failures = []

    def expect_failure(error: type[Exception], prepare=None, action=None) -> None:
        proxy.reset()
        if prepare:
            prepare()
        with pytest.raises(error) as info:
            (action or (lambda: client.get_blocks([busy_block])))()
        failures.append(info.value)

    expect_failure(RpcTransportError, lambda: proxy.push(*[Fault("status", status=503)] * 4))
    expect_failure(RpcTransportError, lambda: proxy.push(*[Fault("drop")] * 4))
    expect_failure(RpcResponseError, lambda: proxy.push(*[Fault("truncate")] * 4))
    # A node (or gateway) that echoes the URL back in its error text.
    expect_failure(RpcTransportError, lambda: proxy.push(Fault(
        "status", status=401, body=f"bad key {KEY} for {secret_url}".encode())))
    expect_failure(RpcResponseError, lambda: proxy.rules.append(Rule(
        "eth_getBlockByNumber", "error", message=f"invalid apikey {APIKEY} from {USER}")))
    expect_failure(MissingBlockError, action=lambda: client.get_blocks([live_head(chain) + 5]))
    expect_failure(ChainIdMismatchError, lambda: setattr(proxy, "chain_id", 5),
                   lambda: make_client(secret_url).check_chain_id(chain.chain_id))
    expect_failure(RpcTransportError, action=lambda: make_client(
        f"http://{USER}:{PASSWORD}@127.0.0.1:{free_port()}/v3/{KEY}?apikey={APIKEY}",
        max_retries=1).block_number())

    for exc in failures:
        text = "".join(traceback.format_exception(exc))
        _assert_clean(text)
        _assert_clean(repr(exc))
        assert "***" in str(exc)
    assert shown in str(failures[0])

    # The receipts fallback and the batch halving log warnings that name the node.
    proxy.reset()
    proxy.unsupported = {"eth_getBlockReceipts"}
    proxy.max_batch = 1
    proxy.batch_reject = "413"
    client.get_block_receipts([expected[0][busy_block]])

    records = caplog.records
    assert any(r.name == "chainlake.rpc" and r.levelno == logging.WARNING for r in records)
    assert any(r.name == "httpx" and shown in r.getMessage() for r in records)
    for record in records:
        _assert_clean(record.getMessage())
    _assert_clean(caplog.text)
