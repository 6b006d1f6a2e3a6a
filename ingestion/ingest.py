"""One ingestion run: a Spark ``availableNow`` query of the `evm` source into the bronze tables.

The same code path serves ``chainlake ingest`` and the Dagster assets. Before anything else a
run checks that the node serves the lake's chain (``ingestion.identity``) and creates missing
tables; then it repairs a reorg below the stored tip (refusing one deeper than the maximum reorg
depth). Each micro-batch is one contiguous block range (admission control bounds its size). Its
Spark tasks read their blocks and write the three tables' rows as Parquet files into the lake
(the source's ``files`` dataset, ``ingestion.staging``); ``foreachBatch`` collects one small row
per file, checks that the tasks' ranges link to each other and to the blocks around them
(``ingestion.links``) and commits each table's files in one Delta transaction that replaces
exactly the range. The checkpoint (one per scope, under the lake root) makes a rerun resume
where the last one stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from ingestion import settings
from ingestion.checkpoint import first_block_to_read, query_id, resume_point, scope_lock
from ingestion.datasets.traces import TracingUnsupportedError, detect_trace_api
from ingestion.foreach_batch import CommitMicroBatch
from ingestion.identity import (
    ChainIdentity,
    ChainIdentityError,
    block_hash,
    check_node_serves,
    node_identity,
)
from ingestion.links import Segment, check_segment_links
from ingestion.reorg import Divergence, find_divergence
from ingestion.schemas import CORE_TABLES, FILES_NAME, TABLES
from ingestion.sink import WRITE_ORDER, BronzeLake, WriteResult, commits_since
from ingestion.source import (
    ChainView,
    InconsistentChainError,
    SourceOptions,
    observe_chain,
    parse_datasets,
)
from ingestion.spark import session_of, tasks_run_here
from ingestion.staging import StagedRange, TaskFigures, delete_table_files

log = logging.getLogger("chainlake.ingest")

# A range that does not link to its neighbours is read again this many times before the run fails.
LINK_REREADS = 2
# How often a run looks at the lake for the micro-batches its query committed.
PROGRESS_POLL_S = 0.5
BATCH_KEY = "chainlake.batch"  # blocks commit info: the micro-batch it completed (JSON)


@dataclass(frozen=True)
class BatchProgress:
    batch_id: int
    start: int
    end: int
    rows: dict[str, int]
    versions: dict[str, int]
    seconds: float  # since the run started
    # Where the batch's time went: fetch / transform / write are summed over its Spark tasks
    # (they run in parallel), commit is the driver's link checks and Delta commits.
    stages: dict[str, float] = field(default_factory=dict)
    json_bytes: int = 0  # size of the node's replies for the batch
    tasks: list[TaskFigures] = field(default_factory=list)  # per Spark task, in block order

    def describe_stages(self) -> str:
        """``fetch 1.2s, transform 0.4s, write 0.3s, commit 0.1s`` (task seconds summed)."""
        return ", ".join(f"{k} {v:.1f}s" for k, v in self.stages.items())

    @property
    def blocks(self) -> int:
        return self.end - self.start

    def within(self, start: int, end: int) -> BatchProgress | None:
        """This batch's part in blocks ``[start, end)`` (a Dagster partition), or None.

        Rows, task seconds and JSON bytes are the tasks' own; a task that straddles the range's
        edge is shared pro rata (the Dagster assets count each partition's rows in the lake);
        the commit's seconds are shared by blocks."""
        a, z = max(start, self.start), min(end, self.end)
        if a >= z:
            return None
        if (a, z) == (self.start, self.end):
            return self
        if not self.tasks:
            share = (z - a) / self.blocks
            return replace(self, start=a, end=z,
                           rows={k: round(v * share) for k, v in self.rows.items()},
                           stages={k: v * share for k, v in self.stages.items()},
                           json_bytes=round(self.json_bytes * share))
        rows: dict[str, float] = {}
        stages = {"commit": self.stages.get("commit", 0.0) * (z - a) / self.blocks}
        json_bytes = 0.0
        tasks = []
        for task in self.tasks:
            overlap = min(z, task.end) - max(a, task.start)
            if overlap <= 0:
                continue
            tasks.append(task)
            share = overlap / (task.end - task.start)
            for k, v in task.rows.items():
                rows[k] = rows.get(k, 0) + v * share
            for k, v in task.stages.items():
                stages[k] = stages.get(k, 0.0) + v * share
            json_bytes += task.json_bytes * share
        return replace(self, start=a, end=z, rows={k: round(v) for k, v in rows.items()},
                       stages=stages, json_bytes=round(json_bytes), tasks=tasks)


@dataclass(frozen=True)
class ReorgRepair:
    """A reorg found below the stored tip and repaired before the run went on."""

    ancestor: int  # last block common to the lake and the node's chain
    depth: int  # stored blocks that were not on the node's chain
    replaced: tuple[int, int]  # blocks [a, b) re-ingested from the node's chain
    removed: tuple[int, int] | None  # blocks [a, b) dropped: beyond the new chain's safe head


@dataclass
class IngestResult:
    start_block: int
    target_end: int  # exclusive end the run aimed for (end_block or the safe head)
    chain: ChainView
    batches: list[BatchProgress] = field(default_factory=list)
    seconds: float = 0.0
    reorg: ReorgRepair | None = None
    rewound_to: int | None = None  # the checkpoint was ahead of the lake: restarted here
    tables: tuple[str, ...] = CORE_TABLES  # the tables the run writes
    head_start_blocks: int = 0  # blocks the driver fetched while Spark started (head_start)

    @property
    def blocks(self) -> int:
        return sum(b.blocks for b in self.batches)

    @property
    def next_block(self) -> int | None:
        """First block not yet written by this run's scope, if the run wrote anything."""
        return self.batches[-1].end if self.batches else None

    def rows(self, table: str) -> int:
        return sum(b.rows.get(table, 0) for b in self.batches)

    @property
    def blocks_per_second(self) -> float:
        return self.blocks / self.seconds if self.seconds > 0 else 0.0

    def versions(self) -> dict[str, int]:
        return dict(self.batches[-1].versions) if self.batches else {}

    def followed_by(self, more: IngestResult) -> IngestResult:
        """This run and ``more``, a later pass over the same range (``follow_head``), as one."""
        return replace(self, target_end=more.target_end, chain=more.chain,
                       batches=self.batches + more.batches, seconds=self.seconds + more.seconds,
                       reorg=more.reorg or self.reorg,
                       head_start_blocks=self.head_start_blocks + more.head_start_blocks)

    def within(self, start: int, end: int) -> IngestResult:
        """What this run did in blocks ``[start, end)``: one partition of a run over several.
        Its seconds are shared by blocks written; a reorg repaired stays with the run."""
        batches = [p for b in self.batches if (p := b.within(start, end)) is not None]
        share = sum(b.blocks for b in batches) / self.blocks if self.blocks else 0.0
        return replace(self, start_block=max(start, self.start_block), batches=batches,
                       seconds=self.seconds * share, reorg=None)


def default_scope(start_block: int, end_block: int | None) -> str:
    """Checkpoint scope of a range: runs over the same range share (and resume) it."""
    end = f"{end_block:012d}" if end_block is not None else "head"
    return f"ingest-{start_block:012d}-{end}"


def preflight(opts: SourceOptions) -> ChainView:
    """Check the options and the node before Spark starts; raises with a clear message."""
    opts.validate()
    return observe_chain(opts)


def resolve_datasets(opts: SourceOptions) -> SourceOptions:
    """Options naming the tables the run writes and, with traces, the node's trace API.

    Without ``datasets``: the core tables, plus traces when the node serves a tracing API.
    Traces asked for of a node without one: ``TracingUnsupportedError`` (before Spark starts).
    """
    chosen = parse_datasets(opts.datasets) if opts.datasets else None
    api = opts.trace_api
    if (chosen is None or "traces" in chosen) and api is None:
        with opts.client() as client:
            try:
                api = detect_trace_api(client)
            except TracingUnsupportedError:
                if chosen is not None:
                    raise
                log.info("the node serves no tracing API: traces are not ingested")
    if chosen is None:
        chosen = CORE_TABLES + (("traces",) if api else ())
    return replace(opts, datasets=",".join(chosen),
                   trace_api=api if "traces" in chosen else None)


def pin_to_chain(opts: SourceOptions, view: ChainView) -> SourceOptions:
    """Options that every later read of the run uses: the chain id and confirmations the
    preflight resolved, so a node swapped mid-run fails instead of mixing chains."""
    return replace(opts, confirmations=view.confirmations, chain_id=view.chain_id)


def bind_lake_to_chain(lake: BronzeLake, opts: SourceOptions, view: ChainView) -> ChainIdentity:
    """Refuse a node of another chain than the lake's (``check_chain_identity``), then create
    any missing table with the chain's identity."""
    identity = check_chain_identity(lake, opts, view)
    lake.prepare(identity)
    return identity


def check_chain_identity(lake: BronzeLake, opts: SourceOptions, view: ChainView) -> ChainIdentity:
    """The lake's chain identity, refusing (``ChainIdentityError``) a node of another chain.

    A lake without a recorded identity (new, or made by an earlier version) takes the node's,
    after checking the lowest block it already stores against the node.
    """
    stored = lake.identity()
    with opts.client() as client:
        if stored is not None:
            check_node_serves(client, view.chain_id, stored, lake.root)
            identity = stored
        else:
            identity = node_identity(client, view.chain_id, 0, fallback_block=opts.start_block)
            _check_stored_rows_on_chain(lake, client, identity)
    return identity


def _check_stored_rows_on_chain(lake: BronzeLake, client, identity: ChainIdentity) -> None:
    """For a lake without an identity: its lowest stored block must be the node's."""
    bounds = lake.stored_bounds()
    if bounds is None:
        return
    lowest = bounds[0]
    row = lake.read_range("blocks", lowest, lowest + 1, ["chain_id", "block_hash"]).to_pylist()[0]
    node_hash = block_hash(client, lowest)
    if row["chain_id"] != identity.chain_id or row["block_hash"] != node_hash:
        raise ChainIdentityError(
            f"the node at {client.redacted_url} serves another chain than the lake {lake.root}: "
            f"the lake's block {lowest} is chain id {row['chain_id']} {row['block_hash']}, the "
            f"node's is chain id {identity.chain_id} {node_hash}; refusing to write")


def run_ingest(
    spark,
    opts: SourceOptions,
    lake: BronzeLake,
    *,
    scope: str | None = None,
    on_batch: Callable[[BatchProgress], None] | None = None,
    max_reorg_depth: int | None = None,
) -> IngestResult:
    """Run one ``availableNow`` query over ``[opts.start_block, opts.end_block)``.

    Stops at ``end_block`` or at the safe head captured when the run began, whichever is lower.
    First the node must serve the lake's chain (``ChainIdentityError`` otherwise); if the
    lake's stored tip is no longer on the node's chain, the reorged blocks are re-ingested (see
    ``repair_reorg``; deeper than ``max_reorg_depth``, default per chain: ``DeepReorgError``);
    the scope's checkpoint is set aside when unreadable and rewound when ahead of the lake (see
    ``ingestion.checkpoint``).
    """
    checkpoint = lake.checkpoint_uri(scope or default_scope(opts.start_block, opts.end_block))
    with scope_lock(checkpoint):  # one run per scope: a second one waits, then finds the rest
        return _run_scope(spark, opts, lake, checkpoint, scope=scope, on_batch=on_batch,
                          max_reorg_depth=max_reorg_depth)


def follow_head(spark, opts: SourceOptions, lake: BronzeLake, result: IngestResult, *,
                seconds: float, scope: str | None = None,
                on_batch: Callable[[BatchProgress], None] | None = None,
                max_reorg_depth: int | None = None, poll_s: float = settings.FOLLOW_POLL_S
                ) -> IngestResult:
    """Keep following the head for up to ``seconds`` after ``run_ingest`` stopped at the safe head
    (``result``). Once the node's safe head passes the run's, one streaming query on the same
    checkpoint (same scope) with a processing-time trigger ingests each new safe block as it
    comes, for the time left, with a run's guarantees (links, reorg repair at its start,
    exactly once); it is stopped between micro-batches. Ends early at ``opts.end_block``.

    Why: a run's first query pays its process, its imports and its session; following in the
    same process does not. One query rather than an ``availableNow`` pass per new block: each
    query costs ~2 CPU-s of Spark's Python workers (foreachBatch's, the source's runner, read
    planning), more than a core on a 1-s chain. Until a new block is safe the head is asked
    every ``poll_s`` seconds without Spark; a node that stops answering then ends the following
    (what was committed stays; the next run goes on). If the query fails (a reorg deeper than the
    confirmations breaks the links), one ``availableNow`` pass repairs and ingests, or fails the
    run with the cause. Returns the run and what followed as one result.
    """
    from ingestion.rpc import RpcError

    deadline = time.monotonic() + seconds
    with opts.client() as client:
        while ((opts.end_block is None or result.target_end < opts.end_block)
               and time.monotonic() < deadline):
            try:
                safe_end = ChainView(result.chain.chain_id, client.block_number(),
                                     result.chain.confirmations).safe_end
            except RpcError as err:
                log.warning("stopped following the head: %s", err)
                return result
            if safe_end > result.target_end:
                break
            time.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))
        else:
            return result
    following = replace(opts, follow_until=time.time() + max(0.0, deadline - time.monotonic()))
    try:
        more = run_ingest(spark, following, lake, scope=scope, on_batch=on_batch,
                          max_reorg_depth=max_reorg_depth)
    except Exception as err:  # noqa: BLE001 - the pass below fails with the cause if it persists
        log.warning("the query following the head failed (%s); one pass, which repairs a reorg "
                    "first", str(err).splitlines()[0] if str(err) else type(err).__name__)
        more = run_ingest(spark, opts, lake, scope=scope, on_batch=on_batch,
                          max_reorg_depth=max_reorg_depth)
    return result.followed_by(more)


