"""Spark's scratch directories (``ingestion.scratch``): a directory stays while a process holds
its lock, and the next claim removes it once nobody does, however its owner ended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ingestion.scratch import LOCK_NAME, UNLOCKED_GRACE_S, claim, remove_abandoned

CLAIM_AND_WAIT = """
import sys, time
from pathlib import Path
from ingestion.scratch import claim
scratch = claim(Path(sys.argv[1]))
print(scratch.path, flush=True)
time.sleep(120)
"""


def test_a_claimed_directory_stays_until_released(tmp_path):
    scratch = claim(tmp_path)
    assert scratch is not None and scratch.path.parent == tmp_path
    assert (scratch.path / LOCK_NAME).is_file()
    assert scratch.java_options() == f"-Djava.io.tmpdir={scratch.path}"
    (scratch.path / "blockmgr-1").mkdir()
    assert remove_abandoned(tmp_path) == []
    assert scratch.path.is_dir()
    scratch.release()
    assert remove_abandoned(tmp_path) == [scratch.path]
    assert not scratch.path.exists()


def test_the_directory_of_a_killed_process_goes_with_the_next_claim(tmp_path):
    def start() -> tuple[subprocess.Popen, Path]:
        proc = subprocess.Popen([sys.executable, "-c", CLAIM_AND_WAIT, str(tmp_path)],
                                stdout=subprocess.PIPE, text=True)
        return proc, Path(proc.stdout.readline().strip())

    (killed, killed_dir), (alive, alive_dir) = start(), start()
    try:
        (killed_dir / "spark-1").mkdir()
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=10)
        mine = claim(tmp_path)
        assert not killed_dir.exists()
        assert alive_dir.is_dir() and mine.path.is_dir()
    finally:
        for proc in (killed, alive):
            proc.kill()
            proc.wait(timeout=10)
    mine.release()


def test_a_child_that_inherited_the_lock_keeps_the_directory(tmp_path):
    """The warm server's case: its JVM holds the lock after the claiming process let go."""
    scratch = claim(tmp_path)
    child = subprocess.Popen(["sleep", "60"], pass_fds=(scratch.lock_fd,))
    scratch.release()
    try:
        assert remove_abandoned(tmp_path) == []
    finally:
        child.kill()
        child.wait(timeout=10)
    assert remove_abandoned(tmp_path) == [scratch.path]


def test_a_directory_without_its_lock_is_removed_only_once_old(tmp_path):
    young, old = tmp_path / "1-young", tmp_path / "2-old"
    young.mkdir()
    old.mkdir()
    past = time.time() - UNLOCKED_GRACE_S - 5
    os.utime(old, (past, past))
    assert remove_abandoned(tmp_path) == [old]
    assert young.is_dir()


def test_no_writable_temporary_directory_means_no_scratch(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    assert claim(blocked / "root") is None
    assert remove_abandoned(blocked / "root") == []
