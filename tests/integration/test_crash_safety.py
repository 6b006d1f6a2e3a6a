"""``kill -9`` of ``chainlake ingest`` at random moments loses nothing and duplicates nothing.

The real command runs in its own process group (its JVM and Python workers with it) over every
devnet block, five blocks per micro-batch. It is killed with SIGKILL three times, each time a
seeded random moment after its first micro-batch was reported, so kills land between batches,
around Spark's checkpoint writes and (rarely) between the table commits of a batch. One more run,
the same ``cli.main`` with a hook, SIGKILLs itself at the worst moment for sure: after a batch's
transactions and logs were committed and before its blocks were. A last run completes. Then every
bronze table must equal what web3 reads from the node: no duplicate key, no gap, every row equal;
every rerun must have resumed where the lake stopped (its first batch is the first block the lake
lacks, never block 0 again); and no process of any run may be left behind, nor any scratch file
of a killed JVM (``ingestion.scratch``).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from process_tree import descendants, survivors
from reference import project, reference_rows

from ingestion.schemas import TABLES
from ingestion.scratch import scratch_root
from ingestion.sink import BronzeLake, replaced_range

pytestmark = [pytest.mark.slow, pytest.mark.devnet]

CHAINLAKE = Path(sys.executable).parent / "chainlake"
SEED = 20240917
KILLS = 3
MAX_DELAY_S = 0.4  # after the first batch line; a 5-block batch takes ~0.3 s here
BATCH_LINE = re.compile(r"batch (\d+): blocks \[(\d+), (\d+)\)")
NAMES = ("blocks", "transactions", "logs")
# What a Spark JVM puts in its java.io.tmpdir (and deletes only when it stops cleanly).
SPARK_SCRATCH = re.compile(r"^(spark-|blockmgr-|artifacts-|liblz4-java)")

# `chainlake ingest` (the same ``cli.main``) that SIGKILLs its own process group at the worst
# moment a random kill rarely hits: in its second micro-batch, after the child tables were
# committed and before ``blocks`` was.
KILL_INSIDE_A_BATCH = """
import os, signal, sys
from ingestion import sink
from ingestion.cli import main

real_commit = sink.BronzeLake.commit_files
blocks_writes = 0

def commit_files(self, name, *args, **kwargs):
    global blocks_writes
    if name == "blocks":
        blocks_writes += 1
        if blocks_writes == 2:
            os.killpg(os.getpgrp(), signal.SIGKILL)
    return real_commit(self, name, *args, **kwargs)

sink.BronzeLake.commit_files = commit_files
sys.exit(main(sys.argv[1:]))
"""


# --- processes -------------------------------------------------------------------------------


class IngestRun:
    """One ``chainlake ingest`` subprocess in a new session; stdout lines collected as they come."""

    def __init__(self, args: list[str], stderr_path: Path,
                 command: tuple[str, ...] = (str(CHAINLAKE),),
                 env: dict[str, str] | None = None) -> None:
        self.stderr_path = stderr_path
        self._stderr = stderr_path.open("w")
        self.proc = subprocess.Popen([*command, "ingest", *args], stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, start_new_session=True,
                                     env=env)
        self.lines: list[str] = []
        self.known: dict[int, tuple[int, int]] = {}  # every process of the run seen so far
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def batches(self) -> list[tuple[int, int, int]]:
        """(batch id, first block, end block) of each reported micro-batch."""
        return [tuple(map(int, m.groups())) for line in self.lines
                if (m := BATCH_LINE.search(line))]

    def output(self) -> str:
        return "\n".join(self.lines) + "\n--- stderr (tail) ---\n" + \
            self.stderr_path.read_text()[-4000:]

    def snapshot(self) -> None:
        if self.proc.poll() is None:
            self.known.update(descendants(self.proc.pid))

    def wait_for_first_batch(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        polls = 0
        while not self.batches:
            assert self.proc.poll() is None, f"ingest ended before a batch:\n{self.output()}"
            assert time.monotonic() < deadline, f"no batch after {timeout}s:\n{self.output()}"
            if polls % 25 == 0:
                self.snapshot()
            polls += 1
            time.sleep(0.02)
        self.snapshot()  # Spark's JVM and its Python daemon are up by now

    def kill(self) -> bool:
        """SIGKILL the whole run (its group and any group its children made); True if it was
        still running. Returns once every process of the run is gone."""
        self.snapshot()
        was_running = self.proc.poll() is None
        groups = {group for group, _ in self.known.values()} | {self.proc.pid}
        # PySpark's worker daemon puts itself in a process group of its own: kill that one too.
        for group in groups:
            if group in self.known or group == self.proc.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
        for pid in survivors(self.known):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.assert_nothing_left()
        return was_running

    def finish(self, timeout: float = 300.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def assert_nothing_left(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while survivors(self.known) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not survivors(self.known), f"processes left behind: {survivors(self.known)}"
        self._reader.join(timeout=10)
        self._stderr.close()


# --- the test --------------------------------------------------------------------------------


def last_replaced(lake: BronzeLake, name: str) -> tuple[int, int] | None:
    """The block range of the table's latest commit (recorded in its commit info)."""
    table = lake.table(name)
    if table is None:
        return None
    return replaced_range(table.history(1)[0])


