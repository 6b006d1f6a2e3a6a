"""ingestion.rpc without a node: URL redaction, settings validation, error classification."""

from __future__ import annotations

import logging
import pickle
import time
from email.utils import formatdate

import httpx
import pytest

from ingestion.rpc import RpcClient, RpcSettings, protocol, redact_url

INFURA_KEY = "0123456789abcdef0123456789abcdef"
ALCHEMY_KEY = "Xy7_kQ2-rT9vLm3NpW8sZc4Hd6Jf1Bg0"


@pytest.mark.parametrize(("url", "shown"), [
    (f"https://mainnet.infura.io/v3/{INFURA_KEY}", "https://mainnet.infura.io/v3/***"),
    (f"https://eth-mainnet.g.alchemy.com/v2/{ALCHEMY_KEY}",
     "https://eth-mainnet.g.alchemy.com/v2/***"),
    ("https://alice:s3cr3t@node.example.com:8545/", "https://***@node.example.com:8545/"),
    ("https://token-only@node.example.com/rpc", "https://***@node.example.com/rpc"),
    ("https://rpc.example.com/?apikey=SECRET&network=mainnet",
     "https://rpc.example.com/?apikey=***&network=***"),
    ("https://rpc.example.com/eth?key=abc123", "https://rpc.example.com/eth?key=***"),
    ("https://lb.drpc.org/ogrpc?network=ethereum&dkey=Ak3yV4lue",
     "https://lb.drpc.org/ogrpc?network=***&dkey=***"),
    ("https://x.example.com/rpc?token=t0k3n#frag", "https://x.example.com/rpc?token=***#***"),
    ("https://wild-sky.quiknode.pro/4f0c8e2a9b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e/",
     "https://wild-sky.quiknode.pro/***/"),
    ("https://rpc.ankr.com/eth/" + "ab12" * 16, "https://rpc.ankr.com/eth/***"),
    ("https://eth-mainnet.blastapi.io/5f1c2a3b-4d5e-6f70-8192-a3b4c5d6e7f8",
     "https://eth-mainnet.blastapi.io/***"),
    # Nothing secret: unchanged.
    ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
    ("http://localhost:8545/", "http://localhost:8545/"),
    ("http://[::1]:8545", "http://[::1]:8545"),
    ("https://rpc.ankr.com/eth", "https://rpc.ankr.com/eth"),
    ("https://node.example.com/ethereum-mainnet-archive", "https://node.example.com/ethereum-mainnet-archive"),
    ("https://cloudflare-eth.com/v1/mainnet", "https://cloudflare-eth.com/v1/mainnet"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_url_combined():
    url = f"https://bob:pw123456@mainnet.infura.io:443/v3/{INFURA_KEY}?apikey=SECRET42"
    shown = redact_url(url)
    assert shown == "https://***@mainnet.infura.io:443/v3/***?apikey=***"
    for secret in ("bob", "pw123456", INFURA_KEY, "SECRET42"):
        assert secret not in shown


@pytest.mark.parametrize("junk", [
    "", "not a url", "http://[::1", "alice:hunter2@host:8545/" + INFURA_KEY,
    "ftp://alice:hunter2@host/x?apikey=SECRET42", None, 42,
])
def test_redact_url_never_raises_or_leaks(junk):
    shown = redact_url(junk)
    assert isinstance(shown, str)
    for secret in ("hunter2", INFURA_KEY, "SECRET42"):
        assert secret not in shown


def test_settings_defaults_and_repr():
    settings = RpcSettings(f"https://alice:pw@mainnet.infura.io/v3/{INFURA_KEY}")
    assert (settings.timeout_s, settings.max_retries, settings.backoff_base_s,
            settings.backoff_max_s, settings.max_batch_size, settings.requests_per_second) \
        == (30.0, 6, 0.25, 20.0, 100, None)
    text = repr(settings)
    assert "https://***@mainnet.infura.io/v3/***" in text
    assert INFURA_KEY not in text and "pw" not in text.replace("***", "")
    assert pickle.loads(pickle.dumps(settings)) == settings


@pytest.mark.parametrize(("field", "value", "text"), [
    ("timeout_s", 0, "timeout_s must be > 0"),
    ("timeout_s", -1.0, "timeout_s must be > 0"),
    ("max_retries", -1, "max_retries must be an integer >= 0"),
    ("max_retries", 1.5, "max_retries must be an integer >= 0"),
    ("backoff_base_s", -0.1, "backoff_base_s must be >= 0"),
    ("backoff_max_s", 0.1, "backoff_max_s (0.1) must be >= backoff_base_s"),
    ("max_batch_size", 0, "max_batch_size must be an integer >= 1"),
    ("requests_per_second", 0, "requests_per_second must be > 0 or None"),
    ("requests_per_second", -5.0, "requests_per_second must be > 0 or None"),
])
def test_settings_validation(field, value, text):
    with pytest.raises(ValueError, match=text.replace("(", r"\(").replace(")", r"\)")):
        RpcSettings("http://127.0.0.1:8545", **{field: value})
    with pytest.raises(ValueError, match=text.replace("(", r"\(").replace(")", r"\)")):
        RpcClient("http://127.0.0.1:8545", **{field: value})


@pytest.mark.parametrize("url", [
    "localhost:8545", "127.0.0.1:8545", "ws://127.0.0.1:8545", "ftp://node.example.com",
    "http://", "https://:8545/", "http://127.0.0.1:99999", "", "   ",
])
def test_invalid_url(url):
    with pytest.raises(ValueError, match="invalid RPC URL"):
        RpcClient(url)


def test_invalid_url_message_hides_secrets():
    with pytest.raises(ValueError, match="invalid RPC URL") as info:
        RpcClient(f"ftp://alice:hunter2@node.example.com/v3/{INFURA_KEY}?apikey=SECRET42")
    for secret in ("hunter2", INFURA_KEY, "SECRET42"):
        assert secret not in str(info.value)


def test_client_is_cheap_and_lazy():
    # Nothing listens there: construction must not connect.
    client = RpcClient(f"http://alice:pw@127.0.0.1:9/v3/{INFURA_KEY}", max_batch_size=7)
    assert client._http is None
    assert repr(client) == "RpcClient('http://***@127.0.0.1:9/v3/***', batch_size=7)"
    assert client.settings.max_batch_size == 7
    client.close()
    with RpcClient.from_settings(RpcSettings("http://127.0.0.1:9")) as other:
        assert other.batch_size == 100
    started = time.perf_counter()
    for _ in range(200):
        RpcClient("http://127.0.0.1:8545")
    assert time.perf_counter() - started < 0.5


def test_httpx_log_lines_are_redacted():
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, 'HTTP Request: %s %s "%s %d %s"',
        ("POST", httpx.URL(f"http://alice:pw@127.0.0.1:8545/v3/{INFURA_KEY}?apikey=S3CR3T"),
         "HTTP/1.1", 200, "OK"), None)
    for f in logging.getLogger("httpx").filters:
        f.filter(record)
    message = record.getMessage()
    assert message == ('HTTP Request: POST http://***@127.0.0.1:8545/v3/***?apikey=*** '
                       '"HTTP/1.1 200 OK"')


@pytest.mark.parametrize(("value", "low", "high"), [
    ("3", 3.0, 3.0), ("0", 0.0, 0.0), ("1.5", 1.5, 1.5),
    ("garbage", None, None), (None, None, None),
])
def test_retry_after_seconds(value, low, high):
    got = protocol.retry_after_seconds(value)
    assert got == low if low is None else low <= got <= high


def test_retry_after_http_date():
    assert 2.0 <= protocol.retry_after_seconds(formatdate(time.time() + 4, usegmt=True)) <= 4.0
    assert protocol.retry_after_seconds(formatdate(time.time() - 60, usegmt=True)) == 0.0


@pytest.mark.parametrize(("code", "message", "method", "expected"), [
    (-32601, "Method not found", None, True),
    (-32000, "the method eth_getBlockReceipts does not exist/is not available", None, True),
    (-32600, "Unsupported method: eth_getBlockReceipts", "eth_getBlockReceipts", True),
    (-32000, "eth_getBlockReceipts is not supported", "eth_getBlockReceipts", True),
    (-32000, "header not found", "eth_getBlockReceipts", False),  # geth: unknown block
    (-32000, "block not found", "eth_getBlockByNumber", False),
])
def test_method_not_found_classification(code, message, method, expected):
    assert protocol.is_method_not_found(code, message, method) is expected


@pytest.mark.parametrize(("message", "batch", "rate"), [
    ("batch too large", True, False),
    ("batch size exceeds limit of 100", True, False),
    ("Batch limit exceeded", True, False),
    ("rate limit exceeded", False, True),
    ("Too Many Requests", False, True),
    ("header not found", False, False),
])
def test_error_classification(message, batch, rate):
    assert protocol.is_batch_too_large(-32000, message) is batch
    assert protocol.is_rate_limited(-32000, message) is rate


def test_call_descriptions_name_the_block():
    assert protocol.describe_call("eth_getBlockByNumber", ["0x4d2", True]) == \
        'eth_getBlockByNumber("0x4d2",true) [block 1234]'
    assert protocol.describe_chunk([("eth_getBlockByNumber", [hex(n), True]) for n in (7, 9, 8)]) \
        == "batch of 3 calls (eth_getBlockByNumber, blocks 7..9)"