def _run_scope(spark, opts: SourceOptions, lake: BronzeLake, checkpoint: str, *,
               scope: str | None, on_batch: Callable[[BatchProgress], None] | None,
               max_reorg_depth: int | None) -> IngestResult:
    if not tasks_run_here(spark):  # a server's session may hold a query of a run that died
        stop_orphaned_query(session_of(spark), query_name(checkpoint, scope))
    view = preflight(opts)
    opts = pin_to_chain(replace(opts, dataset=FILES_NAME, lake=lake.root), view)
    opts = resolve_datasets(opts)
    started = time.monotonic()
    bind_lake_to_chain(lake, opts, view)
    reorg = repair_reorg(spark, opts, lake, view, max_depth=max_reorg_depth)
    # The run ends at the safe head captured now, however far the chain grows while it runs.
    target = view.safe_end if opts.end_block is None else min(view.safe_end, opts.end_block)
    rewound_to = resume_point(lake, checkpoint, opts.start_block, target, opts.tables())
    if rewound_to is not None:
        opts = replace(opts, start_block=rewound_to)
    result = IngestResult(start_block=opts.start_block, target_end=target, chain=view,
                          reorg=reorg, rewound_to=rewound_to, tables=opts.tables())
    if opts.follow_until is not None:  # a following query: up to end_block, for its time
        return _run_query(session_of(spark), opts, lake, checkpoint, scope=scope,
                          on_batch=on_batch, result=result, started=started)
    if opts.start_block >= target:
        result.seconds = time.monotonic() - started
        return result
    opts = replace(opts, end_block=target)

    head_start = _start_head_start(spark, opts, checkpoint, view)
    try:
        if head_start is not None:
            opts = head_start.query_options(opts)
        return _run_query(session_of(spark), opts, lake, checkpoint, scope=scope,
                          on_batch=on_batch, result=result, started=started)
    finally:
        if head_start is not None:
            head_start.stop()
            result.head_start_blocks = head_start.blocks_fetched


