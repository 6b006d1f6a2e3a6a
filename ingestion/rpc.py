"""JSON-RPC over HTTP for bulk reads: batched, retried, rate-limited, and never leaking the URL.

``RpcClient`` speaks plain JSON-RPC with httpx (one pooled keep-alive ``httpx.Client``) and orjson.
It is cheap to build (the HTTP client is created on first use), so the Spark source builds one per
task from plain options; it is not meant to be pickled.

What it does for every request:

* **Batching.** Calls go out as JSON-RPC arrays of at most ``max_batch_size`` calls; replies are
  matched by ``id`` (any order). A node that rejects a batch as too large (HTTP 413, an error that
  says the batch is too large, or a single error object in reply to an array) gets half the size,
  down to 1 (a plain, non-array request), and the client keeps the smaller size.
* **Retries** with exponential backoff and full jitter on connection errors, timeouts, HTTP 408,
  429 (``Retry-After`` in seconds or as an HTTP date, capped at ``backoff_max_s``) and 5xx,
  rate-limit errors in JSON-RPC replies, and bodies that are not valid JSON. Other 4xx are not
  retried. After ``max_retries`` retries: ``RpcTransportError`` or ``RpcResponseError``.
* **Null results.** A ``null`` block at or below the node's head (load-balanced nodes lag) is
  retried; one above the head is a ``MissingBlockError`` at once. Null or inconsistent receipts are
  retried, then ``RpcResponseError``.
* **Receipts** come from ``eth_getBlockReceipts``; a node without it ("method not found") makes the
  client switch, for its lifetime, to batched ``eth_getTransactionReceipt``.
* **Rate limit.** ``requests_per_second`` paces JSON-RPC *calls* (a batch of n calls takes n
  tokens, as providers count them), shared by all threads using the client.
* **Secrets.** The URL appears in messages, logs and reprs only through ``redact_url``; text that
  comes from the network (httpx errors, error bodies, node messages) is scrubbed of the URL's
  secret parts, and exceptions are raised ``from None`` so no httpx exception (whose text may hold
  the URL) is chained. Importing this module adds a filter to the ``httpx`` logger that redacts
  the URLs in its "HTTP Request: ..." lines.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
import orjson

if TYPE_CHECKING:
    from ingestion.transform import RawBlock

__all__ = [
    "ChainIdMismatchError",
    "MissingBlockError",
    "RpcClient",
    "RpcError",
    "RpcMethodNotFoundError",
    "RpcResponseError",
    "RpcSettings",
    "RpcTransportError",
    "redact_url",
]

log = logging.getLogger("chainlake.rpc")

# ---------------------------------------------------------------------------------------------
# Errors


class RpcError(RuntimeError):
    """Any JSON-RPC failure. Messages name the endpoint only by its redacted URL."""


class RpcTransportError(RpcError):
    """The request did not get a usable HTTP reply: connection refused or reset, timeout, HTTP
    5xx or 429 after the retry budget, or an HTTP error status that is not retried (401, 404...)."""


class RpcResponseError(RpcError):
    """The node replied, but not with what was asked: invalid or truncated JSON, wrong shape, a
    missing or mismatched id, a JSON-RPC error object, or null/inconsistent receipts."""


class RpcMethodNotFoundError(RpcResponseError):
    """The node does not implement the method (JSON-RPC -32601 or an equivalent message)."""


class ChainIdMismatchError(RpcError):
    """The node serves another chain than the one expected."""


class MissingBlockError(RpcError):
    """The node returned null for a block: beyond its head, or still null after the retries."""


# ---------------------------------------------------------------------------------------------
# URL redaction

_REDACTED = "***"
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-.~%]+")
_WORDS = re.compile(r"[a-z]+(?:[-_.][a-z]+)*")  # "eth-mainnet", "ethereum_archive": not keys
_API_VERSION = re.compile(r"v\d+", re.IGNORECASE)
_LONG_TOKEN = re.compile(r"[A-Za-z0-9_\-~%]{16,}")
_WEB_SCHEMES = ("http", "https", "ws", "wss")


def _secret_segment(segment: str, previous: str) -> bool:
    """Does a path segment look like an API key?

    Anything of 8+ characters right after an API-version segment (Infura ``/v3/<key>``, Alchemy
    ``/v2/<key>``), and any token of 16+ URL-safe characters that is not plain lower-case words
    (QuickNode, Ankr, Chainstack, GetBlock put 32-64 character keys straight in the path).
    """
    if not segment:
        return False
    if _API_VERSION.fullmatch(previous) and len(segment) >= 8:
        return True
    return (len(segment) >= 16 and _TOKEN_CHARS.fullmatch(segment) is not None
            and _WORDS.fullmatch(segment) is None)


def _redact_query(query: str) -> str:
    if not query:
        return ""
    parts = []
    for piece in query.split("&"):
        name, eq, _value = piece.partition("=")
        parts.append(f"{name}={_REDACTED}" if eq else (_REDACTED if piece else piece))
    return "&".join(parts)


def _redact_freeform(text: str) -> str:
    """Best-effort redaction of something that does not parse as a web URL."""
    text = re.sub(r"[^\s/@]*@", f"{_REDACTED}@", text)  # user:pass@
    text = re.sub(r"=[^&#\s]*", f"={_REDACTED}", text)  # query values
    text = re.sub(r"#.*", f"#{_REDACTED}", text)
    return _LONG_TOKEN.sub(
        lambda m: m.group(0) if _WORDS.fullmatch(m.group(0)) else _REDACTED, text)


def redact_url(url: str) -> str:
    """The URL with its credentials hidden, for messages and logs.

    Keeps scheme, host and port and the shape of the path; replaces ``user:pass@`` by ``***@``,
    path segments that look like API keys by ``***``, every query value by ``***`` and any
    fragment by ``***``. ``http://127.0.0.1:8545`` is returned unchanged. Never raises.
    """
    if not isinstance(url, str):
        return _REDACTED
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in _WEB_SCHEMES or not parts.netloc:
            return _redact_freeform(url.strip())
        userinfo, at, hostport = parts.netloc.rpartition("@")
        netloc = f"{_REDACTED}@{hostport}" if at else hostport
        segments = parts.path.split("/")
        path = "/".join(
            _REDACTED if _secret_segment(seg, segments[i - 1] if i else "") else seg
            for i, seg in enumerate(segments)
        )
        query = _redact_query(parts.query)
        fragment = _REDACTED if parts.fragment else ""
        return urlunsplit((parts.scheme, netloc, path, query, fragment))
    except Exception:  # noqa: BLE001 - a redactor must never fail
        return "<unparseable URL>"


def _url_secrets(url: str) -> list[str]:
    """The substrings of ``url`` that ``redact_url`` hides (and their unquoted forms), longest
    first, for scrubbing text that came from the network. Fragments under 4 characters are
    skipped: too short to be a credential and too likely to garble the message."""
    found: set[str] = {url, url.strip()}
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return sorted(found, key=len, reverse=True)
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        user, _, password = userinfo.partition(":")
        found.update((userinfo, user, password))
    segments = parts.path.split("/")
    found.update(seg for i, seg in enumerate(segments)
                 if _secret_segment(seg, segments[i - 1] if i else ""))
    for piece in parts.query.split("&"):
        found.add(piece.partition("=")[2] or piece)
    found.add(parts.fragment)
    found |= {unquote(s) for s in found}
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


class _RedactHttpxUrls(logging.Filter):
    """httpx logs ``HTTP Request: POST <url> ...`` at INFO, credentials included: redact them."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, httpx.URL) for a in args):
            record.args = tuple(redact_url(str(a)) if isinstance(a, httpx.URL) else a
                                for a in args)
        return True


