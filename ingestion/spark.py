"""One Spark session per process, configured for this machine class and for the `evm` source."""

from __future__ import annotations

import os
import sys
import threading

from pyspark.sql import SparkSession

from ingestion import settings

_lock = threading.Lock()


def get_spark(master: str | None = None, app_name: str = "chainlake",
              extra_conf: dict[str, str] | None = None) -> SparkSession:
    """Return the process's Spark session, creating it on first use with the `evm` source registered.

    ``master`` defaults to ``$CHAINLAKE_SPARK_MASTER`` or local mode. Later calls return the
    same session whatever they pass (Spark allows one active context per process).
    """
    # Workers must run the interpreter that has pyarrow and this package installed, and Spark must
    # not bind a non-loopback address on these machines.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    with _lock:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        master = master or settings.spark_master_from_env()
        builder = (
            SparkSession.builder.master(master)
            .appName(app_name)
            .config("spark.pyspark.python", sys.executable)
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.python.worker.reuse", "true")
            # Halves JVM start-up on small machines (measured, DESIGN.md); Spark's work here is
            # orchestration, the heavy lifting happens in Python workers and delta-rs.
            .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
            .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
        )
        if master.startswith("local"):
            builder = builder.config("spark.driver.host", "127.0.0.1").config(
                "spark.driver.bindAddress", "127.0.0.1")
        for key, value in (extra_conf or {}).items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel(os.environ.get("CHAINLAKE_SPARK_LOG_LEVEL", "ERROR"))
        register_sources(spark)
        return spark


def register_sources(spark: SparkSession) -> None:
    """Register the `evm` data source with a session (idempotent)."""
    from ingestion.source import EvmDataSource

    spark.dataSource.register(EvmDataSource)
