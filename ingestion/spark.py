"""One Spark session per process, configured for this machine class and for the `evm` source."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
import uuid
from pathlib import Path

from pyspark.sql import SparkSession

from ingestion import settings
from ingestion.scratch import process_scratch

_lock = threading.Lock()


# One configuration for a local session and for the Spark Connect server (``spark_server``).
SESSION_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.python.worker.reuse": "true",
    # Halves JVM start-up on small machines (measured, DESIGN.md); Spark's work here is
    # orchestration, the heavy lifting happens in Python workers and delta-rs.
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
    "spark.sql.streaming.stopGracefullyOnShutdown": "true",
    # Memory (measured with benchmarks/side_by_side.py: peak RSS of the process tree 2.1 GiB ->
    # 1.5 GiB on mainnet-shaped blocks): no rows reach the JVM (tasks write their files), so a
    # small heap suffices; and without PySpark's fork daemon, each of Spark's four Python worker
    # kinds (data source lookup, creation, read planning, tasks) is one reused process instead of
    # a daemon plus forked workers.
    "spark.driver.memory": "512m",
    "spark.python.use.daemon": "false",
}
LOCAL_CONF: dict[str, str] = {"spark.driver.host": "127.0.0.1",
                              "spark.driver.bindAddress": "127.0.0.1"}


def worker_interpreter(local: bool = True) -> str:
    """The Python Spark starts its workers with: the interpreter that has pyarrow and this
    package installed, unless ``PYSPARK_PYTHON`` names another one; for a local JVM through
    ``ingestion.python_workers``' wrapper (workers import the installed, byte-compiled pyspark
    instead of compiling Spark's zipped copy)."""
    python = os.environ.get("PYSPARK_PYTHON") or sys.executable
    if local and _same_file(python, sys.executable):
        from ingestion.python_workers import worker_python

        python = worker_python()
    return python


def python_environment(local: bool = True) -> str:
    """Set up the environment Spark's JVM and Python workers inherit; return the workers'
    Python (``worker_interpreter``). Spark must not bind a non-loopback address here."""
    python = worker_interpreter(local)
    # The JVM starts its driver-side planning workers with PYSPARK_DRIVER_PYTHON, the rest with
    # PYSPARK_PYTHON: both get the same interpreter.
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = python
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Arrow's default allocator keeps freed memory for reuse; a task's batches come and go, so
    # give it back (the workers inherit this environment).
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    return python


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a == b


def get_spark(master: str | None = None, app_name: str = "chainlake",
              extra_conf: dict[str, str] | None = None, remote: str | None = None, *,
              extra_java_options: str = "", use_archive: bool = True) -> SparkSession:
    """Return the process's Spark session, creating it on first use with the `evm` source registered.

    ``remote`` (or ``$CHAINLAKE_SPARK_REMOTE``), e.g. ``sc://127.0.0.1:15002``, connects to a
    running Spark Connect server (``chainlake spark-server``): no JVM starts in this process, a
    session is ready in about a second. Otherwise ``master`` defaults to
    ``$CHAINLAKE_SPARK_MASTER`` or local mode. Later calls return the same session whatever they
    pass (Spark allows one active context per process).
    """
    with _lock:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        remote = remote or settings.spark_remote_from_env()
        if remote:
            python_environment(local=False)
            return _connect(remote)
        master = master or settings.spark_master_from_env()
        local = master.startswith("local")
        python = python_environment(local=local)
        builder = (SparkSession.builder.master(master).appName(app_name)
                   .config("spark.pyspark.python", python))
        scratch = process_scratch() if local else None  # the JVM's java.io.tmpdir
        conf = {**SESSION_CONF, **(LOCAL_CONF if local else {}), **(extra_conf or {})}
        if scratch is not None:
            extra_java_options = f"{scratch.java_options()} {extra_java_options}".strip()
        conf["spark.driver.extraJavaOptions"] = java_options(
            conf["spark.driver.extraJavaOptions"], extra_java_options, use_archive)
        for key, value in conf.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel(os.environ.get("CHAINLAKE_SPARK_LOG_LEVEL", "ERROR"))
        register_sources(spark)
        return spark