def _start_head_start(spark, opts: SourceOptions, checkpoint: str, view: ChainView):
    """Fetch the query's first micro-batch while Spark starts, where its tasks run on this
    machine (``ingestion.head_start``); None otherwise."""
    if not tasks_run_here(spark):
        return None
    first = first_block_to_read(checkpoint, opts.start_block)
    if first is None or first >= opts.end_block:
        return None
    from ingestion.head_start import start_head_start

    return start_head_start(replace(opts, start_block=first), view.chain_id)


def _run_query(spark, opts: SourceOptions, lake: BronzeLake, checkpoint: str, *,
               scope: str | None, on_batch: Callable[[BatchProgress], None] | None,
               result: IngestResult, started: float) -> IngestResult:
    blocks_version = lake.table("blocks").version()
    options = opts.as_spark_options()
    following = opts.follow_until is not None
    trigger = ({"processingTime": f"{settings.FOLLOW_POLL_S} seconds"} if following
               else {"availableNow": True})
    query = (
        spark.readStream.format("evm")
        .options(**options)
        .load()
        .writeStream.queryName(query_name(checkpoint, scope))
        .foreachBatch(CommitMicroBatch(options, lake.root, checkpoint))
        .option("checkpointLocation", checkpoint)
        .trigger(**trigger)
        .start()
    )
    app_id = "chainlake-" + query_id(checkpoint)

    def report_new_batches() -> None:
        nonlocal blocks_version
        found, blocks_version = batches_committed(lake, app_id, blocks_version)
        for progress in found:
            progress = replace(progress, seconds=time.monotonic() - started)
            result.batches.append(progress)
            if on_batch is not None:
                on_batch(progress)

    try:
        while not query.awaitTermination(PROGRESS_POLL_S):
            report_new_batches()
            if following and _following_done(query, opts, result):
                break
    finally:
        if query.isActive:
            query.stop()
    report_new_batches()
    if following:
        result.target_end = max(result.target_end, result.next_block or 0)
    result.seconds = time.monotonic() - started
    return result