def _install_httpx_filter() -> None:
    logger = logging.getLogger("httpx")
    if not any(type(f).__name__ == _RedactHttpxUrls.__name__ for f in logger.filters):
        logger.addFilter(_RedactHttpxUrls())


_install_httpx_filter()

# ---------------------------------------------------------------------------------------------
# Settings

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_RETRIES = 6
DEFAULT_BACKOFF_BASE_S = 0.25
DEFAULT_BACKOFF_MAX_S = 20.0
DEFAULT_MAX_BATCH_SIZE = 100


@dataclass(frozen=True, repr=False)
class RpcSettings:
    """Everything an ``RpcClient`` needs: plain values, safe to pickle and ship to Spark tasks.

    ``repr`` shows the URL redacted. Invalid values raise ``ValueError`` at construction.
    """

    url: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_base_s: float = DEFAULT_BACKOFF_BASE_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    requests_per_second: float | None = None

    def __post_init__(self) -> None:
        _validate_url(self.url)
        if not 0 < self.timeout_s < float("inf"):  # NaN fails too
            raise ValueError(f"timeout_s must be > 0 and finite, got {self.timeout_s!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) \
                or self.max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")
        if not self.backoff_base_s >= 0:
            raise ValueError(f"backoff_base_s must be >= 0, got {self.backoff_base_s!r}")
        if not self.backoff_max_s >= self.backoff_base_s:
            raise ValueError(f"backoff_max_s ({self.backoff_max_s!r}) must be >= backoff_base_s "
                             f"({self.backoff_base_s!r})")
        if isinstance(self.max_batch_size, bool) or not isinstance(self.max_batch_size, int) \
                or self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be an integer >= 1, got {self.max_batch_size!r}")
        if self.requests_per_second is not None \
                and not 0 < self.requests_per_second < float("inf"):
            raise ValueError(f"requests_per_second must be > 0 or None (and finite), got "
                             f"{self.requests_per_second!r}")

    def __repr__(self) -> str:
        return (f"RpcSettings(url={redact_url(self.url)!r}, timeout_s={self.timeout_s!r}, "
                f"max_retries={self.max_retries!r}, backoff_base_s={self.backoff_base_s!r}, "
                f"backoff_max_s={self.backoff_max_s!r}, max_batch_size={self.max_batch_size!r}, "
                f"requests_per_second={self.requests_per_second!r})")


