"""The class-data-sharing archive of Spark's JVM: built once, in place only when complete."""

import pytest

from ingestion import jvm_cache
from ingestion.spark import java_options


def test_without_an_archive_no_option_is_added(tmp_path, monkeypatch):
    monkeypatch.setenv(jvm_cache.ENV_CACHE_DIR, str(tmp_path))
    assert jvm_cache.java_options() == ""
    assert java_options("-Xbase", "-Xextra") == "-Xbase -Xextra"


@pytest.mark.slow
def test_the_archive_is_built_once_and_then_mapped(tmp_path, monkeypatch):
    monkeypatch.setenv(jvm_cache.ENV_CACHE_DIR, str(tmp_path))
    path = jvm_cache.build_archive()
    assert path.is_file() and path.stat().st_size > 10_000_000
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("python-worker-"))
    assert left == [path.name]  # no partial file left (the session wrote its worker wrapper)
    assert java_options("-Xbase") == f"-Xbase -XX:SharedArchiveFile={path}"
    mtime = path.stat().st_mtime
    assert jvm_cache.build_archive() == path and path.stat().st_mtime == mtime  # not rebuilt
