"""chainlake ingestion: JSON-RPC, RPC→Arrow transforms, the `evm` Spark source, Delta sink.

Nothing here imports Dagster; ``assets/`` and ``sensors/`` are thin wiring over this package.
"""

from __future__ import annotations

__all__ = ["EvmDataSource"]


def __getattr__(name: str):
    # Lazy: importing ingestion.transform or ingestion.rpc must not pull in pyspark.
    if name == "EvmDataSource":
        from ingestion.source import EvmDataSource

        return EvmDataSource
    raise AttributeError(name)