def _validate_url(url: object) -> None:
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"invalid RPC URL {url!r}: expected an http:// or https:// URL")
    shown = redact_url(url)
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises ValueError on a bad port
    except ValueError as err:
        raise ValueError(f"invalid RPC URL {shown!r}: {_scrub_with(str(err), url)}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"invalid RPC URL {shown!r}: expected an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"invalid RPC URL {shown!r}: no host")
    del port  # parsed only to validate it


def _scrub_with(text: str, url: str) -> str:
    for secret in _url_secrets(url):
        text = text.replace(secret, _REDACTED)
    return text


# ---------------------------------------------------------------------------------------------
# Internals: control flow between the layers of a request


class _Retryable(Exception):  # noqa: N818 - internal signal, not an error
    """This attempt failed in a way worth retrying."""

    def __init__(self, final: type[RpcError], cause: str, retry_after: float | None = None):
        super().__init__(cause)
        self.final = final
        self.cause = cause
        self.retry_after = retry_after


class _BatchTooLarge(Exception):  # noqa: N818 - internal signal, not an error
    """The node rejected an array request because of its size."""


class _Pacer:
    """Thread-safe pacing to ``rate`` tokens per second (a batch of n calls takes n tokens)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self, tokens: int, sleep: Callable[[float], None]) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + tokens * self._interval
        if start > now:
            sleep(start - now)


_BLOCK_PARAM_LIMIT = 18  # "0x" + 16 hex digits: a quantity, not a 32-byte hash


def _block_of(method: str, params: Sequence[Any]) -> int | None:
    """The block number a call is about, if it names one by number."""
    if "Block" in method and params and isinstance(params[0], str) \
            and params[0].startswith("0x") and len(params[0]) <= _BLOCK_PARAM_LIMIT:
        try:
            return int(params[0], 16)
        except ValueError:
            return None
    return None


def _describe_call(method: str, params: Sequence[Any]) -> str:
    text = orjson.dumps(list(params)).decode()
    if len(text) > 160:
        text = text[:157] + "..."
    block = _block_of(method, params)
    return f"{method}({text[1:-1]})" + (f" [block {block}]" if block is not None else "")


def _describe_chunk(chunk: Sequence[tuple[str, Sequence[Any]]]) -> str:
    if len(chunk) == 1:
        return _describe_call(*chunk[0])
    methods = ", ".join(sorted({m for m, _ in chunk}))
    blocks = [b for m, p in chunk if (b := _block_of(m, p)) is not None]
    where = f", blocks {min(blocks)}..{max(blocks)}" if blocks else ""
    return f"batch of {len(chunk)} calls ({methods}{where})"


def _error_text(error: Any) -> tuple[int | None, str]:
    if isinstance(error, dict):
        code = error.get("code")
        message = str(error.get("message", ""))
        data = error.get("data")
        if data not in (None, "", message):
            message = f"{message} ({str(data)[:200]})"
        return (code if isinstance(code, int) else None), message
    return None, str(error)[:300]


def _is_batch_too_large(code: int | None, message: str) -> bool:
    m = message.lower()
    return "batch" in m and any(k in m for k in (
        "too large", "too big", "exceed", "limit", "max", "size", "too many"))


def _is_rate_limited(code: int | None, message: str) -> bool:
    m = message.lower()
    return (code in (429, -32005) or "rate limit" in m or "too many requests" in m
            or ("exceeded" in m and "rate" in m))


def _is_method_not_found(code: int | None, message: str, method: str | None) -> bool:
    """JSON-RPC -32601, or a message saying the *method* is not found / not supported.

    A bare "not found" is not enough: geth says "header not found" for an unknown block.
    """
    if code == -32601:
        return True
    m = message.lower()
    about_method = "method" in m or (method is not None and method.lower() in m)
    return about_method and any(k in m for k in (
        "not found", "not supported", "does not exist", "unsupported", "not available",
        "not implemented"))


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _tx_hash(tx: Any) -> str:
    return tx["hash"] if isinstance(tx, dict) else tx


def _same_hash(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower())


# ---------------------------------------------------------------------------------------------
# The client


class RpcClient:
    """A JSON-RPC client for bulk reads. Thread-safe; use as a context manager or ``close()``.

    ``RpcClient(url, timeout_s=..., max_retries=..., backoff_base_s=..., backoff_max_s=...,
    max_batch_size=..., requests_per_second=...)`` or ``RpcClient.from_settings(settings)``.
    Construction validates the settings (``ValueError``) and opens nothing.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_base_s: float = DEFAULT_BACKOFF_BASE_S,
        backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        requests_per_second: float | None = None,
    ) -> None:
        self._init(RpcSettings(
            url=url, timeout_s=timeout_s, max_retries=max_retries, backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s, max_batch_size=max_batch_size,
            requests_per_second=requests_per_second))

    @classmethod
    def from_settings(cls, settings: RpcSettings) -> RpcClient:
        client = cls.__new__(cls)
        client._init(settings)
        return client

    def _init(self, settings: RpcSettings) -> None:
        self.settings = settings
        self._url = settings.url.strip()
        self.redacted_url = redact_url(self._url)
        self._secrets = _url_secrets(self._url)
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()
        self._batch_size = settings.max_batch_size
        self._block_receipts: bool | None = None  # None: not tried yet; False: use per-tx
        self._chain_id: int | None = None
        self._pacer = _Pacer(settings.requests_per_second) if settings.requests_per_second \
            else None
        self._sleep: Callable[[float], None] = time.sleep  # tests may record delays instead
        self.bytes_received = 0  # JSON bytes of every reply read: what admission control sizes

    # -- lifecycle ------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"RpcClient({self.redacted_url!r}, batch_size={self._batch_size})"

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            http, self._http = self._http, None
        if http is not None:
            http.close()

    @property
    def batch_size(self) -> int:
        """The current batch size: ``max_batch_size`` until the node rejected a larger batch."""
        return self._batch_size

    @property
    def uses_block_receipts(self) -> bool | None:
        """True/False once known whether the node serves ``eth_getBlockReceipts``."""
        return self._block_receipts

    def _client(self) -> httpx.Client:
        http = self._http
        if http is None:
            with self._lock:
                if self._http is None:
                    t = self.settings.timeout_s
                    self._http = httpx.Client(
                        timeout=httpx.Timeout(t, connect=min(t, 10.0)),
                        limits=httpx.Limits(max_connections=32, max_keepalive_connections=8,
                                            keepalive_expiry=30.0),
                        headers={"content-type": "application/json",
                                 "accept": "application/json"},
                        follow_redirects=False,
                    )
                http = self._http
        return http

    # -- plain JSON-RPC ---------------------------------------------------------------------

    def call(self, method: str, params: list | None = None) -> Any:
        """One call; returns its ``result`` (``None`` when the node answers null)."""
        return self._execute([(method, list(params or []))])[0]

    def batch(self, calls: Sequence[tuple[str, list]]) -> list[Any]:
        """Many calls, in as few round trips as the batch size allows; results in call order."""
        return self._execute([(m, list(p or [])) for m, p in calls])

    def chain_id(self) -> int:
        """``eth_chainId`` as an int (asked once per client)."""
        if self._chain_id is None:
            self._chain_id = self._quantity("eth_chainId", self.call("eth_chainId"))
        return self._chain_id

    def check_chain_id(self, expected: int | None) -> int:
        """The node's chain id; ``ChainIdMismatchError`` if ``expected`` is given and differs."""
        actual = self.chain_id()
        if expected is not None and actual != int(expected):
            raise ChainIdMismatchError(
                f"node at {self.redacted_url} reports chain id {actual}, expected {expected}")
        return actual

    def block_number(self) -> int:
        """The node's head (``eth_blockNumber``)."""
        return self._quantity("eth_blockNumber", self.call("eth_blockNumber"))

    # -- blocks and receipts ----------------------------------------------------------------

    def get_blocks(self, numbers: Sequence[int], full_transactions: bool = True) -> list[dict]:
        """``eth_getBlockByNumber`` for each number, in order.

        A null block above the node's head raises ``MissingBlockError`` at once; at or below the
        head it is retried (a lagging node behind a load balancer) and then ``MissingBlockError``.
        """
        numbers = [int(n) for n in numbers]
        calls = [("eth_getBlockByNumber", [hex(n), full_transactions]) for n in numbers]

        def check(i: int, block: Any) -> str | None:
            if block is None:
                return "null"
            if not isinstance(block, dict) or not isinstance(block.get("number"), str):
                raise RpcResponseError(
                    f"{_describe_call(*calls[i])} from {self.redacted_url}: expected a block "
                    f"object, got {self._snippet(block)}")
            if int(block["number"], 16) != numbers[i]:
                raise RpcResponseError(
                    f"{_describe_call(*calls[i])} from {self.redacted_url}: returned block "
                    f"{int(block['number'], 16)}")
            return None

        def give_up(pending: dict[int, str], attempt: int) -> None:
            missing = sorted(numbers[i] for i in pending)
            head = self.block_number()
            beyond = [n for n in missing if n > head]
            if beyond or attempt >= self.settings.max_retries:
                first = (beyond or missing)[0]
                more = len(beyond or missing) - 1
                tail = f" (and {more} more)" if more else ""
                after = "" if beyond else f" after {attempt + 1} attempts"
                raise MissingBlockError(
                    f"block {first}{tail} not available from {self.redacted_url} "
                    f"(head is {head}){after}")

        return self._fetch_checked(calls, check, give_up, what="null block")

    def get_block_receipts(self, blocks: Sequence[dict]) -> list[list[dict]]:
        """The receipts of each block, in transaction order.

        Uses ``eth_getBlockReceipts`` (by number), or batched ``eth_getTransactionReceipt`` on a
        node without it. Receipts are checked against the block: one per transaction, same
        hashes and order, same block hash; anything else is retried, then ``RpcResponseError``.
        """
        receipts, forked = self._receipts(blocks)
        if forked:
            raise RpcResponseError(self._fork_message(blocks[forked[0]], receipts[forked[0]]))
        return receipts

    def fetch_raw_blocks(self, start: int, end: int) -> list[RawBlock]:
        """Blocks ``[start, end)`` with full transactions and their receipts.

        If the chain reorganises between reading a block and its receipts (receipts carry another
        block hash), those blocks are read again, up to ``max_retries`` times.
        """
        from ingestion.transform import RawBlock

        if end <= start:
            return []
        numbers = list(range(start, end))
        blocks = self.get_blocks(numbers, full_transactions=True)
        receipts, forked = self._receipts(blocks)
        attempt = 0
        while forked:
            if attempt >= self.settings.max_retries:
                raise RpcResponseError(
                    self._fork_message(blocks[forked[0]], receipts[forked[0]])
                    + f" after {attempt + 1} attempts")
            log.warning("%s: re-reading %d block(s) from %s",
                        self._fork_message(blocks[forked[0]], receipts[forked[0]]),
                        len(forked), self.redacted_url)
            self._sleep(self._backoff(attempt))
            attempt += 1
            again = self.get_blocks([numbers[i] for i in forked], full_transactions=True)
            for i, block in zip(forked, again, strict=True):
                blocks[i] = block
            sub_receipts, sub_forked = self._receipts(again)
            for i, rs in zip(forked, sub_receipts, strict=True):
                receipts[i] = rs
            forked = [forked[j] for j in sub_forked]
        return [RawBlock(block=b, receipts=r) for b, r in zip(blocks, receipts, strict=True)]

    def _fork_message(self, block: dict, receipts: list[dict]) -> str:
        other = next((r.get("blockHash") for r in receipts if isinstance(r, dict)), None)
        return (f"receipts for block {int(block['number'], 16)} ({block.get('hash')}) from "
                f"{self.redacted_url} belong to block {other}: the chain reorganised while "
                f"reading, or the node is inconsistent")

    def _receipts(self, blocks: Sequence[dict]) -> tuple[list[list[dict]], list[int]]:
        """Receipts per block, and the indices of blocks whose receipts name another block hash
        (returned, not retried: re-reading receipts by number cannot fix a reorg)."""
        if self._block_receipts is not False:
            try:
                out = self._receipts_by_block(blocks)
                self._block_receipts = True
                return out
            except RpcMethodNotFoundError as err:
                if self._block_receipts:  # it worked before: not a missing method
                    raise
                self._block_receipts = False
                log.warning("node at %s does not serve eth_getBlockReceipts (%s); using "
                            "eth_getTransactionReceipt from now on", self.redacted_url,
                            str(err).rsplit(": ", 1)[-1][:200])
        return self._receipts_by_transaction(blocks)

    def _check_receipts(self, block: dict, receipts: Any) -> str | None:
        """None if ``receipts`` are the block's; "fork" if they name another block hash; else
        a description of what is wrong (retried)."""
        txs = block.get("transactions") or []
        if receipts is None:
            return "null receipts"
        if not isinstance(receipts, list):
            return f"receipts are not a list: {self._snippet(receipts)}"
        for r in receipts:
            if isinstance(r, dict) and r.get("blockHash") is not None \
                    and not _same_hash(r["blockHash"], block.get("hash")):
                return "fork"
        if len(receipts) != len(txs):
            return f"{len(receipts)} receipts for {len(txs)} transactions"
        for tx, r in zip(txs, receipts, strict=True):
            if not isinstance(r, dict):
                return f"receipt is {self._snippet(r)}"
            if not _same_hash(r.get("transactionHash"), _tx_hash(tx)):
                return (f"receipt for {r.get('transactionHash')} where transaction "
                        f"{_tx_hash(tx)} was expected")
        return None

    def _receipts_by_block(self, blocks: Sequence[dict]) -> tuple[list[list[dict]], list[int]]:
        receipts: list[list[dict]] = [[] for _ in blocks]
        wanted = [i for i, b in enumerate(blocks) if b.get("transactions")]
        calls = [("eth_getBlockReceipts", [blocks[i]["number"]]) for i in wanted]
        forked: list[int] = []

        def check(j: int, value: Any) -> str | None:
            problem = self._check_receipts(blocks[wanted[j]], value)
            if problem == "fork":
                forked.append(wanted[j])
                return None
            return problem

        def give_up(pending: dict[int, str], attempt: int) -> None:
            if attempt >= self.settings.max_retries:
                j = min(pending)
                raise RpcResponseError(
                    f"{_describe_call(*calls[j])} from {self.redacted_url}: {pending[j]} after "
                    f"{attempt + 1} attempts")

        for j, value in enumerate(self._fetch_checked(calls, check, give_up, what="receipts")):
            receipts[wanted[j]] = value
        return receipts, sorted(set(forked))

    def _receipts_by_transaction(self, blocks: Sequence[dict]
                                 ) -> tuple[list[list[dict]], list[int]]:
        owners: list[int] = []
        calls: list[tuple[str, list]] = []
        for i, block in enumerate(blocks):
            for tx in block.get("transactions") or []:
                owners.append(i)
                calls.append(("eth_getTransactionReceipt", [_tx_hash(tx)]))
        forked: set[int] = set()

        def check(j: int, value: Any) -> str | None:
            block = blocks[owners[j]]
            if value is None:
                return "null receipt"
            if not isinstance(value, dict):
                return f"receipt is {self._snippet(value)}"
            if not _same_hash(value.get("blockHash"), block.get("hash")):
                forked.add(owners[j])
            return None

        def give_up(pending: dict[int, str], attempt: int) -> None:
            if attempt >= self.settings.max_retries:
                j = min(pending)
                raise RpcResponseError(
                    f"{_describe_call(*calls[j])} (block {int(blocks[owners[j]]['number'], 16)})"
                    f" from {self.redacted_url}: {pending[j]} after {attempt + 1} attempts")

        values = self._fetch_checked(calls, check, give_up, what="receipts")
        receipts: list[list[dict]] = [[] for _ in blocks]
        for owner, value in zip(owners, values, strict=True):
            receipts[owner].append(value)
        for i, block in enumerate(blocks):
            if i not in forked and (problem := self._check_receipts(block, receipts[i])):
                raise RpcResponseError(
                    f"receipts for block {int(block['number'], 16)} from {self.redacted_url}: "
                    f"{problem}")
        return receipts, sorted(forked)

    def _fetch_checked(
        self,
        calls: list[tuple[str, list]],
        check: Callable[[int, Any], str | None],
        give_up: Callable[[dict[int, str], int], None],
        what: str,
    ) -> list[Any]:
        """``batch(calls)``, re-asking (with backoff) the calls whose result fails ``check``.

        ``give_up(pending, attempt)`` raises when there is no point in trying again.
        """
        results = self.batch(calls)
        pending = {i: p for i, r in enumerate(results) if (p := check(i, r)) is not None}
        attempt = 0
        while pending:
            give_up(pending, attempt)
            delay = self._backoff(attempt)
            first = min(pending)
            log.warning("%s from %s: %s for %s%s; retry %d/%d in %.2fs", what,
                        self.redacted_url, pending[first], _describe_call(*calls[first]),
                        f" and {len(pending) - 1} more" if len(pending) > 1 else "",
                        attempt + 1, self.settings.max_retries, delay)
            self._sleep(delay)
            attempt += 1
            indices = sorted(pending)
            again = self.batch([calls[i] for i in indices])
            pending = {}
            for i, value in zip(indices, again, strict=True):
                results[i] = value
                if (p := check(i, value)) is not None:
                    pending[i] = p
        return results

    # -- the request machinery --------------------------------------------------------------

    def _execute(self, calls: list[tuple[str, list]]) -> list[Any]:
        results: list[Any] = [None] * len(calls)
        i = 0
        while i < len(calls):
            chunk = calls[i:i + self._batch_size]
            try:
                out = self._send(chunk)
            except _BatchTooLarge as err:
                smaller = max(1, len(chunk) // 2)
                with self._lock:
                    self._batch_size = min(self._batch_size, smaller)
                log.warning("node at %s rejected a batch of %d calls (%s); using batches of %d",
                            self.redacted_url, len(chunk), err, self._batch_size)
                continue
            results[i:i + len(chunk)] = out
            i += len(chunk)
        return results

    def _send(self, chunk: list[tuple[str, list]]) -> list[Any]:
        """One round trip for ``chunk`` (an array request unless it is a single call), retried."""
        is_batch = len(chunk) > 1
        if is_batch:
            body = orjson.dumps([{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                                 for i, (m, p) in enumerate(chunk)])
        else:
            method, params = chunk[0]
            body = orjson.dumps({"jsonrpc": "2.0", "id": 0, "method": method, "params": params})
        attempt = 0
        while True:
            try:
                return self._attempt(body, chunk, is_batch)
            except _Retryable as retry:
                if attempt >= self.settings.max_retries:
                    raise retry.final(
                        f"{_describe_chunk(chunk)} to {self.redacted_url} failed after "
                        f"{attempt + 1} attempts: {retry.cause}") from None
                if retry.retry_after is not None:
                    delay = min(retry.retry_after, self.settings.backoff_max_s)
                else:
                    delay = self._backoff(attempt)
                log.warning("%s to %s failed (%s); retry %d/%d in %.2fs", _describe_chunk(chunk),
                            self.redacted_url, retry.cause, attempt + 1,
                            self.settings.max_retries, delay)
                self._sleep(delay)
                attempt += 1

    def _attempt(self, body: bytes, chunk: list[tuple[str, list]], is_batch: bool) -> list[Any]:
        if self._pacer is not None:
            self._pacer.acquire(len(chunk), self._sleep)
        try:
            response = self._client().post(self._url, content=body)
        except httpx.TimeoutException as err:
            raise _Retryable(RpcTransportError, f"timed out ({type(err).__name__}, "
                             f"timeout {self.settings.timeout_s:g}s)") from None
        except httpx.RequestError as err:  # connect/read/write errors, protocol errors...
            raise _Retryable(RpcTransportError,
                             f"{type(err).__name__}: {self._scrub(str(err))}") from None
        status = response.status_code
        if status == 413:
            if is_batch:
                raise _BatchTooLarge("HTTP 413")
            raise RpcTransportError(
                f"{_describe_chunk(chunk)} to {self.redacted_url}: HTTP 413 (request too large) "
                f"for a single call")
        if status in (408, 429) or status >= 500:
            retry_after = (_retry_after_seconds(response.headers.get("retry-after"))
                           if status in (429, 503) else None)
            raise _Retryable(RpcTransportError, f"HTTP {status} {response.reason_phrase}".strip()
                             + self._body_hint(response.content), retry_after)
        if not 200 <= status < 300:
            self._raise_http_error(response, chunk, is_batch)
        self.bytes_received += len(response.content)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise _Retryable(RpcResponseError, f"invalid JSON in a {len(response.content)}-byte "
                             f"reply: {self._snippet_bytes(response.content)}") from None
        return self._match(data, chunk, is_batch)

    def _raise_http_error(self, response: httpx.Response, chunk: list[tuple[str, list]],
                          is_batch: bool) -> None:
        """A 4xx (or 1xx/3xx) other than 408/413/429: not retried, but it may carry a JSON-RPC
        error that says the batch is too large or the node is rate limiting."""
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            data = None
        items = data if isinstance(data, list) else [data]
        for item in items:
            if isinstance(item, dict) and item.get("error") is not None:
                code, message = _error_text(item["error"])
                if is_batch and _is_batch_too_large(code, message):
                    raise _BatchTooLarge(self._scrub(message)[:200])
                if _is_rate_limited(code, message):
                    raise _Retryable(RpcTransportError,
                                     f"HTTP {response.status_code}: {self._scrub(message)[:200]}")
        raise RpcTransportError(
            f"{_describe_chunk(chunk)} to {self.redacted_url}: HTTP {response.status_code} "
            f"{response.reason_phrase}{self._body_hint(response.content)}")

    def _match(self, data: Any, chunk: list[tuple[str, list]], is_batch: bool) -> list[Any]:
        """Results of ``chunk`` from the parsed reply, in call order."""
        if not is_batch:
            if isinstance(data, list) and len(data) == 1:
                data = data[0]
            if not isinstance(data, dict):
                raise RpcResponseError(
                    f"{_describe_chunk(chunk)} to {self.redacted_url}: expected a JSON-RPC "
                    f"object, got {self._snippet(data)}")
            if data.get("error") is not None:
                code, message = _error_text(data["error"])
                if _is_rate_limited(code, message):
                    raise _Retryable(RpcTransportError, self._scrub(message)[:200])
            elif data.get("id") != 0:
                raise RpcResponseError(
                    f"{_describe_chunk(chunk)} to {self.redacted_url}: reply id "
                    f"{data.get('id')!r} does not match request id 0")
            return [self._result(data, *chunk[0])]

        if isinstance(data, dict):  # one object in reply to an array
            code, message = _error_text(data.get("error"))
            if data.get("error") is not None:
                if _is_rate_limited(code, message) and not _is_batch_too_large(code, message):
                    raise _Retryable(RpcTransportError, self._scrub(message)[:200])
                if _is_method_not_found(code, message, None):
                    raise RpcMethodNotFoundError(
                        f"{_describe_chunk(chunk)} to {self.redacted_url}: "
                        f"{self._scrub(message)[:200]}")
            raise _BatchTooLarge(f"non-array reply to an array request: "
                                 f"{self._snippet(data)}")
        if not isinstance(data, list):
            raise RpcResponseError(f"{_describe_chunk(chunk)} to {self.redacted_url}: expected "
                                   f"a JSON array, got {self._snippet(data)}")

        by_id: dict[int, dict] = {}
        for item in data:
            if not isinstance(item, dict):
                raise RpcResponseError(f"{_describe_chunk(chunk)} to {self.redacted_url}: "
                                       f"reply item is not an object: {self._snippet(item)}")
            if item.get("error") is not None:  # batch-wide conditions first, from any item
                code, message = _error_text(item["error"])
                if _is_batch_too_large(code, message):
                    raise _BatchTooLarge(self._scrub(message)[:200])
                if _is_rate_limited(code, message):
                    raise _Retryable(RpcTransportError, self._scrub(message)[:200])
            ident = item.get("id")
            if isinstance(ident, int) and not isinstance(ident, bool) \
                    and 0 <= ident < len(chunk):
                by_id[ident] = item
        results = []
        for i, (method, params) in enumerate(chunk):
            item = by_id.get(i)
            if item is None:
                raise RpcResponseError(
                    f"{_describe_call(method, params)}: no reply with id {i} in the batch reply "
                    f"from {self.redacted_url} ({len(data)} items for {len(chunk)} calls)")
            results.append(self._result(item, method, params))
        return results

    def _result(self, item: dict, method: str, params: list) -> Any:
        error = item.get("error")
        if error is not None:
            code, message = _error_text(error)
            text = f"{_describe_call(method, params)} failed at {self.redacted_url}: " \
                   f"error {code}: {self._scrub(message)[:300]}"
            if _is_method_not_found(code, message, method):
                raise RpcMethodNotFoundError(text)
            raise RpcResponseError(text)
        if "result" not in item:
            raise RpcResponseError(f"{_describe_call(method, params)} to {self.redacted_url}: "
                                   f"reply has neither result nor error: {self._snippet(item)}")
        return item["result"]

    # -- helpers ----------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)]."""
        cap = min(self.settings.backoff_max_s, self.settings.backoff_base_s * (2 ** attempt))
        return random.uniform(0.0, cap)

    def _quantity(self, method: str, value: Any) -> int:
        if isinstance(value, str) and value.startswith(("0x", "0X")):
            try:
                return int(value, 16)
            except ValueError:
                pass
        raise RpcResponseError(f"{method} to {self.redacted_url}: expected a hex quantity, got "
                               f"{self._snippet(value)}")

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def _snippet(self, value: Any) -> str:
        try:
            text = orjson.dumps(value).decode()
        except TypeError:
            text = repr(value)
        return self._scrub(text[:200] + ("..." if len(text) > 200 else ""))

    def _snippet_bytes(self, content: bytes) -> str:
        text = content[:200].decode("utf-8", "replace")
        return self._scrub(repr(text) + ("..." if len(content) > 200 else ""))

    def _body_hint(self, content: bytes) -> str:
        return f": {self._snippet_bytes(content)}" if content.strip() else ""
