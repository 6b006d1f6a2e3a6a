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