def _following_done(query, opts: SourceOptions, result: IngestResult) -> bool:
    """Whether a following query may be stopped now: its range is complete or its time is up
    (after which its source offers no new blocks), and no micro-batch runs. Past
    ``settings.FOLLOW_STOP_GRACE_S`` it is stopped regardless (a trigger stuck on a stalled node;
    a batch stopped midway would be replayed exactly once by the next run)."""
    until = opts.follow_until or 0.0
    complete = opts.end_block is not None and result.next_block == opts.end_block
    now = time.time()
    if not complete and now < until:
        return False
    return now >= until + settings.FOLLOW_STOP_GRACE_S or not query.status["isTriggerActive"]


def stop_orphaned_query(spark, name: str) -> None:
    """Stop the session's active query called ``name``, left by a run of the same scope that
    died: on a Spark Connect server a query outlives its client, and the scope's lock (held by
    this run) says no live run owns it. A query of another scope has another name."""
    for query in spark.streams.active:
        if query.name == name:
            log.warning("stopping query %s, left running by a run that died", name)
            query.stop()


def commit_micro_batch(df, batch_id: int, options: dict[str, str], lake_root: str,
                       checkpoint: str) -> None:
    """Commit one micro-batch of an ingest query (its ``foreachBatch``, through
    ``ingestion.foreach_batch.CommitMicroBatch``), where Spark runs it: this process, or a Spark
    Connect server's Python worker. It reports progress through the lake, in the ``blocks``
    commit's info."""
    lake = BronzeLake(lake_root)
    # The query id survives restarts on the same checkpoint; a replayed batch that the lake
    # already recorded (crash after the last commit, before Spark's) is skipped.
    app_id = "chainlake-" + query_id(checkpoint)
    committed = lake.committed_batch(app_id)
    if committed is not None and committed >= batch_id:
        log.info("batch %d already committed to the lake; skipping the replay", batch_id)
        return
    staged = StagedRange.of(df.toArrow())  # one small row per file the tasks wrote
    if staged is not None:
        commit_linked(df.sparkSession, SourceOptions.parse(options), lake, staged,
                      app_transaction=(app_id, batch_id))


