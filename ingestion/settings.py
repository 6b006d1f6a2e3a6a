"""Every default and environment variable of chainlake, in one place."""

from __future__ import annotations

import os

# The embedded devnet (ingestion.devnet). Declared here, not there, so that reading a setting
# imports no HTTP client: every Spark Python worker imports this module.
DEVNET_CHAIN_ID = 31337
DEFAULT_PORT = 8545
DEFAULT_HOST = "127.0.0.1"

ENV_RPC_URL = "CHAINLAKE_RPC_URL"
ENV_LAKE_URI = "CHAINLAKE_LAKE_URI"
ENV_SPARK_MASTER = "CHAINLAKE_SPARK_MASTER"
# A running Spark Connect server (``chainlake spark-server``), e.g. sc://127.0.0.1:15002: runs
# then connect to a warm Spark instead of starting one (used by ``make dev`` for the sensor).
ENV_SPARK_REMOTE = "CHAINLAKE_SPARK_REMOTE"
DEFAULT_SPARK_SERVER_PORT = 15002
# A Spark Connect server stops a PySpark fork daemon that did no work for this long (seconds):
# its session is gone or idle. A run every few seconds keeps the shared ones; a run after a pause
# restarts them in about a second, still far from a JVM start.
SPARK_DAEMON_IDLE_S = 60.0
# ... and one that a newer daemon of the same kind has replaced (the read-planning daemon of an
# earlier query: Spark starts one per streaming query) once its workers have waited this long.
SPARK_SUPERSEDED_DAEMON_IDLE_S = 4.0

DEFAULT_SPARK_MASTER = "local[2,3]"  # 2 cores; up to 3 attempts per task (local[N] never retries)

DEFAULT_RPC_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"  # the embedded devnet
DEFAULT_LAKE_URI = "./lake"

# Admission control: at most this many blocks per streaming micro-batch. Each micro-batch is
# collected on the driver and committed as one range-replace per table, so this bounds memory.
DEFAULT_MAX_BLOCKS_PER_TRIGGER = 2_000
# Blocks per Spark task (one input partition = one contiguous block range). Tasks stream their
# rows to Parquet files, so memory does not grow with it: half a micro-batch, one task per core.
DEFAULT_BLOCKS_PER_PARTITION = 1_000
# Blocks per JSON-RPC round trip inside a task (blocks + their receipts, batched).
DEFAULT_RPC_BLOCKS_PER_REQUEST = 25
# Round trips a task keeps going at once (it fetches ahead while it converts): two let anvil serve
# ~1.15x the blocks per second of one (an interleaved A/B on 1,500 anvil blocks).
DEFAULT_RPC_REQUESTS_IN_FLIGHT = 2
# The head start (ingestion/head_start.py): while a local Spark starts, the driver fetches the
# first micro-batch's replies, up to this many MB of JSON (0: off). 1,500 anvil blocks are ~150 MB,
# 1,000 mainnet blocks ~530 MB; the spool is a temporary directory, emptied as tasks take from it.
ENV_HEAD_START_MB = "CHAINLAKE_HEAD_START_MB"
DEFAULT_HEAD_START_MB = 512


def head_start_max_bytes() -> int:
    explicit = os.environ.get(ENV_HEAD_START_MB)
    try:
        mb = float(explicit) if explicit else DEFAULT_HEAD_START_MB
    except ValueError:
        raise ValueError(f"{ENV_HEAD_START_MB} must be a number of MB (0: off), got "
                         f"{explicit!r}") from None
    if not (mb >= 0 and mb != float("inf")):  # also refuses NaN
        raise ValueError(f"{ENV_HEAD_START_MB} must be >= 0, got {explicit!r}")
    return int(mb * 1_000_000)

# Blocks kept back from the head, per chain id: deep enough that a reorg beyond it is
# exceptional. Unknown chains use DEFAULT_CONFIRMATIONS.
CONFIRMATIONS_BY_CHAIN: dict[int, int] = {
    1: 64,  # Ethereum mainnet: two epochs, finality in practice
    DEVNET_CHAIN_ID: 0,  # local devnet: no reorgs unless a test makes them
}
DEFAULT_CONFIRMATIONS = 64


def default_confirmations(chain_id: int) -> int:
    return CONFIRMATIONS_BY_CHAIN.get(chain_id, DEFAULT_CONFIRMATIONS)


# Deepest divergence between the lake and the node that a run repairs as a reorg; anything deeper
# is refused (a node of another chain, or history rewritten by hand): only
# `chainlake repair --rewrite-history` replaces it. Per chain id, from how deep real reorgs go:
MAX_REORG_DEPTH_BY_CHAIN: dict[int, int] = {
    # Ethereum: blocks are final after two epochs (64 slots, ~13 min); the deepest reorg since
    # the merge was 7 blocks. 128 = two finality windows.
    1: 128,
    # Polygon PoS: a 157-block reorg happened in February 2023; milestones now finalize in
    # ~16 blocks, but old nodes and history still allow deep ones.
    137: 256,
    # The devnet reorganizes only when a test says so (anvil_reorg, a few blocks deep).
    DEVNET_CHAIN_ID: 64,
}
DEFAULT_MAX_REORG_DEPTH = 128


