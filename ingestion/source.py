"""The `evm` Spark data source: EVM blocks, transactions, logs and traces read over JSON-RPC.

Batch::

    spark.read.format("evm").option("rpc_url", url).option("start_block", 0)
         .option("end_block", 1000).option("dataset", "transactions").load()

Stream (offsets are block numbers; ``availableNow`` drains the backlog in bounded batches)::

    spark.readStream.format("evm").option("rpc_url", url).option("start_block", 0)
         .option("dataset", "bundle").load()
         .writeStream.trigger(availableNow=True)...

Options
    rpc_url                  required; http(s) JSON-RPC endpoint (credentials are never logged)
    start_block              first block, inclusive (default 0)
    end_block                last block, exclusive; batch default and stream cap: the safe head
    dataset                  blocks | transactions | logs | traces | bundle | files (default
                             blocks); ``bundle`` is one row per block with its transactions and
                             logs nested, so one fetch feeds all three core tables; ``files``
                             (the ingestion path) writes the tables' rows as Parquet files into
                             the lake's tables and yields one row per file (ingestion.staging)
    lake                     the lake root the ``files`` dataset writes into (required for it)
    datasets                 the ``files`` dataset's tables, e.g. ``blocks,traces`` (default the
                             core three; ``blocks`` is always written: it carries the links)
    trace_api                parity (``trace_block``) | geth (``debug_traceBlockByNumber`` with
                             callTracer); default: asked of the node, parity first
    confirmations            blocks kept back from the head (default per chain, see settings)
    chain_id                 expected chain id; a node reporting another one fails the query
    max_blocks_per_trigger   admission control: blocks per micro-batch (streams)
    blocks_per_partition     blocks per Spark task
    rpc_blocks_per_request   blocks per batched JSON-RPC round trip inside a task
    rpc_requests_in_flight   round trips a task keeps going at once: it fetches the next ones
                             while it converts and writes the current one (default 2)
    rpc_timeout_s, rpc_max_retries, rpc_max_batch_size, rpc_requests_per_second
                             JSON-RPC client tuning (see ingestion.rpc)
    reply_spool              a directory of replies fetched ahead by the run's driver, which a
                             task's first read of a range takes instead of asking the node
                             (ingestion.head_start; set by runs on a local master)

Schemas: ``ingestion.schemas`` (one declaration per table). ``read()`` is deterministic: a
partition is a fixed block range ``[start, end)`` and yields exactly those blocks, or fails with
an error naming the block; a block the node does not have is never skipped.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from pyspark.sql.datasource import (
    DataSource,
    DataSourceReader,
    DataSourceStreamReader,
    InputPartition,
)
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)
from pyspark.sql.types import StructType

# Names only at import: Spark's planning workers import this module too (ingestion.dataset_names).
from ingestion import settings
from ingestion.dataset_names import (
    BRONZE_TABLES,
    BUNDLE_NAME,
    CORE_TABLES,
    FILES_NAME,
    SOURCE_DATASETS,
    TRACE_APIS,
    files_spark_schema,
)
from ingestion.rpc.settings import RpcSettings

if TYPE_CHECKING:
    import pyarrow as pa

    from ingestion.rpc.fetching import RpcClient

log = logging.getLogger("chainlake.source")

OFFSET_KEY = "block_number"  # stream offset: the next block to read


class SourceOptionError(ValueError):
    """An option of the `evm` source is missing or invalid."""


class BlockNotAvailableError(RuntimeError):
    """A requested block is beyond what the node can serve (head minus confirmations)."""


class FollowingQueryExpiredError(RuntimeError):
    """A following query outlived the run that started it (see ``SourceOptions.follow_until``)."""


class InconsistentChainError(RuntimeError):
    """The node's blocks did not link up while a range was read (a reorg under our feet)."""