def query_name(checkpoint: str, scope: str | None) -> str:
    """The streaming query's name: unique per checkpoint, because runs on a Spark Connect server
    share one session (``spark.shared_session_id``), where active queries' names must differ."""
    digest = hashlib.sha256(checkpoint.encode()).hexdigest()[:8]
    return f"chainlake-{scope or 'ingest'}-{digest}"


def batches_committed(lake: BronzeLake, app_id: str, after_version: int
                      ) -> tuple[list[BatchProgress], int]:
    """The micro-batches of query ``app_id`` committed to ``blocks`` after ``after_version``,
    oldest first (read from the commits' info), and the version read up to: ``after_version``
    again when no consistent snapshot of the log could be read (asked again at the next poll)."""
    found = commits_since(lake.table_uri("blocks"), after_version)
    if found is None:
        return [], after_version
    version, commits = found
    progress = []
    for commit in commits:
        data = json.loads(commit.get(BATCH_KEY) or "{}")
        if data and data.pop("app_id") == app_id:
            data["versions"]["blocks"] = commit["version"]
            data["tasks"] = [TaskFigures.of(t) for t in data.get("tasks", [])]
            progress.append(BatchProgress(**data))
    return progress, version


def stage_range(spark, opts: SourceOptions, lake: BronzeLake, start: int, end: int
                ) -> StagedRange:
    """Batch-read blocks ``[start, end)``: the tasks write the tables' files (not committed)."""
    chunk = replace(opts, dataset=FILES_NAME, lake=lake.root, start_block=start, end_block=end)
    staged = StagedRange.of(spark.read.format("evm").options(**chunk.as_spark_options()).load()
                            .toArrow())
    assert staged is not None and (staged.start, staged.end) == (start, end)
    return staged