def children_ahead_of_blocks(lake: BronzeLake) -> bool:
    """True if transactions and logs hold a batch whose blocks commit never happened."""
    tip = lake.stored_tip()
    ranges = [last_replaced(lake, name) for name in ("transactions", "logs")]
    return any(r is not None and r[0] > (-1 if tip is None else tip) for r in ranges)


def where_it_stopped(lake: BronzeLake) -> str:
    """Where a kill left the run, from the lake and Spark's checkpoint (for the story only)."""
    try:
        checkpoint = next(Path(lake.root, "_checkpoints").iterdir())
        query_id = json.loads((checkpoint / "metadata").read_text())["id"]

        def last(folder: str) -> int:
            return max((int(p.name) for p in (checkpoint / folder).iterdir() if p.name.isdigit()),
                       default=-1)

        planned, committed = last("offsets"), last("commits")
        in_lake = lake.committed_batch(f"chainlake-{query_id}")
    except (OSError, StopIteration, KeyError, ValueError):
        return f"tip {lake.stored_tip()}"
    if children_ahead_of_blocks(lake):
        point = f"inside batch {planned}: child tables written, blocks not"
    elif planned > committed and in_lake == planned:
        point = f"batch {planned} in the lake, not yet in Spark's commit log (replay to skip)"
    elif planned > committed:
        point = f"batch {planned} planned, nothing of it written"
    else:
        point = f"between batches (batch {committed} done)"
    return f"{point}; tip {lake.stored_tip()}"


def assert_table_equals_node(table: pa.Table, name: str, reference: dict[str, list[dict]]) -> None:
    keys = table.select(list(TABLES[name].key)).to_pylist()
    assert len(keys) == len({tuple(k.values()) for k in keys}), f"duplicate key in {name}"
    expected = reference[name]
    assert expected, f"reference has no {name}"
    rows = table.sort_by([(k, "ascending") for k in TABLES[name].key]).to_pylist()
    actual = project(rows, list(expected[0]))
    assert len(actual) == len(expected), f"{name}: {len(actual)} rows, node has {len(expected)}"
    for got, want in zip(actual, expected, strict=True):
        assert got == want, f"{name} row for block {want['block_number']} differs"


def spark_scratch_in(directory: Path) -> set[str]:
    return {name for name in os.listdir(directory) if SPARK_SCRATCH.match(name)}


