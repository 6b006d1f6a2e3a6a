"""JSON-RPC over HTTP for bulk reads: batched, retried, rate limited, and never leaking the URL.

``JsonRpcTransport`` speaks plain JSON-RPC with httpx (one pooled keep-alive ``httpx.Client``) and
orjson. It is cheap to build (the HTTP client is created on first use), so the Spark source builds
one per task from plain options; it is not meant to be pickled.

What it does for every request:

* **Batching.** Calls go out as JSON-RPC arrays of at most ``max_batch_size`` calls; replies are
  matched by ``id`` (any order). A node that rejects a batch as too large (HTTP 413, an error that
  says the batch is too large, or a single error object in reply to an array) gets half the size,
  down to 1 (a plain, non-array request), and the transport keeps the smaller size.
* **Retries** with exponential backoff and full jitter on connection errors, timeouts, HTTP 408,
  429 (``Retry-After`` in seconds or as an HTTP date, capped at ``backoff_max_s``) and 5xx,
  rate-limit errors in JSON-RPC replies, and bodies that are not valid JSON. Other 4xx are not
  retried. After ``max_retries`` retries: ``RpcTransportError`` or ``RpcResponseError``.
* **Rate limit.** ``requests_per_second`` paces JSON-RPC *calls* (a batch of n calls takes n
  tokens, as providers count them), shared by all threads using the transport.
* **Secrets.** The URL appears in messages, logs and reprs only through ``redact_url``; text that
  comes from the network is scrubbed of the URL's secret parts (``redaction.Redactor``), and
  exceptions are raised ``from None`` so no httpx exception (whose text may hold the URL) is
  chained.
"""

from __future__ import annotations

import functools
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Self

import httpx
import orjson

from ingestion.rpc.protocol import (
    RpcError,
    RpcMethodNotFoundError,
    RpcResponseError,
    RpcTransportError,
    describe_call,
    describe_chunk,
    error_text,
    is_batch_too_large,
    is_method_not_found,
    is_rate_limited,
    retry_after_seconds,
)
from ingestion.rpc.redaction import Redactor, redact_url
from ingestion.rpc.settings import (
    DEFAULT_BACKOFF_BASE_S,
    DEFAULT_BACKOFF_MAX_S,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
    RpcSettings,
)
from ingestion.rpc.spool import ReplySpool

__all__ = ["JsonRpcTransport"]

log = logging.getLogger("chainlake.rpc")


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


