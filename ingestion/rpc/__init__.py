"""JSON-RPC over HTTP for bulk reads: batched, retried, rate-limited, and never leaking the URL.

One module a job:

* ``redaction``: ``redact_url``, scrubbing the URL's secrets from network text, URL validation
  with redacted messages, and the ``httpx`` log filter (installed on import).
* ``protocol``: the errors (``RpcError`` and kin), how calls are named in messages, and what a
  node's error object or ``Retry-After`` header means.
* ``settings``: ``RpcSettings`` and its defaults: plain values, safe to ship to Spark tasks.
* ``transport``: ``JsonRpcTransport``: batching, retries with backoff, ``Retry-After``, shrinking
  batches a node finds too large, rate limiting, reply matching.
* ``fetching``: ``RpcClient``, the transport plus blocks and receipts checked for consistency,
  and the generic checked fetch (``RpcClient.fetch_checked``) other datasets build on.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Exports are imported on first use (PEP 562): ``RpcSettings`` and the errors are light, while
# the transport imports httpx (~0.1 s), which Spark's planning workers that only validate
# options or build a schema never need.
_EXPORTS = {
    "ChainIdMismatchError": "fetching",
    "JsonRpcTransport": "transport",
    "MissingBlockError": "fetching",
    "RpcClient": "fetching",
    "RpcError": "protocol",
    "RpcMethodNotFoundError": "protocol",
    "RpcResponseError": "protocol",
    "RpcSettings": "settings",
    "RpcTransportError": "protocol",
    "redact_url": "redaction",
}

if TYPE_CHECKING:
    from ingestion.rpc.fetching import ChainIdMismatchError, MissingBlockError, RpcClient
    from ingestion.rpc.protocol import (
        RpcError,
        RpcMethodNotFoundError,
        RpcResponseError,
        RpcTransportError,
    )
    from ingestion.rpc.redaction import redact_url
    from ingestion.rpc.settings import RpcSettings
    from ingestion.rpc.transport import JsonRpcTransport


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ChainIdMismatchError",
    "JsonRpcTransport",
    "MissingBlockError",
    "RpcClient",
    "RpcError",
    "RpcMethodNotFoundError",
    "RpcResponseError",
    "RpcSettings",
    "RpcTransportError",
    "redact_url",
]