@dataclass(frozen=True)
class SourceOptions:
    """Validated options of the `evm` source. Plain values only: pickled into every task."""

    rpc_url: str
    start_block: int = 0
    end_block: int | None = None
    dataset: str = "blocks"
    confirmations: int | None = None
    chain_id: int | None = None
    max_blocks_per_trigger: int = settings.DEFAULT_MAX_BLOCKS_PER_TRIGGER
    blocks_per_partition: int = settings.DEFAULT_BLOCKS_PER_PARTITION
    rpc_blocks_per_request: int = settings.DEFAULT_RPC_BLOCKS_PER_REQUEST
    rpc_requests_in_flight: int = settings.DEFAULT_RPC_REQUESTS_IN_FLIGHT
    rpc_timeout_s: float = RpcSettings.timeout_s
    rpc_max_retries: int = RpcSettings.max_retries
    rpc_max_batch_size: int = RpcSettings.max_batch_size
    rpc_requests_per_second: float | None = None
    lake: str | None = None  # the ``files`` dataset: lake root whose tables the tasks write into
    # The ``files`` dataset: tables to write, comma-separated (``blocks`` always: it carries the
    # links that prove continuity); None: the core three.
    datasets: str | None = None
    trace_api: str | None = None  # "parity" (trace_block) | "geth" (callTracer); None: ask node
    # A directory of replies the run's driver fetched ahead (``ingestion.head_start``): a task
    # reading a range for the first time takes its replies from there. Local sessions only.
    reply_spool: str | None = None
    # A following query (``ingest.follow_head``, processing-time trigger): the source offers new
    # blocks until this time (seconds since the epoch) and none after, so that the query can be
    # stopped between micro-batches; ``settings.FOLLOW_ORPHAN_EXPIRY_S`` later it fails (its run
    # died). Meanwhile a node that does not answer offers no blocks either.
    follow_until: float | None = None

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> SourceOptions:
        """Parse Spark's string options (case-insensitive keys), naming any bad one."""
        given = {k.lower(): v for k, v in options.items() if v is not None and v != ""}
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(given) - set(known) - {"path"})
        if unknown:
            raise SourceOptionError(f"unknown option(s) {unknown}; known: {sorted(known)}")
        if "rpc_url" not in given:
            raise SourceOptionError("option 'rpc_url' is required")
        values: dict[str, object] = {"rpc_url": given["rpc_url"]}
        for name, raw in given.items():
            if name in ("rpc_url", "path"):
                continue
            kind = known[name].type
            try:
                if name in ("dataset", "lake", "datasets", "trace_api", "reply_spool"):
                    values[name] = raw
                elif "float" in str(kind):
                    values[name] = float(raw)
                else:
                    values[name] = int(raw)
            except ValueError:
                raise SourceOptionError(f"option {name!r} must be a number, got {raw!r}") from None
        opts = cls(**values)  # type: ignore[arg-type]
        opts.validate()
        return opts

    def validate(self) -> None:
        if not self.rpc_url.startswith(("http://", "https://")):
            from ingestion.rpc import redact_url

            raise SourceOptionError(f"option 'rpc_url' must be an http:// or https:// URL, got "
                                    f"{redact_url(self.rpc_url)!r}")
        if self.dataset not in SOURCE_DATASETS:
            raise SourceOptionError(f"option 'dataset' must be one of "
                                    f"{', '.join(SOURCE_DATASETS)}, got {self.dataset!r}")
        if self.dataset == FILES_NAME and not self.lake:
            raise SourceOptionError("the 'files' dataset needs option 'lake' (the lake root)")
        if self.datasets is not None:
            parse_datasets(self.datasets)
        if self.trace_api is not None and self.trace_api not in TRACE_APIS:
            raise SourceOptionError(f"option 'trace_api' must be one of {', '.join(TRACE_APIS)}, "
                                    f"got {self.trace_api!r}")
        if self.start_block < 0:
            raise SourceOptionError(f"start_block must be >= 0, got {self.start_block}")
        if self.end_block is not None and self.end_block <= self.start_block:
            raise SourceOptionError(
                f"end_block ({self.end_block}) must be greater than start_block "
                f"({self.start_block}); the range is [start_block, end_block)")
        for name in ("max_blocks_per_trigger", "blocks_per_partition", "rpc_blocks_per_request",
                     "rpc_requests_in_flight", "rpc_max_batch_size"):
            if getattr(self, name) < 1:
                raise SourceOptionError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.confirmations is not None and self.confirmations < 0:
            raise SourceOptionError(f"confirmations must be >= 0, got {self.confirmations}")
        if self.rpc_max_retries < 0:
            raise SourceOptionError(f"rpc_max_retries must be >= 0, got {self.rpc_max_retries}")
        for name, unit in (("rpc_timeout_s", "seconds"), ("rpc_requests_per_second", "calls per second"),
                           ("follow_until", "seconds since the epoch")):
            value = getattr(self, name)
            if value is not None and not 0 < value < float("inf"):  # also refuses NaN
                raise SourceOptionError(
                    f"{name} must be a positive finite number ({unit}), got {value!r}")
        try:  # the client's own checks (e.g. a URL without a host), before any task starts
            RpcSettings(url=self.rpc_url, timeout_s=self.rpc_timeout_s,
                        max_retries=self.rpc_max_retries, max_batch_size=self.rpc_max_batch_size,
                        requests_per_second=self.rpc_requests_per_second)
        except (TypeError, ValueError) as err:
            raise SourceOptionError(str(err)) from None

    def tables(self) -> tuple[str, ...]:
        """The bronze tables a task builds: the ``files`` dataset's ``datasets``, the bundle's
        three, or the one table asked for."""
        if self.dataset == FILES_NAME:
            return parse_datasets(self.datasets) if self.datasets else CORE_TABLES
        if self.dataset == BUNDLE_NAME:
            return CORE_TABLES
        return (self.dataset,)

    def as_spark_options(self) -> dict[str, str]:
        """The options as Spark strings, omitting unset ones (inverse of ``parse``)."""
        return {k: str(v) for k, v in asdict(self).items() if v is not None}

    def client(self) -> RpcClient:
        from ingestion.rpc.fetching import RpcClient  # httpx: not for planning workers

        return RpcClient(
            self.rpc_url,
            timeout_s=self.rpc_timeout_s,
            max_retries=self.rpc_max_retries,
            max_batch_size=self.rpc_max_batch_size,
            requests_per_second=self.rpc_requests_per_second,
        )