def _request_body(chunk: Sequence[tuple[str, list]]) -> bytes:
    """The JSON-RPC request for ``chunk``: an array unless it is a single call (ids 0..n-1, so
    the same calls make the same bytes: ``ingestion.rpc.spool`` relies on it)."""
    if len(chunk) > 1:
        return orjson.dumps([{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                             for i, (m, p) in enumerate(chunk)])
    method, params = chunk[0]
    return orjson.dumps({"jsonrpc": "2.0", "id": 0, "method": method, "params": params})


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


def _tls_context(url: str) -> ssl.SSLContext:
    """httpx's default verifying context for https (loading the CA bundle costs ~0.1 CPU-s, so
    a process loads it once). Plain http gets a context that trusts no CA: it is never used (no
    redirects are followed, so such a client never speaks TLS) and could not complete a
    handshake if it were."""
    return _verifying_context() if url.lower().startswith("https:") else _PLAIN_HTTP_CONTEXT


@functools.cache
def _verifying_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


_PLAIN_HTTP_CONTEXT = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class JsonRpcTransport:
    """Plain JSON-RPC calls and batches. Thread-safe; use as a context manager or ``close()``.

    ``JsonRpcTransport(url, timeout_s=..., max_retries=..., backoff_base_s=..., backoff_max_s=...,
    max_batch_size=..., requests_per_second=...)`` or ``from_settings(settings)`` (likewise for
    subclasses). Construction validates the settings (``ValueError``) and opens nothing.
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
    def from_settings(cls, settings: RpcSettings) -> Self:
        client = cls.__new__(cls)
        client._init(settings)
        return client

    def _init(self, settings: RpcSettings) -> None:
        self.settings = settings
        self._url = settings.url.strip()
        self.redacted_url = redact_url(self._url)
        self._redactor = Redactor(self._url)
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()
        self._batch_size = settings.max_batch_size
        self._pacer = _Pacer(settings.requests_per_second) if settings.requests_per_second \
            else None
        self._sleep: Callable[[float], None] = time.sleep  # tests may record delays instead
        self.bytes_received = 0  # JSON bytes of every reply read: what admission control sizes
        # Replies fetched ahead by the run's driver (``prefetch``), taken instead of asking the
        # node: a task's first read of a range.
        self.spool: ReplySpool | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.redacted_url!r}, batch_size={self._batch_size})"

    def __enter__(self) -> Self:
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
                        verify=_tls_context(self._url),
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
        body = _request_body(chunk)
        attempt = 0
        while True:
            try:
                return self._attempt(body, chunk, is_batch)
            except _Retryable as retry:
                if attempt >= self.settings.max_retries:
                    raise retry.final(
                        f"{describe_chunk(chunk)} to {self.redacted_url} failed after "
                        f"{attempt + 1} attempts: {retry.cause}") from None
                if retry.retry_after is not None:
                    delay = min(retry.retry_after, self.settings.backoff_max_s)
                else:
                    delay = self._backoff(attempt)
                log.warning("%s to %s failed (%s); retry %d/%d in %.2fs", describe_chunk(chunk),
                            self.redacted_url, retry.cause, attempt + 1,
                            self.settings.max_retries, delay)
                self._sleep(delay)
                attempt += 1

    def _attempt(self, body: bytes, chunk: list[tuple[str, list]], is_batch: bool) -> list[Any]:
        content = self.spool.take(body) if self.spool is not None else None
        if content is None:
            content = self._post(body, chunk, is_batch)
        with self._lock:  # a task's fetching threads share the transport
            self.bytes_received += len(content)
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise _Retryable(RpcResponseError, f"invalid JSON in a {len(content)}-byte "
                             f"reply: {self._redactor.snippet_bytes(content)}") from None
        return self._match(data, chunk, is_batch)

    def prefetch(self, calls: Sequence[tuple[str, list]], into: ReplySpool) -> int:
        """Send ``calls`` in the round trips ``batch`` would, and leave each reply, unparsed and
        unchecked, in the spool ``into`` for the task that will send the same requests; the bytes
        received. One attempt each: a failure raises, and the task asks the node itself."""
        calls = [(m, list(p or [])) for m, p in calls]
        received = 0
        for i in range(0, len(calls), self._batch_size):
            chunk = calls[i:i + self._batch_size]
            body = _request_body(chunk)
            key = into.claim(body)
            if key is None:  # already there, or the spool is gone
                continue
            content = b""
            try:
                content = self._post(body, chunk, len(chunk) > 1)
            finally:
                if content:
                    into.put(key, content)
                else:
                    into.release(key)
            received += len(content)
        return received

    def _post(self, body: bytes, chunk: list[tuple[str, list]], is_batch: bool) -> bytes:
        """One HTTP round trip: the reply's body when the status is 2xx."""
        if self._pacer is not None:
            self._pacer.acquire(len(chunk), self._sleep)
        try:
            # Streamed and joined here, not ``post()``: httpx keeps a read body on the Response,
            # and Request and Response form a reference cycle, so the (tens of MB) body would
            # live until the cyclic collector ran, which tasks pause (ingestion.source).
            with self._client().stream("POST", self._url, content=body) as response:
                content = b"".join(response.iter_bytes())
        except httpx.TimeoutException as err:
            raise _Retryable(RpcTransportError, f"timed out ({type(err).__name__}, "
                             f"timeout {self.settings.timeout_s:g}s)") from None
        except httpx.RequestError as err:  # connect/read/write errors, protocol errors...
            raise _Retryable(RpcTransportError,
                             f"{type(err).__name__}: {self._redactor.scrub(str(err))}") from None
        status = response.status_code
        if status == 413:
            if is_batch:
                raise _BatchTooLarge("HTTP 413")
            raise RpcTransportError(
                f"{describe_chunk(chunk)} to {self.redacted_url}: HTTP 413 (request too large) "
                f"for a single call")
        if status in (408, 429) or status >= 500:
            retry_after = (retry_after_seconds(response.headers.get("retry-after"))
                           if status in (429, 503) else None)
            raise _Retryable(RpcTransportError, f"HTTP {status} {response.reason_phrase}".strip()
                             + self._redactor.body_hint(content), retry_after)
        if not 200 <= status < 300:
            self._raise_http_error(response, content, chunk, is_batch)
        return content

    def _raise_http_error(self, response: httpx.Response, content: bytes,
                          chunk: list[tuple[str, list]], is_batch: bool) -> None:
        """A 4xx (or 1xx/3xx) other than 408/413/429: not retried, but it may carry a JSON-RPC
        error that says the batch is too large or the node is rate limiting."""
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            data = None
        items = data if isinstance(data, list) else [data]
        for item in items:
            if isinstance(item, dict) and item.get("error") is not None:
                code, message = error_text(item["error"])
                if is_batch and is_batch_too_large(code, message):
                    raise _BatchTooLarge(self._redactor.scrub(message)[:200])
                if is_rate_limited(code, message):
                    raise _Retryable(RpcTransportError, f"HTTP {response.status_code}: "
                                     f"{self._redactor.scrub(message)[:200]}")
        raise RpcTransportError(
            f"{describe_chunk(chunk)} to {self.redacted_url}: HTTP {response.status_code} "
            f"{response.reason_phrase}{self._redactor.body_hint(content)}")

    def _match(self, data: Any, chunk: list[tuple[str, list]], is_batch: bool) -> list[Any]:
        """Results of ``chunk`` from the parsed reply, in call order."""
        if not is_batch:
            if isinstance(data, list) and len(data) == 1:
                data = data[0]
            if not isinstance(data, dict):
                raise RpcResponseError(
                    f"{describe_chunk(chunk)} to {self.redacted_url}: expected a JSON-RPC "
                    f"object, got {self._redactor.snippet(data)}")
            if data.get("error") is not None:
                code, message = error_text(data["error"])
                if is_rate_limited(code, message):
                    raise _Retryable(RpcTransportError, self._redactor.scrub(message)[:200])
            elif data.get("id") != 0:
                raise RpcResponseError(
                    f"{describe_chunk(chunk)} to {self.redacted_url}: reply id "
                    f"{data.get('id')!r} does not match request id 0")
            return [self._result(data, *chunk[0])]

        if isinstance(data, dict):  # one object in reply to an array
            code, message = error_text(data.get("error"))
            if data.get("error") is not None:
                if is_rate_limited(code, message) and not is_batch_too_large(code, message):
                    raise _Retryable(RpcTransportError, self._redactor.scrub(message)[:200])
                if is_method_not_found(code, message, None):
                    raise RpcMethodNotFoundError(
                        f"{describe_chunk(chunk)} to {self.redacted_url}: "
                        f"{self._redactor.scrub(message)[:200]}")
            raise _BatchTooLarge(f"non-array reply to an array request: "
                                 f"{self._redactor.snippet(data)}")
        if not isinstance(data, list):
            raise RpcResponseError(f"{describe_chunk(chunk)} to {self.redacted_url}: expected "
                                   f"a JSON array, got {self._redactor.snippet(data)}")

        by_id: dict[int, dict] = {}
        for item in data:
            if not isinstance(item, dict):
                raise RpcResponseError(
                    f"{describe_chunk(chunk)} to {self.redacted_url}: reply item is not an "
                    f"object: {self._redactor.snippet(item)}")
            if item.get("error") is not None:  # batch-wide conditions first, from any item
                code, message = error_text(item["error"])
                if is_batch_too_large(code, message):
                    raise _BatchTooLarge(self._redactor.scrub(message)[:200])
                if is_rate_limited(code, message):
                    raise _Retryable(RpcTransportError, self._redactor.scrub(message)[:200])
            ident = item.get("id")
            if isinstance(ident, int) and not isinstance(ident, bool) \
                    and 0 <= ident < len(chunk):
                by_id[ident] = item
        results = []
        for i, (method, params) in enumerate(chunk):
            item = by_id.get(i)
            if item is None:
                raise RpcResponseError(
                    f"{describe_call(method, params)}: no reply with id {i} in the batch reply "
                    f"from {self.redacted_url} ({len(data)} items for {len(chunk)} calls)")
            results.append(self._result(item, method, params))
        return results

    def _result(self, item: dict, method: str, params: list) -> Any:
        error = item.get("error")
        if error is not None:
            code, message = error_text(error)
            text = f"{describe_call(method, params)} failed at {self.redacted_url}: " \
                   f"error {code}: {self._redactor.scrub(message)[:300]}"
            if is_method_not_found(code, message, method):
                raise RpcMethodNotFoundError(text)
            raise RpcResponseError(text)
        if "result" not in item:
            raise RpcResponseError(
                f"{describe_call(method, params)} to {self.redacted_url}: reply has neither "
                f"result nor error: {self._redactor.snippet(item)}")
        return item["result"]

    # -- helpers ----------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)]."""
        cap = min(self.settings.backoff_max_s, self.settings.backoff_base_s * (2 ** attempt))
        return random.uniform(0.0, cap)
