"""What a JSON-RPC client is told: the node's URL and how hard to try. Plain values, validated at
construction, safe to pickle and ship to Spark tasks; the URL shows only redacted."""

from __future__ import annotations

from dataclasses import dataclass

from ingestion.rpc.redaction import redact_url, validate_url

__all__ = [
    "DEFAULT_BACKOFF_BASE_S",
    "DEFAULT_BACKOFF_MAX_S",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT_S",
    "RpcSettings",
]

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_RETRIES = 6
DEFAULT_BACKOFF_BASE_S = 0.25
DEFAULT_BACKOFF_MAX_S = 20.0
DEFAULT_MAX_BATCH_SIZE = 100


@dataclass(frozen=True, repr=False)
class RpcSettings:
    """Everything an ``RpcClient`` (or a bare ``JsonRpcTransport``) needs: plain values, safe to
    pickle and ship to Spark tasks.

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
        validate_url(self.url)
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