class SparkOnDemand:
    """A Spark session started when a run first needs it (``session_of``), or in the background
    (``start_in_background``), so that the run's work before its query (checks, the head start)
    overlaps the JVM's start."""

    def __init__(self, master: str | None = None, remote: str | None = None) -> None:
        self.remote = remote or settings.spark_remote_from_env()
        self.master = master or settings.spark_master_from_env()
        self._session: SparkSession | None = None
        self._starting: threading.Thread | None = None

    @property
    def local(self) -> bool:
        """Will (or do) the session's tasks run on this machine?"""
        if self._session is not None:
            return tasks_run_here(self._session)
        return self.remote is None and self.master.startswith("local")

    def get(self) -> SparkSession:
        if self._starting is not None:
            self._starting.join()
        if self._session is None:
            self._session = get_spark(self.master, remote=self.remote)
        return self._session

    def start_in_background(self) -> SparkOnDemand:
        """Start the session in a thread now (``get`` then waits for it): the JVM boots while
        the caller checks its input. A failure is met again, and raised, by ``get``."""
        def start() -> None:
            with contextlib.suppress(Exception):
                self._session = get_spark(self.master, remote=self.remote)

        self._starting = threading.Thread(target=start, name="chainlake-spark-start",
                                          daemon=True)
        self._starting.start()
        return self


def session_of(spark: SparkSession | SparkOnDemand) -> SparkSession:
    """The session itself, starting it if it is on demand."""
    return spark.get() if isinstance(spark, SparkOnDemand) else spark


def tasks_run_here(spark: SparkSession | SparkOnDemand) -> bool:
    """Do the session's tasks run on this machine (a local master, not Spark Connect)?"""
    if isinstance(spark, SparkOnDemand):
        return spark.local
    if not isinstance(spark, SparkSession):  # a Spark Connect session: tasks run on the server
        return False
    return spark.sparkContext.master.startswith("local")


def _connect(remote: str) -> SparkSession:
    """A session on the Spark Connect server ``remote``: the session this machine's runs share
    there (``shared_session_id``), unless ``remote`` names one itself. (No app name: a Connect
    session has none of its own, and setting it is a round trip.)"""
    if "session_id=" in remote:
        spark = SparkSession.builder.remote(remote).getOrCreate()
        register_sources(spark)
        return spark
    for renew in (False, True):
        session_id = shared_session_id(remote, renew=renew)
        separator = ";" if "/;" in remote else "/;"
        spark = SparkSession.builder.remote(f"{remote}{separator}session_id={session_id}").create()
        try:
            register_sources(spark)  # the first round trip
            return spark
        except Exception as err:  # the server closed the shared session (idle timeout, stop())
            spark.release_session_on_close = False
            spark.stop()
            if renew or "SESSION_CLOSED" not in str(err):
                raise
    raise AssertionError("unreachable")


def shared_session_id(remote: str, *, renew: bool = False) -> str:
    """The Spark Connect session id that runs on this machine share on server ``remote``.

    The server keeps Python worker processes per session (one fork daemon per kind of worker,
    ``spark_server.SERVER_CONF``, found by its ``SPARK_JOB_ARTIFACT_UUID``), and a session
    outlives its client by the server's idle timeout. A session per run would start those
    processes afresh every run and leave them behind; one shared session starts them once. The id
    is kept in the cache directory, per server URL; ``renew`` replaces a session the server has
    closed. Runs that race to create it end up on two sessions, which is harmless."""
    from ingestion import jvm_cache

    path = jvm_cache.cache_dir() / f"spark-connect-session-{_digest(remote)}"
    if not renew:
        with contextlib.suppress(OSError, ValueError):
            return str(uuid.UUID(path.read_text().strip(), version=4))
    session_id = str(uuid.uuid4())
    _write_atomically(path, session_id)
    return session_id


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that no reader sees half of it; an unwritable cache
    directory leaves the file as it was (the caller goes on with ``text``)."""
    import tempfile

    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(partial, path)


def java_options(base: str, extra: str = "", use_archive: bool = True) -> str:
    """The driver JVM's options: ``base``, the class-data-sharing archive when there is one
    (``ingestion.jvm_cache``), and ``extra``."""
    from ingestion import jvm_cache

    archive = jvm_cache.java_options() if use_archive else ""
    return " ".join(part for part in (base, archive, extra) if part)


def register_sources(spark: SparkSession) -> None:
    """Register the `evm` data source with a session (idempotent)."""
    from ingestion.source import EvmDataSource

    spark.dataSource.register(EvmDataSource)