def default_max_reorg_depth(chain_id: int) -> int:
    return MAX_REORG_DEPTH_BY_CHAIN.get(chain_id, DEFAULT_MAX_REORG_DEPTH)


def rpc_url_from_env() -> str:
    return os.environ.get(ENV_RPC_URL) or DEFAULT_RPC_URL


def lake_uri_from_env() -> str:
    return os.environ.get(ENV_LAKE_URI) or DEFAULT_LAKE_URI


def spark_master_from_env() -> str:
    return os.environ.get(ENV_SPARK_MASTER) or DEFAULT_SPARK_MASTER


def spark_remote_from_env() -> str | None:
    return os.environ.get(ENV_SPARK_REMOTE) or None


# Dagster partitions: fixed block ranges. Mainnet-sized by default; small on the devnet so the
# demo and tests show several partitions.
ENV_PARTITION_SIZE = "CHAINLAKE_PARTITION_SIZE"
ENV_DATASETS = "CHAINLAKE_DATASETS"  # bronze tables Dagster runs write (default: see ingest)
ENV_START_BLOCK = "CHAINLAKE_START_BLOCK"
DEFAULT_PARTITION_SIZE = 100_000
DEVNET_PARTITION_SIZE = 1_000


def partition_size_from_env() -> int:
    explicit = os.environ.get(ENV_PARTITION_SIZE)
    if explicit:
        size = int(explicit)
        if size < 1:
            raise ValueError(f"{ENV_PARTITION_SIZE} must be >= 1, got {size}")
        return size
    return DEVNET_PARTITION_SIZE if rpc_url_from_env() == DEFAULT_RPC_URL else DEFAULT_PARTITION_SIZE


def start_block_from_env() -> int:
    """First block the deployment ingests (partitions start at the range holding it)."""
    return int(os.environ.get(ENV_START_BLOCK) or 0)


# Lake maintenance (`ingestion.maintenance`, `chainlake maintain`, the Dagster job lake_maintenance).
# Files removed from a table (and `*.unreadable-*` Spark checkpoints) are deleted once older than
# this: Delta's own default (`delta.deletedFileRetentionDuration`, 1 week), so readers of older
# versions, time travel within a week and files a writer has written but not committed yet stay
# safe. Shorter is refused unless asked for explicitly.
DEFAULT_RETENTION_HOURS = 168.0
# Compaction rewrites the small files of closed block ranges into files of at most about this
# size (sum of the Parquet sizes it merges; one range is read into memory at a time).
DEFAULT_COMPACT_TARGET_FILE_BYTES = 64 * 1024 * 1024
# A Spark checkpoint written to within this many hours may belong to a query still running: kept.
DEFAULT_CHECKPOINT_IDLE_HOURS = 1.0
# Dagster run history: finished catch-up runs older than this many days are purged (the run
# holding the latest materialization of a partition is always kept).
DEFAULT_RUN_RETENTION_DAYS = 7


