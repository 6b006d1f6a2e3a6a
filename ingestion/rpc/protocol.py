"""The vocabulary of JSON-RPC failures: the errors the client raises, how a call is named in
messages, and what a node's error object or HTTP header means (rate limited, batch too large,
method not found, ``Retry-After``). Plain functions of their arguments, no I/O."""

from __future__ import annotations

import email.utils
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "RpcError",
    "RpcMethodNotFoundError",
    "RpcResponseError",
    "RpcTransportError",
    "describe_call",
    "describe_chunk",
    "error_text",
    "is_batch_too_large",
    "is_method_not_found",
    "is_rate_limited",
    "retry_after_seconds",
]


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


def describe_call(method: str, params: Sequence[Any]) -> str:
    """``method(params)`` for messages, the params cut at 160 characters, and the block number."""
    text = orjson.dumps(list(params)).decode()
    if len(text) > 160:
        text = text[:157] + "..."
    block = _block_of(method, params)
    return f"{method}({text[1:-1]})" + (f" [block {block}]" if block is not None else "")


def describe_chunk(chunk: Sequence[tuple[str, Sequence[Any]]]) -> str:
    """One call as ``describe_call``; a batch by its size, methods and range of blocks."""
    if len(chunk) == 1:
        return describe_call(*chunk[0])
    methods = ", ".join(sorted({m for m, _ in chunk}))
    blocks = [b for m, p in chunk if (b := _block_of(m, p)) is not None]
    where = f", blocks {min(blocks)}..{max(blocks)}" if blocks else ""
    return f"batch of {len(chunk)} calls ({methods}{where})"


def error_text(error: Any) -> tuple[int | None, str]:
    """The code (if an int) and message (with any ``data``) of a JSON-RPC error object."""
    if isinstance(error, dict):
        code = error.get("code")
        message = str(error.get("message", ""))
        data = error.get("data")
        if data not in (None, "", message):
            message = f"{message} ({str(data)[:200]})"
        return (code if isinstance(code, int) else None), message
    return None, str(error)[:300]


def is_batch_too_large(code: int | None, message: str) -> bool:
    m = message.lower()
    return "batch" in m and any(k in m for k in (
        "too large", "too big", "exceed", "limit", "max", "size", "too many"))


def is_rate_limited(code: int | None, message: str) -> bool:
    m = message.lower()
    return (code in (429, -32005) or "rate limit" in m or "too many requests" in m
            or ("exceeded" in m and "rate" in m))


def is_method_not_found(code: int | None, message: str, method: str | None) -> bool:
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


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from now, or None."""
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