def test_kill_9_at_random_moments_then_rerun_equals_the_node(devnet, tmp_path):
    end = devnet.head + 1
    # The runs' temporary directory is the test's own, so that what they leave there is known.
    run_tmp = tmp_path / "tmp"
    run_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(run_tmp)}
    system_scratch_before = spark_scratch_in(Path(tempfile.gettempdir()))
    lake = BronzeLake(str(tmp_path / "lake"))
    args = ["--rpc-url", devnet.url, "--lake", lake.root, "--start-block", "0",
            "--end-block", str(end), "--max-blocks-per-trigger", "5",
            "--chain-id", str(devnet.chain_id)]
    rng = random.Random(SEED)
    runs: list[IngestRun] = []
    story: list[str] = []  # what happened, for failure messages
    plan = ["random", "inside-batch", "random", "random", "final"]
    assert plan.count("random") == KILLS
    try:
        for attempt, kind in enumerate(plan):
            tip_before = lake.stored_tip()
            command = ((sys.executable, "-c", KILL_INSIDE_A_BATCH) if kind == "inside-batch"
                       else (str(CHAINLAKE),))
            run = IngestRun(args, tmp_path / f"run{attempt}.err", command, env)
            runs.append(run)
            if kind == "random":
                run.wait_for_first_batch()
                delay = rng.uniform(0, MAX_DELAY_S)
                time.sleep(delay)
                interrupted = run.kill()
                assert interrupted, f"run {attempt} finished before the kill:\n{run.output()}"
                story.append(f"run {attempt}: killed ({len(run.known)} processes) {delay:.2f}s after "
                             f"its first batch, batches {run.batches}: {where_it_stopped(lake)}")
            elif kind == "inside-batch":
                run.wait_for_first_batch()
                assert run.proc.wait(timeout=120) == -signal.SIGKILL, run.output()
                run.kill()  # what the group kill could not reach (Spark's worker daemon)
                story.append(f"run {attempt}: killed itself inside its second batch, batches "
                             f"{run.batches}: {where_it_stopped(lake)}")
                tip = lake.stored_tip()
                assert tip == run.batches[-1][2] - 1, "\n".join(story)
                assert last_replaced(lake, "blocks")[1] == tip + 1
                for name in ("transactions", "logs"):  # the next 5 blocks, already written
                    assert last_replaced(lake, name) == (tip + 1, min(tip + 6, end)), "\n".join(story)
            else:
                while run.proc.poll() is None:  # note its processes, to check they all end
                    run.snapshot()
                    time.sleep(0.25)
                code = run.finish()
                story.append(f"final run: exit {code}, batches {run.batches}")
                assert code == 0, run.output()
                run.assert_nothing_left()  # its Spark JVM and workers went with it
                if not run.batches:  # the last kill came after the last commit: nothing to do
                    assert "up to date" in run.output() and tip_before == end - 1, run.output()
                    break
            # Resumed, not restarted: the run's first micro-batch is the first block the lake
            # does not have (a batch the lake already committed is recognised and skipped).
            first_id, first_block, _ = run.batches[0]
            if tip_before is None:
                assert first_block == 0, "\n".join(story)
            else:
                assert first_block == tip_before + 1, "\n".join(story)
                assert first_id > 0, "\n".join(story)
    finally:
        for run in runs:
            if run.proc.poll() is None:
                run.kill()
    assert lake.stored_tip() == end - 1, "\n".join(story)
    assert max(b[2] for run in runs for b in run.batches) == end
    # The killed JVMs' scratch went nowhere but their own directories, and each later run
    # removed those of the runs before it: only the last run's (empty) directory is left.
    assert spark_scratch_in(Path(tempfile.gettempdir())) <= system_scratch_before
    assert spark_scratch_in(run_tmp) == set()
    root = run_tmp / scratch_root().name
    left = list(root.iterdir())
    assert len(left) == 1 and left[0].name.startswith(f"{runs[-1].proc.pid}-"), left
    assert [p.name for p in left[0].iterdir()] == [".lock"], list(left[0].iterdir())

    reference = reference_rows(devnet.url, 0, end)
    for name in NAMES:
        table = lake.read(name)
        if name == "blocks":  # no gap
            assert sorted(table.column("block_number").to_pylist()) == list(range(end)), \
                "\n".join(story)
        assert_table_equals_node(table, name, reference)
    print("\n".join(story))
