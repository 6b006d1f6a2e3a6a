"""ingestion.python_workers: the Python local Spark starts its workers with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyspark
import pytest

from ingestion import python_workers

PYSPARK_DIR = Path(pyspark.__file__).resolve().parent
PROBE = ("import os, sys, pyspark; print(os.environ.get('PYTHONPATH')); "
         "print(pyspark.__file__); print(sys.executable)")


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CHAINLAKE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def run(wrapper: str, pythonpath: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([wrapper, "-c", PROBE], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    return out.stdout.splitlines()


def test_workers_import_the_installed_pyspark_and_keep_other_paths(cache, tmp_path):
    wrapper = python_workers.worker_python()
    assert Path(wrapper).parent == cache and os.access(wrapper, os.X_OK)
    other = tmp_path / "user lib"  # a space: the entries are split on ':' only
    zipped = PYSPARK_DIR / "python" / "lib" / "pyspark.zip"
    jar = PYSPARK_DIR / "jars" / "spark-core.jar"
    pythonpath, module, python = run(wrapper, f"{zipped}:{other}:{jar}")
    assert pythonpath == str(other)
    assert Path(module).resolve().parent == PYSPARK_DIR  # byte-compiled, not from the zip
    assert os.path.samefile(python, sys.executable)
    assert run(wrapper, str(zipped))[0] == "None"  # nothing left: unset, not empty
    assert run(wrapper, None)[0] == "None"


def test_the_wrapper_is_written_once_per_interpreter(cache):
    first = python_workers.worker_python()
    mtime = os.stat(first).st_mtime_ns
    assert python_workers.worker_python() == first and os.stat(first).st_mtime_ns == mtime
    assert [p.name for p in cache.iterdir()] == [Path(first).name]  # no partial file left


def test_paths_are_quoted_for_sh(tmp_path):
    odd = tmp_path / "it's a \"python\" $HOME"  # a stand-in that runs this interpreter
    odd.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    odd.chmod(0o755)
    script = tmp_path / "wrapper"
    script.write_text(python_workers.wrapper_text(str(odd), str(PYSPARK_DIR)))
    script.chmod(0o755)
    zipped = PYSPARK_DIR / "python" / "lib" / "pyspark.zip"
    pythonpath, module, _ = run(str(script), f"{zipped}:/elsewhere")
    assert pythonpath == "/elsewhere" and Path(module).resolve().parent == PYSPARK_DIR


def test_an_unwritable_cache_falls_back_to_this_interpreter(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("CHAINLAKE_CACHE_DIR", str(blocked / "cache"))
    assert python_workers.worker_python() == sys.executable
