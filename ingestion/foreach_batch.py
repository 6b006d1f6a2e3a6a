"""The function an ingest query calls for each micro-batch, cheap to ship to a Spark server.

On a Spark Connect server, foreachBatch runs in a Python worker that Spark starts for every query
and waits for before the query begins; the worker's first job is to unpickle the function. A
closure over the run's objects would import ``ingestion.ingest`` and all it needs (delta-rs, the
lake's schemas, the RPC client) right there, on the path to the query's first block. This callable
is plain values of a class whose module imports nothing: the worker is ready at once, and it
imports ``ingestion.ingest`` in a thread meanwhile, long before the first micro-batch is read.
(A local session calls it in the driver, where everything is imported already.)
"""

from __future__ import annotations

import threading
from typing import Any


class CommitMicroBatch:
    """``foreachBatch`` of an ingest query: ``ingestion.ingest.commit_micro_batch`` with the
    run's source options (as Spark strings), lake root and checkpoint."""

    def __init__(self, options: dict[str, str], lake_root: str, checkpoint: str) -> None:
        self.options, self.lake_root, self.checkpoint = dict(options), lake_root, checkpoint
        self._importing: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self.options, "lake_root": self.lake_root,
                "checkpoint": self.checkpoint}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # The worker then waits for its first micro-batch without importing anything itself:
        # this thread is the only one importing until __call__ joins it.
        self._importing = threading.Thread(target=_import_ingest, name="chainlake-import",
                                           daemon=True)
        self._importing.start()

    def __call__(self, df: Any, batch_id: int) -> None:
        if self._importing is not None:
            self._importing.join()
        from ingestion.ingest import commit_micro_batch

        commit_micro_batch(df, batch_id, self.options, self.lake_root, self.checkpoint)


def _import_ingest() -> None:
    import ingestion.ingest  # noqa: F401