def parse_datasets(text: str) -> tuple[str, ...]:
    """``"logs,traces"`` → the tables to write, in storage order, ``blocks`` always included
    (the spine: its links prove every table's continuity); names an unknown one."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BRONZE_TABLES))
    if unknown or not names:
        raise SourceOptionError(f"datasets must be a comma-separated list of "
                                f"{', '.join(BRONZE_TABLES)}; got {text!r}")
    return tuple(t for t in BRONZE_TABLES if t in names or t == "blocks")


@dataclass(frozen=True)
class ChainView:
    """What the driver learnt from the node: its chain id and how far we may read."""

    chain_id: int
    head: int
    confirmations: int

    @property
    def safe_end(self) -> int:
        """Exclusive end of the blocks we may read: head - confirmations + 1 (may be 0)."""
        return max(0, self.head - self.confirmations + 1)


def observe_chain(opts: SourceOptions) -> ChainView:
    """Ask the node for its chain id (checked against ``chain_id``) and head."""
    with opts.client() as client:
        chain_id = client.check_chain_id(opts.chain_id)
        head = client.block_number()
    confirmations = (opts.confirmations if opts.confirmations is not None
                     else settings.default_confirmations(chain_id))
    return ChainView(chain_id=chain_id, head=head, confirmations=confirmations)


class BlockRange(InputPartition):
    """One Spark task: blocks ``[start, end)`` of chain ``chain_id``."""

    def __init__(self, start: int, end: int, chain_id: int) -> None:
        super().__init__((start, end))
        self.start = start
        self.end = end
        self.chain_id = chain_id

    def __repr__(self) -> str:
        return f"BlockRange([{self.start}, {self.end}), chain {self.chain_id})"


def split_range(start: int, end: int, size: int, chain_id: int) -> list[BlockRange]:
    """As few tasks as ``size`` blocks per task allow, of equal length (to a block): a
    micro-batch's tasks run side by side and finish together. 1,500 blocks are two tasks of 750,
    not 1,000 and 500, where one core (and one connection to the node) idles for half the batch.
    Deterministic in ``(start, end)``: a replayed micro-batch makes the same tasks."""
    blocks = end - start
    if blocks <= 0:
        return []
    count = -(-blocks // size)
    bounds = [start + blocks * i // count for i in range(count + 1)]
    return [BlockRange(a, b, chain_id) for a, b in zip(bounds, bounds[1:], strict=False)]


def read_range(opts: SourceOptions, part: BlockRange, attempts: int = 3) -> Iterator[pa.RecordBatch]:
    """Fetch and convert blocks ``[part.start, part.end)``: the body of every task.

    Blocks are fetched in round trips of ``rpc_blocks_per_request``; each chunk must link to
    the previous one by parent hash, or (a reorg while reading) the partition is read again.
    The ``files`` dataset writes the rows into the lake's tables instead of yielding them
    (``ingestion.staging``); a partition read again first deletes what it wrote.
    """
    from ingestion.transform import TransformError

    fetch = ChunkFetcher(opts)
    spool = _spool_of(opts, part)
    with _heap_trimmed(), _cyclic_gc_paused():
        last_error: Exception | None = None
        for attempt in range(attempts):
            output = _output_of(opts, part)
            previous_hash: str | None = None
            try:
                with opts.client() as client:
                    client.check_chain_id(part.chain_id)
                    # Replies fetched ahead serve the first read only: a read again after a
                    # reorg asks the node.
                    client.spool = spool if attempt == 0 else None
                    for a, b, raw, seconds in _fetched_ahead(fetch, client,
                                                             task_chunks(opts, part),
                                                             opts.rpc_requests_in_flight):
                        previous_hash = _check_links(raw, a, b, previous_hash)
                        output.add(raw, seconds)
            except (InconsistentChainError, TransformError) as err:
                # TransformError covers a receipt from another fork than its block: also a reorg.
                output.discard()
                last_error = err
                log.warning("re-reading blocks [%d, %d): %s", part.start, part.end, err)
                continue
            except BaseException:
                output.discard()
                raise
            yield from output.finish(client.bytes_received)
            return
    raise InconsistentChainError(
        f"blocks [{part.start}, {part.end}) could not be read consistently after {attempts} "
        f"attempts: {last_error}")


class ChunkFetcher:
    """Fetches one round trip's blocks ``[a, b)`` for the tables a task builds: blocks with
    transactions and receipts, traces when asked (the tracing API found once, then kept)."""

    def __init__(self, opts: SourceOptions) -> None:
        self.tables = opts.tables()
        self.with_receipts = "transactions" in self.tables or "logs" in self.tables
        self.trace_api = opts.trace_api

    def __call__(self, client, a: int, b: int) -> list:
        from ingestion.transform import RawBlock

        if self.with_receipts:
            raw = client.fetch_raw_blocks(a, b)
        else:  # blocks and traces need neither receipts nor transaction objects
            raw = [RawBlock(block, []) for block in client.get_blocks(range(a, b), False)]
        if "traces" not in self.tables:
            return raw
        from ingestion.datasets.traces import detect_trace_api, fetch_traces

        if self.trace_api is None:
            self.trace_api = detect_trace_api(client)
        replies = fetch_traces(client, range(a, b), self.trace_api)
        return [RawBlock(r.block, r.receipts, t, self.trace_api)
                for r, t in zip(raw, replies, strict=True)]


def task_chunks(opts: SourceOptions, part: BlockRange) -> list[tuple[int, int]]:
    """The round trips of a task, ``(a, b)`` in block order."""
    step = opts.rpc_blocks_per_request
    return [(a, min(a + step, part.end)) for a in range(part.start, part.end, step)]


def _spool_of(opts: SourceOptions, part: BlockRange):
    """The replies fetched ahead for this run (``opts.reply_spool``), after telling the head
    start that this task has started (it stops fetching for it)."""
    if not opts.reply_spool:
        return None
    from ingestion.rpc.spool import ReplySpool

    spool = ReplySpool(opts.reply_spool)
    spool.mark(task_started_marker(part))
    return spool


def task_started_marker(part: BlockRange) -> str:
    """The file a task leaves in the spool when it starts reading ``part``."""
    return f"started-{part.start}"


def _fetched_ahead(fetch: Callable[[Any, int, int], list], client: Any,
                   chunks: list[tuple[int, int]],
                   in_flight: int = 1) -> Iterator[tuple[int, int, list, float]]:
    """Each chunk's blocks ``(a, b, raw, fetch seconds)``, in order, while threads already fetch
    the next ``in_flight`` chunks: the node serves the next round trips while the task
    transforms and writes this one, instead of idling, and a node that answers requests in
    parallel (anvil, most providers) serves several at once. A task holds at most
    ``in_flight + 1`` chunks of replies. The client is shared by the fetching threads (its
    transport is thread-safe; its rate limit is the task's)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    def timed(a: int, b: int) -> tuple[list, float]:
        began = time.perf_counter()
        raw = fetch(client, a, b)
        return raw, time.perf_counter() - began

    # Leaving the pool waits for the fetches still running (a failed chunk, or a consumer that
    # stopped early): the client is not closed under them.
    with ThreadPoolExecutor(max(1, in_flight), thread_name_prefix="chainlake-fetch") as pool:
        pending: deque[Future] = deque()
        upcoming = iter(chunks)
        try:
            for a, b in chunks:
                while len(pending) <= in_flight:  # this chunk and the ``in_flight`` after it
                    following = next(upcoming, None)
                    if following is None:
                        break
                    pending.append(pool.submit(timed, *following))
                raw, seconds = pending.popleft().result()
                yield a, b, raw, seconds
        finally:
            for future in pending:
                future.cancel()


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a task reads.

    Parsed JSON-RPC replies are trees of dicts and lists without cycles, freed by reference
    counting as soon as a chunk is converted. The cyclic collector only re-scanned them: a chunk
    of mainnet blocks is some hundred thousand live containers, and the allocations that create
    them trigger collection after collection (measured: ~1.1 CPU-s per 1,000 mainnet-shaped
    blocks, a fifth of a task's CPU). The collector runs again as soon as the task is done.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def _heap_trimmed() -> Iterator[None]:
    """Give the heap a task freed back to the system when the task ends.

    A warm server keeps its task workers for the next run (``spark_server.SERVER_CONF``), and
    glibc's allocator would keep each one near the high-water mark of its largest task (an idle
    worker after 750 anvil blocks: 195 MiB resident, 160 MiB with the trim)."""
    try:
        yield
    finally:
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
            ctypes.CDLL("libc.so.6").malloc_trim(0)


class _Batches:
    """The rows of a dataset, yielded as Arrow batches once the whole partition linked up."""

    def __init__(self, dataset: str, chain_id: int) -> None:
        self.dataset, self.chain_id = dataset, chain_id
        self.batches: list[pa.RecordBatch] = []

    def add(self, raw: list, fetch_seconds: float) -> None:
        from ingestion.transform import dataset_batch

        self.batches.append(dataset_batch(self.dataset, self.chain_id, raw))

    def discard(self) -> None:
        self.batches = []

    def finish(self, json_bytes: int) -> Iterator[pa.RecordBatch]:
        yield from self.batches


def _output_of(opts: SourceOptions, part: BlockRange):
    if opts.dataset == FILES_NAME:
        from ingestion.staging import StagedOutput

        return StagedOutput(opts.lake, part.chain_id, part.start, part.end, opts.tables())
    return _Batches(opts.dataset, part.chain_id)


def _check_links(raw: list, start: int, end: int, previous_hash: str | None) -> str | None:
    """Verify numbers are exactly ``[start, end)`` and parent hashes link; return the last hash."""
    if len(raw) != end - start:
        raise InconsistentChainError(f"asked for blocks [{start}, {end}), got {len(raw)} blocks")
    for expected, item in zip(range(start, end), raw, strict=True):
        block = item.block
        number = int(block["number"], 16)
        if number != expected:
            raise InconsistentChainError(f"asked for block {expected}, node returned {number}")
        if previous_hash is not None and block["parentHash"].lower() != previous_hash:
            raise InconsistentChainError(
                f"block {number} parent {block['parentHash']} is not the hash {previous_hash} "
                f"of block {number - 1} read just before")
        previous_hash = block["hash"].lower()
    return previous_hash


class EvmDataSource(DataSource):
    """Spark data source ``evm``: see the module docstring for options and datasets."""

    @classmethod
    def name(cls) -> str:
        return "evm"

    def __init__(self, options: dict[str, str]) -> None:
        super().__init__(options)
        self.opts = SourceOptions.parse(options)  # fail fast, before any task starts

    def schema(self) -> StructType:
        if self.opts.dataset == FILES_NAME:  # the ingestion path: no Arrow in planning workers
            return files_spark_schema()
        from ingestion.schemas import arrow_schema_of, spark_schema

        return spark_schema(arrow_schema_of(self.opts.dataset))

    def reader(self, schema: StructType) -> DataSourceReader:
        return EvmBatchReader(self.opts)

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return EvmStreamReader(self.opts)


class EvmBatchReader(DataSourceReader):
    """Reads exactly ``[start_block, end_block)``; ``end_block`` defaults to the safe head."""

    def __init__(self, opts: SourceOptions) -> None:
        self.opts = opts

    def partitions(self) -> list[BlockRange]:
        view = observe_chain(self.opts)
        end = self.opts.end_block if self.opts.end_block is not None else view.safe_end
        if end > view.safe_end:
            raise BlockNotAvailableError(
                f"end_block {end} is beyond what the node can serve: head is {view.head} with "
                f"{view.confirmations} confirmations, so the last readable block is "
                f"{view.safe_end - 1}")
        return split_range(self.opts.start_block, end, self.opts.blocks_per_partition,
                           view.chain_id)

    def read(self, partition: BlockRange) -> Iterator[pa.RecordBatch]:
        yield from read_range(self.opts, partition)


class EvmStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Offsets ``{"block_number": n}`` = next block to read. Bounded by ``max_blocks_per_trigger``.

    The constructor runs in more than one driver process, so it opens no connection; the node
    is asked lazily, from ``latestOffset`` / ``prepareForTriggerAvailableNow``.
    """

    def __init__(self, opts: SourceOptions) -> None:
        self.opts = opts
        self._view: ChainView | None = None
        self._target: int | None = None  # availableNow: exclusive end captured at query start

    def _observe(self) -> ChainView:
        self._view = observe_chain(self.opts)
        return self._view

    def _readable_end(self, view: ChainView) -> int:
        end = view.safe_end
        return end if self.opts.end_block is None else min(end, self.opts.end_block)

    def initialOffset(self) -> dict:
        return {OFFSET_KEY: self.opts.start_block}

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.opts.max_blocks_per_trigger)

    def prepareForTriggerAvailableNow(self) -> None:
        self._target = self._readable_end(self._observe())
        log.info("availableNow target: blocks before %d", self._target)

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:
        begin = int(start[OFFSET_KEY])
        if self._target is not None:
            end = self._target
        elif self.opts.follow_until is not None:
            end = self._following_end(begin)
        else:
            end = self._readable_end(self._observe())
        if isinstance(limit, ReadMaxRows):
            end = min(end, begin + limit.max_rows)
        elif not isinstance(limit, ReadAllAvailable):
            raise ValueError(f"unsupported read limit {limit!r}")
        return {OFFSET_KEY: max(begin, end)}

    def _following_end(self, begin: int) -> int:
        """A following query's end: the safe head until ``follow_until``, then no new blocks.
        A node that does not answer offers none this trigger, and the query asks again at the
        next one until its time is up (a node of another chain still fails it)."""
        from ingestion.rpc import RpcTransportError

        now, until = time.time(), self.opts.follow_until or 0.0
        if now >= until + settings.FOLLOW_ORPHAN_EXPIRY_S:
            raise FollowingQueryExpiredError(
                f"this query followed the head until {until:.0f} (seconds since the epoch) and "
                f"nobody stopped it: the run that started it is gone")
        if now >= until:
            return begin
        try:
            return self._readable_end(self._observe())
        except RpcTransportError as err:
            log.warning("following the head: the node did not answer (%s); no new blocks", err)
            return begin

    def reportLatestOffset(self) -> dict | None:
        if self._view is None:
            return None
        return {OFFSET_KEY: self._readable_end(self._view)}

    def partitions(self, start: dict, end: dict) -> list[BlockRange]:
        begin, stop = int(start[OFFSET_KEY]), int(end[OFFSET_KEY])
        if stop <= begin:
            return []
        view = self._view or self._observe()
        return split_range(begin, stop, self.opts.blocks_per_partition, view.chain_id)

    def read(self, partition: BlockRange) -> Iterator[pa.RecordBatch]:
        yield from read_range(self.opts, partition)

    def commit(self, end: dict) -> None:
        log.debug("committed blocks before %s", end.get(OFFSET_KEY))


__all__ = [
    "BUNDLE_NAME",
    "BlockNotAvailableError",
    "BlockRange",
    "ChainView",
    "EvmDataSource",
    "FollowingQueryExpiredError",
    "InconsistentChainError",
    "SourceOptionError",
    "SourceOptions",
    "observe_chain",
]
