"""The head start: a run's driver fetches the first micro-batch's blocks while Spark starts.

A local Spark run spends seconds before its first task asks the node for a block: the JVM, then
the query's Python planning workers, then the task workers (measured: ~4.4 s on this machine,
about what the node needs to serve 1,500 anvil blocks). Meanwhile the node idles. The head
start puts those seconds to use: a thread sends exactly the requests the first micro-batch's
tasks will send (the first round trip of each task, then the second of each...) and leaves the
replies, unparsed, in a spool directory (``ingestion.rpc.spool``); a task takes them instead of
asking the node again, and asks the node for the rest. The data path is unchanged: the task
parses, checks (chain id, parent links, receipts of the block) and writes every block as it
would have, and a reply is used once (a retried task or a range read again after a reorg asks
the node).

Only where the tasks run on this machine (a local master), only for the first micro-batch, and
at most ``settings.head_start_max_bytes()`` of replies; fetching for a task stops when that task
has started. Anything going wrong in the head start only means the tasks fetch more themselves.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass, field, replace

from ingestion import settings
from ingestion.rpc.spool import ReplySpool
from ingestion.scratch import process_scratch
from ingestion.source import (
    BlockRange,
    SourceOptions,
    split_range,
    task_chunks,
    task_started_marker,
)

log = logging.getLogger("chainlake.head_start")

SPOOL_PREFIX = "chainlake-spool-"


@dataclass
class HeadStart:
    """The head start of one run: its spool, and the tasks of the first micro-batch it fetches
    for."""

    opts: SourceOptions
    parts: list[BlockRange]
    max_bytes: int
    spool: ReplySpool
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    bytes_fetched: int = 0
    blocks_fetched: int = 0

    def start(self) -> None:
        # One request at a time: the JVM and the planning workers, which decide when the tasks
        # start, keep a core to themselves (two lanes at once delayed them by more than they
        # fetched ahead, on 2 cores with the node on the same machine).
        self._thread = threading.Thread(target=self._fetch, daemon=True,
                                        name="chainlake-head-start")
        self._thread.start()

    def _fetch(self) -> None:
        """The tasks' round trips, the first of each task, then the second of each..., until
        the tasks start, the byte budget is spent or the run stops."""
        lanes = [(task_started_marker(part), task_chunks(self.opts, part)) for part in self.parts]
        rounds = max(len(chunks) for _, chunks in lanes)
        try:
            with self.opts.client() as client:
                for i in range(rounds):
                    for marker, chunks in lanes:
                        if self._stop.is_set() or self.bytes_fetched >= self.max_bytes:
                            return
                        if i >= len(chunks) or self.spool.has_marker(marker):
                            continue  # that task has started: it fetches the rest itself
                        self.bytes_fetched += self._prefetch(client, *chunks[i])
                        self.blocks_fetched += chunks[i][1] - chunks[i][0]
        except Exception as err:  # noqa: BLE001 - the tasks fetch the rest themselves
            log.info("head start stopped: %s", err)

    def _prefetch(self, client, a: int, b: int) -> int:
        """Blocks ``[a, b)`` and their receipts, as a task asks for them, without parsing a
        reply (the task does). Receipts are asked of every block: a task skips blocks without
        transactions, so where there are some its request differs and it asks the node itself.
        Traces are left to the task."""
        tables = self.opts.tables()
        with_receipts = "transactions" in tables or "logs" in tables
        numbers = range(a, b)
        received = client.prefetch(client.block_calls(numbers, with_receipts), self.spool)
        if with_receipts:
            received += client.prefetch(
                client.block_receipts_calls([hex(n) for n in numbers]), self.spool)
        return received

    def query_options(self, opts: SourceOptions) -> SourceOptions:
        """``opts`` with the spool its tasks take replies from."""
        return replace(opts, reply_spool=str(self.spool.directory))

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop fetching and remove the spool (a request still waiting on the node is left to
        finish on its own: a daemon thread whose reply goes nowhere)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        shutil.rmtree(self.spool.directory, ignore_errors=True)
        log.info("head start: %d blocks, %.1f MB fetched while Spark started",
                 self.blocks_fetched, self.bytes_fetched / 1e6)


def start_head_start(opts: SourceOptions, chain_id: int,
                     max_bytes: int | None = None) -> HeadStart | None:
    """Start fetching the first micro-batch of a run over ``[opts.start_block, opts.end_block)``
    (``end_block`` set: the run's target); None when disabled. The query's options then name
    the spool (``HeadStart.query_options``)."""
    max_bytes = settings.head_start_max_bytes() if max_bytes is None else max_bytes
    if max_bytes <= 0 or opts.end_block is None or opts.end_block <= opts.start_block:
        return None
    first_end = min(opts.end_block, opts.start_block + opts.max_blocks_per_trigger)
    parts = split_range(opts.start_block, first_end, opts.blocks_per_partition, chain_id)
    # In the process's scratch directory: a run that dies leaves it to the next claim to remove.
    scratch = process_scratch()
    directory = tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=scratch.path if scratch else None)
    head_start = HeadStart(opts, parts, max_bytes, ReplySpool(directory))
    head_start.start()
    return head_start
