"""The interpreter local Spark starts its Python workers with: ~0.4 CPU-s less per worker.

Spark puts its own copy of pyspark first on every Python worker's ``PYTHONPATH``: the zipped
sources under ``pyspark/python/lib`` (``pyspark.zip``, ``py4j-*-src.zip``) and the spark-core
jar. Python cannot cache byte code inside a zip, so each worker compiled pyspark from source
before its first instruction, and re-read the zip and jar directories when Spark's file setup
invalidated the import caches. A run starts five such workers (data source lookup, creation,
streaming offsets, read planning, tasks): profiled with py-spy, 2 of a 10-block run's 7.6 CPU-s.

With pip's pyspark those entries are redundant: the same package is installed next to this one,
byte-compiled. So local sessions (and ``chainlake spark-server``) give Spark a small ``sh``
wrapper as its Python: it drops the ``PYTHONPATH`` entries inside the installed pyspark's
directory and execs this interpreter. Entries from anywhere else (a ``SPARK_HOME`` of another
Spark, the user's own) are kept. The wrapper lives in the chainlake cache directory
(``CHAINLAKE_CACHE_DIR``, default ``~/.cache/chainlake``), one per interpreter, and is written
atomically on first use; when it cannot be written, Spark gets this interpreter unchanged.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

from ingestion.jvm_cache import cache_dir

_TEMPLATE = """#!/bin/sh
# Written by chainlake (ingestion/python_workers.py): a Spark Python worker imports the installed,
# byte-compiled pyspark instead of compiling Spark's zipped copy on every start.
kept=""
IFS=:
for entry in $PYTHONPATH; do
  case "$entry" in
    {pyspark_dir}/*) ;;
    *) kept="${{kept:+$kept:}}$entry" ;;
  esac
done
unset IFS
if [ -n "$kept" ]; then export PYTHONPATH="$kept"; else unset PYTHONPATH; fi
exec {python} "$@"
"""


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def wrapper_text(python: str, pyspark_dir: str) -> str:
    """The wrapper's ``sh`` source for ``python`` and the installed pyspark at ``pyspark_dir``."""
    return _TEMPLATE.format(python=_sh_quote(python), pyspark_dir=_sh_quote(pyspark_dir))


def worker_python() -> str:
    """The executable to give Spark as its Python (``spark.pyspark.python``) for local sessions."""
    import pyspark

    pyspark_dir = str(Path(pyspark.__file__).resolve().parent)
    text = wrapper_text(sys.executable, pyspark_dir)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = cache_dir() / f"python-worker-{digest}"
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=".python-worker-", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(partial, 0o755)
        os.replace(partial, path)  # atomic: a concurrent session never runs half a file
    except OSError:
        return sys.executable
    return str(path)