# Following the head in Dagster (sensors/catchup.py, assets/bronze.py).
# How often chain_head_sensor looks at the head and the lake. Each tick asks the node for its head
# and reads the `blocks` table's Delta statistics; a partition with a run queued or running gets
# no second one, so a short interval only shortens the wait between catch-up runs. 5 s suits the
# devnet's 2 s blocks and mainnet's 12 s alike.
ENV_SENSOR_INTERVAL_S = "CHAINLAKE_SENSOR_INTERVAL_S"
DEFAULT_SENSOR_INTERVAL_S = 5
# The partitions ending at the one holding the safe head are "tip" work (their runs use the tip
# lane); missing blocks in older partitions are "history" (healed one run at a time).
CATCH_UP_HEAD_PARTITIONS = 3
# JSON-RPC calls per second per Spark task, per kind of run (unset: the `rpc` resource's value).
# The run tag `chainlake/requests_per_second` overrides both for one run.
ENV_TIP_REQUESTS_PER_SECOND = "CHAINLAKE_TIP_REQUESTS_PER_SECOND"
ENV_HISTORY_REQUESTS_PER_SECOND = "CHAINLAKE_HISTORY_REQUESTS_PER_SECOND"
# Retries of a bronze run's ingestion step after a transient failure (node unreachable, a chain
# that did not link up, a Spark worker lost): in the same run, about DELAY, 3*DELAY and 7*DELAY s
# after the failure (Dagster's exponential backoff, +/- DELAY jitter). Refusals (another chain, a
# deep reorg, an unusable lake, bad options or partition keys) never retry.
INGEST_RETRIES = 3
INGEST_RETRY_DELAY_S = 10
# When a run's worker dies, the code server that launched it fails the run. When the code server
# dies with it (a container restart, a reboot, the OOM killer taking both), nobody does: under
# Dagster's DefaultRunLauncher, which cannot check a worker's health, the run stays STARTED, its
# partition looks in flight to chain_head_sensor and its lane stays taken: following the head
# would stop for good. The sensor tags its runs with these limits (`dagster/max_runtime`), past
# which the daemon's run monitoring (config/dagster.yaml) fails them, and the sensor asks for their
# blocks again. A live run stopped by the limit loses nothing: the next run resumes from the lake.
# Tip runs take seconds (minutes after an outage); a history run may ingest a whole partition.
ENV_TIP_RUN_MAX_RUNTIME_S = "CHAINLAKE_TIP_RUN_MAX_RUNTIME_S"
ENV_HISTORY_RUN_MAX_RUNTIME_S = "CHAINLAKE_HISTORY_RUN_MAX_RUNTIME_S"
DEFAULT_TIP_RUN_MAX_RUNTIME_S = 15 * 60
DEFAULT_HISTORY_RUN_MAX_RUNTIME_S = 4 * 60 * 60
# A tip run whose partition is still open after its pass keeps following the head this long
# (ingestion.ingest.follow_head): one query in the same run ingests each new safe block about a
# second after the node has it, instead of waiting for the sensor's next tick and a new
# run's start (~2 s of a process and its imports, every block). 0 turns it off. Well below the
# tip runs' maximum run time.
ENV_TIP_FOLLOW_S = "CHAINLAKE_TIP_FOLLOW_S"
DEFAULT_TIP_FOLLOW_S = 60
# While following, the node's head is asked this often (seconds): by the run until a new block
# is safe, then by its query's processing-time trigger. The run stops that query between
# micro-batches once its time is up; a trigger still running FOLLOW_STOP_GRACE_S after (a
# stalled node) is stopped regardless. A query whose run died (a killed worker: on a Spark
# Connect server the query outlives its client) fails itself FOLLOW_ORPHAN_EXPIRY_S after its
# time instead of following for ever; the scope's next run also stops it.
FOLLOW_POLL_S = 1.0
FOLLOW_STOP_GRACE_S = 10.0
FOLLOW_ORPHAN_EXPIRY_S = 60.0
# Code references of the assets link to this repository when set (e.g.
# https://github.com/org/chainlake and branch main); else they name local files.
ENV_GIT_URL = "CHAINLAKE_GIT_URL"
ENV_GIT_BRANCH = "CHAINLAKE_GIT_BRANCH"


def sensor_interval_from_env() -> int:
    return _seconds_from_env(ENV_SENSOR_INTERVAL_S, DEFAULT_SENSOR_INTERVAL_S)


def run_max_runtime_from_env(kind: str) -> int:
    """Maximum run time in seconds of the sensor's ``tip`` or ``history`` runs."""
    if kind == "tip":
        return _seconds_from_env(ENV_TIP_RUN_MAX_RUNTIME_S, DEFAULT_TIP_RUN_MAX_RUNTIME_S)
    return _seconds_from_env(ENV_HISTORY_RUN_MAX_RUNTIME_S, DEFAULT_HISTORY_RUN_MAX_RUNTIME_S)


def tip_follow_seconds_from_env() -> int:
    """How long a tip run follows the head after its first pass (0: it does not)."""
    return _seconds_from_env(ENV_TIP_FOLLOW_S, DEFAULT_TIP_FOLLOW_S, minimum=0)


def _seconds_from_env(name: str, default: int, minimum: int = 1) -> int:
    """A whole number of seconds >= ``minimum`` from ``$name``, ``default`` when unset; else
    ValueError."""
    explicit = os.environ.get(name)
    if not explicit:
        return default
    try:
        seconds = int(explicit)
    except ValueError:
        seconds = minimum - 1
    if seconds < minimum:
        raise ValueError(f"{name} must be a whole number of seconds >= {minimum}, got {explicit!r}")
    return seconds


def positive_rate(text: str, what: str) -> float:
    """A requests-per-second value: a positive finite number, else ValueError naming ``what``."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a positive finite number, got {text!r}")
    return value


def requests_per_second_for(kind: str | None) -> float | None:
    """The configured JSON-RPC rate for ``tip`` or ``history`` runs; None when not set."""
    name = {"tip": ENV_TIP_REQUESTS_PER_SECOND,
            "history": ENV_HISTORY_REQUESTS_PER_SECOND}.get(kind or "")
    text = os.environ.get(name) if name else None
    return positive_rate(text, name) if text else None