def commit_linked(spark, opts: SourceOptions, lake: BronzeLake, staged: StagedRange,
                  app_transaction: tuple[str, int] | None = None
                  ) -> tuple[StagedRange, dict[str, WriteResult]]:
    """Commit what the tasks wrote for ``[staged.start, staged.end)`` once it links up: between
    the tasks, and with the blocks stored (or, for a new lake, the node's) around the range.

    A range that does not link (a stale backend behind a load balancer, a reorg under our feet)
    is read again from the node, ``LINK_REREADS`` times; then ``InconsistentChainError`` names
    the block, its files are deleted and nothing of the range is committed. Tables are committed
    children first, ``blocks`` last (with ``app_transaction``).
    """
    start, end = staged.start, staged.end
    for attempt in range(LINK_REREADS + 1):
        segments = [Segment(*task) for task in staged.tasks]
        began = time.monotonic()
        broken = check_segment_links(segments, start, end, lake, opts.client)
        if broken is None:
            written = {name: lake.commit_files(name, staged.files[name], start, end)
                       for name in WRITE_ORDER if name != "blocks" and name in staged.files}
            # The blocks commit comes last and says what the batch was (progress for the run
            # that started it, wherever this runs).
            batch_id = app_transaction[1] if app_transaction is not None else -1
            progress = BatchProgress(
                batch_id=batch_id, start=start, end=end, rows=staged.rows,
                versions={name: w.version for name, w in written.items()}, seconds=0.0,
                stages={**staged.seconds, "commit": 0.0}, json_bytes=staged.json_bytes,
                tasks=staged.figures)
            info = {"app_id": app_transaction[0] if app_transaction else "", **asdict(progress)}
            info["stages"]["commit"] = round(time.monotonic() - began, 3)
            written["blocks"] = lake.commit_files("blocks", staged.files["blocks"], start, end,
                                                  app_transaction, info={BATCH_KEY: json.dumps(info)})
            return staged, written
        delete_table_files(lake.root, staged.all_files())
        log.warning("blocks [%d, %d) do not link up (%s): %s", start, end,
                    "reading them again" if attempt < LINK_REREADS else "giving up",
                    broken.message())
        if attempt < LINK_REREADS:
            staged = stage_range(spark, opts, lake, start, end)
    raise InconsistentChainError(
        f"{broken.message()}, still after reading blocks [{start}, {end}) {LINK_REREADS + 1} "
        f"times; nothing of that range was written (a reorg deeper than the confirmations, or a "
        f"node serving stale blocks: rerun to repair)")


