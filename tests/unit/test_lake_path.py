"""ingestion.lake_path: a lake root that cannot hold the tables is named at once, with the reason."""

from __future__ import annotations

import errno
import os

import pytest

from ingestion import lake_path
from ingestion.lake_path import PROBE_PREFIX, LakePathError, check_lake_writable


def test_a_missing_root_is_created_and_no_probe_is_left(tmp_path):
    root = tmp_path / "a" / "lake"
    check_lake_writable(str(root))
    assert root.is_dir() and list(root.iterdir()) == []
    check_lake_writable(f"file://{root}")  # file:// URIs are local too
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("uri", ["s3://bucket/lake", "gs://bucket/lake", "abfss://c@a.dfs.core/x"])
def test_remote_lakes_are_not_checked(uri):
    check_lake_writable(uri)  # nothing local is created or probed


@pytest.mark.parametrize("root", ["", "   "])
def test_an_empty_path_is_refused(root):
    with pytest.raises(LakePathError, match="the lake path is empty"):
        check_lake_writable(root)


def test_a_file_as_the_root(tmp_path):
    root = tmp_path / "lake"
    root.write_text("not a lake")
    with pytest.raises(LakePathError, match=f"^lake path {root} is a regular file, not a directory$"):
        check_lake_writable(str(root))
    assert root.read_text() == "not a lake"


def test_a_root_under_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    root = blocker / "lake"
    with pytest.raises(LakePathError, match=f"^cannot create lake directory {root}: {blocker} is a "
                                            f"regular file, not a directory$"):
        check_lake_writable(str(root))


@pytest.mark.parametrize("part", ["bronze", "bronze/blocks", "bronze/logs", "_checkpoints"])
def test_a_file_in_place_of_a_layout_directory(tmp_path, part):
    root = tmp_path / "lake"
    (root / part).parent.mkdir(parents=True, exist_ok=True)
    (root / part).write_text("x")
    with pytest.raises(LakePathError, match=f"^lake path {root / part} is a regular file, not a "
                                            f"directory"):
        check_lake_writable(str(root))


def test_a_device_as_the_root():
    with pytest.raises(LakePathError, match="^lake path /dev/full is a device, not a directory$"):
        check_lake_writable("/dev/full")


@pytest.mark.parametrize(("code", "reason"), [
    (errno.ENOSPC, "No space left on device (ENOSPC)"),
    (errno.EDQUOT, "Disk quota exceeded (EDQUOT)"),
    (errno.EIO, "Input/output error (EIO)"),
])
def test_a_full_disk_is_found_by_the_probe_and_the_probe_is_removed(tmp_path, monkeypatch, code,
                                                                    reason):
    root = tmp_path / "lake"
    root.mkdir()

    def fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(lake_path.os, "fsync", fsync)
    with pytest.raises(LakePathError, match=f"^lake directory {root} is not writable: "
                                            f"{reason.replace('(', '[(]').replace(')', '[)]')}$"):
        check_lake_writable(str(root))
    assert not any(p.name.startswith(PROBE_PREFIX) for p in root.iterdir())


def test_a_read_only_file_system_is_found_by_the_probe(tmp_path, monkeypatch):
    root = tmp_path / "lake"
    root.mkdir()
    real_open = os.open

    def read_only(path, flags, *args):
        if os.path.basename(path).startswith(PROBE_PREFIX):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(lake_path.os, "open", read_only)
    with pytest.raises(LakePathError, match="is not writable: Read-only file system [(]EROFS[)]$"):
        check_lake_writable(str(root))


def test_an_unwritable_directory_under_proc_or_sys():
    with pytest.raises(LakePathError, match="^cannot create lake directory /proc/chainlake-lake: "):
        check_lake_writable("/proc/chainlake-lake")
    with pytest.raises(LakePathError, match="^lake directory /sys/kernel is not writable: "):
        check_lake_writable("/sys/kernel")
