"""A class-data-sharing archive of Spark's JVM classes: ~3 CPU-s and ~3 s less per Spark start.

A local Spark run starts a JVM that loads and verifies some ten thousand classes; that is a
large part of a run's fixed cost (measured with benchmarks/side_by_side.py: 12.4 -> 9.2 CPU-s of
the whole process tree for a 100-block run). Java 17 can dump the classes a run loaded into an
archive (``-XX:ArchiveClassesAtExit``) and map it in later JVMs (``-XX:SharedArchiveFile``).

The archive is built once per machine (``python -m ingestion.jvm_cache``, run by ``make setup``)
by a throw-away Spark session in a process group of its own: it is written when that JVM exits,
to a temporary name, and renamed into place only once every process of the group is gone, so
no JVM ever maps a half-written archive. A JVM that cannot use it (another Java or pyspark)
ignores it (``-Xshare:auto``, the default). Nothing is downloaded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV_CACHE_DIR = "CHAINLAKE_CACHE_DIR"


def cache_dir() -> Path:
    """Where chainlake keeps what it builds once per machine (this archive, the Python worker
    wrapper of ``ingestion.python_workers``)."""
    return Path(os.environ.get(ENV_CACHE_DIR) or Path.home() / ".cache" / "chainlake")


def archive_path() -> Path:
    import pyspark

    root = cache_dir()
    java = Path(os.environ.get("JAVA_HOME") or "java").name or "java"
    return root / f"spark-{pyspark.__version__}-{java}-classes.jsa"


def java_options() -> str:
    """The JVM option that maps the archive, or nothing when there is none yet."""
    path = archive_path()
    return f"-XX:SharedArchiveFile={path}" if path.is_file() else ""


def _process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def build_archive(timeout: float = 600.0) -> Path:
    """Build the archive if there is none (a Spark session that runs a small stream)."""
    path = archive_path()
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix="jsa-", dir=path.parent)) / "classes.jsa"
    child = subprocess.Popen([sys.executable, "-m", "ingestion.jvm_cache", "--dump", str(partial)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        child.wait(timeout=timeout)
        deadline = time.monotonic() + 60
        while _process_group_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.2)  # the JVM writes the archive as it exits
    finally:
        if _process_group_alive(child.pid):
            os.killpg(child.pid, signal.SIGKILL)
    if child.returncode == 0 and partial.is_file() and partial.stat().st_size > 0:
        partial.replace(path)
    for leftover in partial.parent.glob("*"):
        leftover.unlink()
    partial.parent.rmdir()
    return path


def _dump(target: str) -> None:
    """In the throw-away process: load the classes a chainlake run loads, then exit."""
    from ingestion.spark import get_spark

    spark = get_spark(extra_java_options=f"-XX:ArchiveClassesAtExit={target}", use_archive=False)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "in").mkdir()
        Path(tmp, "in", "a.txt").write_text("x\n")
        query = (spark.readStream.format("text").load(f"{tmp}/in").writeStream
                 .foreachBatch(lambda df, _: df.toArrow())
                 .option("checkpointLocation", f"{tmp}/cp").trigger(availableNow=True).start())
        query.awaitTermination()
        spark.range(10).toArrow()
    spark.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--dump"]:
        _dump(sys.argv[2])
    else:
        print(build_archive())