def reingest_range(spark, opts: SourceOptions, lake: BronzeLake, start: int, end: int,
                   on_batch: Callable[[BatchProgress], None] | None = None) -> list[BatchProgress]:
    """Batch-read blocks ``[start, end)`` from the node and range-replace them in the lake.

    No checkpoint: used to repair (reorgs, ``chainlake repair``), where the range is known.
    Chunks of ``max_blocks_per_trigger`` bound a commit like the stream's micro-batches; each
    chunk must link to the blocks around it, like a micro-batch.
    """
    done: list[BatchProgress] = []
    started = time.monotonic()
    for a in range(start, end, opts.max_blocks_per_trigger):
        b = min(a + opts.max_blocks_per_trigger, end)
        staged = stage_range(spark, opts, lake, a, b)
        committing = time.monotonic()
        staged, written = commit_linked(spark, opts, lake, staged)
        now = time.monotonic()
        progress = BatchProgress(
            batch_id=len(done), start=a, end=b, rows=staged.rows,
            versions={name: w.version for name, w in written.items()}, seconds=now - started,
            stages={**staged.seconds, "commit": now - committing}, json_bytes=staged.json_bytes,
            tasks=staged.figures)
        done.append(progress)
        if on_batch is not None:
            on_batch(progress)
    return done


def repair_reorg(spark, opts: SourceOptions, lake: BronzeLake, view: ChainView, *,
                 max_depth: int | None = None, rewrite_history: bool = False,
                 on_divergence: Callable[[Divergence], None] | None = None) -> ReorgRepair | None:
    """If the stored tip is off the node's chain, re-ingest from the common ancestor.

    Stored blocks above the ancestor are removed first (a crash then leaves a shorter lake, all
    on the node's chain), then re-ingested from the node up to its safe head; those beyond it
    (a shorter new chain) are ingested later, when they are safe. A divergence deeper than
    ``max_depth`` (default per chain) is refused unless ``rewrite_history``.
    ``on_divergence`` hears what will be replaced before anything is.
    """
    opts = pin_to_chain(opts, view)
    if max_depth is None:
        max_depth = settings.default_max_reorg_depth(view.chain_id)
    with opts.client() as client:
        divergence = find_divergence(lake, client, head=view.head,
                                     max_depth=None if rewrite_history else max_depth)
    if divergence is None:
        return None
    if on_divergence is not None:
        on_divergence(divergence)
    first, stored_end = divergence.first_replaced, divergence.stored_tip + 1
    replace_end = min(stored_end, view.safe_end)
    for name in WRITE_ORDER:
        lake.replace_range(name, TABLES[name].arrow_schema.empty_table(), first, stored_end)
    if replace_end > first:
        reingest_range(session_of(spark), opts, lake, first, replace_end)
    removed = (max(first, replace_end), stored_end) if replace_end < stored_end else None
    repair = ReorgRepair(ancestor=divergence.ancestor, depth=divergence.depth,
                         replaced=(first, max(first, replace_end)), removed=removed)
    log.warning("reorg of depth %d repaired: re-ingested blocks [%d, %d)%s", repair.depth,
                *repair.replaced, f", removed [{removed[0]}, {removed[1]})" if removed else "")
    return repair


# Errors raised inside Spark tasks reach the driver wrapped in Java and Python tracebacks.
_OUR_ERRORS = (
    "ChainIdMismatchError", "MissingBlockError", "RpcTransportError", "RpcResponseError",
    "RpcError", "TransformError", "InconsistentChainError", "BlockNotAvailableError",
    "SourceOptionError", "ChainIdentityError", "DeepReorgError", "LakeError",
)
_ERROR_LINE = re.compile(r"(?:[\w.]+\.)?(" + "|".join(_OUR_ERRORS) + r"): (.+)")


def explain_failure(error: BaseException) -> str:
    """The one line that says why a run failed, dug out of Spark's wrapping when needed."""
    text = str(error)
    match = _ERROR_LINE.search(text)
    if match:
        return f"{match.group(1)}: {match.group(2).strip()}"
    first = next((line for line in text.splitlines() if line.strip()), type(error).__name__)
    return f"{type(error).__name__}: {first.strip()}"
