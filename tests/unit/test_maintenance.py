"""Lake maintenance: compaction of closed block ranges changes no row, leaves the open range alone,
races writers safely; vacuum, log checkpoints and Spark checkpoint clean-up (no Spark)."""

import logging
import os
import random
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from synthetic_chain import chain, rewrite_block, write

import ingestion.maintenance as maintenance
from ingestion.maintenance import (
    LiveFile,
    clean_spark_checkpoints,
    closed_before_of,
    maintain_lake,
    plan_compaction,
    scope_range,
)
from ingestion.ranges import BlockSpan
from ingestion.schemas import CORE_TABLES, TABLES

# A column per table the tests may change without breaking the chain's continuity.
MARK = {"blocks": "extra_data", "transactions": "input", "logs": "data"}
SHORT = {"retention_hours": 0, "enforce_retention_duration": False}


def write_in_chunks(lake, rows, end: int, step: int, start: int = 0) -> None:
    """Blocks ``[start, end)`` as one range replace per ``step`` blocks (a stream following a head)."""
    for a in range(start, end, step):
        b = min(a + step, end)
        write(lake, {k: [r for r in v if a <= r["block_number"] < b] for k, v in rows.items()}, a, b)


def snapshot(lake, version: dict[str, int] | None = None) -> dict[str, list[dict]]:
    out = {}
    for name in CORE_TABLES:
        if version is None:
            table = lake.read(name)
        else:
            table = DeltaTable(lake.table_uri(name), version=version[name]).to_pyarrow_table()
            table = table.select(TABLES[name].arrow_schema.names).cast(TABLES[name].arrow_schema)
        out[name] = table.sort_by([(k, "ascending") for k in TABLES[name].key]).to_pylist()
    return out


def expected_rows(rows) -> dict[str, list[dict]]:
    from synthetic_chain import rows_to_table

    return {name: rows_to_table(name, rows[name]).sort_by(
        [(k, "ascending") for k in TABLES[name].key]).to_pylist() for name in CORE_TABLES}


def files(lake, name: str) -> list[dict]:
    stats = pa.table(lake.table(name).get_add_actions(flatten=True))
    return stats.select(["path", "size_bytes", "min.block_number", "max.block_number"]).to_pylist()


def files_in(lake, name: str, start: int, end: int) -> set[str]:
    return {f["path"] for f in files(lake, name)
            if f["max.block_number"] >= start and f["min.block_number"] < end}


def data_files_on_disk(lake, name: str) -> int:
    return len(list(Path(lake.table_uri(name)).glob("*.parquet")))


@pytest.fixture()
def streamed(lake):
    """300 blocks written 10 at a time (30 commits per table); partitions of 100: [200, 300)
    is the open tip partition."""
    rows = chain(300)
    write_in_chunks(lake, rows, 300, 10)
    return rows


def test_compaction_changes_no_row_and_leaves_the_open_range_alone(lake, streamed):
    before = snapshot(lake)
    open_files = {name: files_in(lake, name, 200, 300) for name in CORE_TABLES}
    assert closed_before_of(lake, 100) == 200
    report = maintain_lake(lake, closed_before=200, partition_size=100, **SHORT)

    assert snapshot(lake) == before == expected_rows(streamed)
    for name in CORE_TABLES:
        t = report.tables[name]
        assert (t.files_before, t.files_after) == (30, 12)  # 2 compacted ranges + 10 open files
        assert t.units_compacted == 2 and t.files_compacted == 20 and t.units_skipped == 0
        assert files_in(lake, name, 200, 300) == open_files[name]  # the tip: untouched
        for start in (0, 100):  # each closed partition: one file, sorted, tight statistics
            (f,) = [f for f in files(lake, name) if start <= f["min.block_number"] < start + 100]
            assert (f["min.block_number"], f["max.block_number"]) == (start, start + 99)
            numbers = pq.read_table(Path(lake.table_uri(name)) / f["path"]).column(
                "block_number").to_pylist()
            assert numbers == sorted(numbers) and len(set(numbers)) == 100
        assert t.files_vacuumed == 20 and data_files_on_disk(lake, name) == 12
        dt = lake.table(name)
        assert t.checkpoint_version == dt.version()
        assert (Path(lake.table_uri(name)) / "_delta_log"
                / f"{dt.version():020d}.checkpoint.parquet").exists()
    # Idempotent: nothing left to do.
    again = maintain_lake(lake, closed_before=200, partition_size=100, **SHORT)
    assert again.commits == 0 and again.files_after == again.files_before == 36
    assert snapshot(lake) == before


def test_after_maintenance_the_lake_validates_and_range_replaces_still_work(lake, streamed):
    from ingestion.continuity import validate_range

    maintain_lake(lake, closed_before=200, partition_size=100, **SHORT)
    assert validate_range(lake, 0, 300).success
    before = snapshot(lake)
    rewrite_block(lake, "logs", 150, lambda rows: [dict(r, data="0xfeed") for r in rows])
    after = snapshot(lake)
    changed = [a for a, b in zip(after["logs"], before["logs"], strict=True) if a != b]
    assert {r["block_number"] for r in changed} == {150}
    assert all(r["data"] == "0xfeed" for r in changed)
    assert after["blocks"] == before["blocks"] and validate_range(lake, 0, 300).success


def test_a_recent_version_stays_readable_with_the_default_retention(lake, streamed):
    versions = {name: lake.table(name).version() for name in CORE_TABLES}
    before = snapshot(lake)
    report = maintain_lake(lake, closed_before=200, partition_size=100)  # 168 h
    assert report.files_after < report.files_before
    assert all(t.files_vacuumed == 0 for t in report.tables.values())
    assert snapshot(lake, versions) == before  # time travel to before the compaction


def test_a_retention_below_a_week_must_be_asked_for(lake, streamed):
    with pytest.raises(ValueError, match="enforce_retention_duration"):
        maintain_lake(lake, closed_before=200, retention_hours=24)


def test_a_range_a_writer_changes_during_compaction_is_read_again(lake, streamed, monkeypatch):
    """The lost update a blind retry would make: compaction reads [0, 100), a writer replaces
    block 42, compaction commits. Its commit must fail and the range be read again."""
    calls = []

    class RacingWriter(maintenance.TableFileWriter):
        def close(self):
            calls.append(self.num_records)
            if len(calls) == 1:  # the writer commits between compaction's read and its commit
                rewrite_block(lake, "logs", 42,
                              lambda rows: [dict(r, data="0xbeef") for r in rows])
            return super().close()

    monkeypatch.setattr(maintenance, "TableFileWriter", RacingWriter)
    monkeypatch.setattr(maintenance, "TABLES", {"logs": TABLES["logs"]})
    report = maintain_lake(lake, closed_before=100, partition_size=100, **SHORT)
    assert len(calls) == 2 and calls[0] == calls[1] > 0  # conflict: the unit read again
    assert report.tables["logs"].units_compacted == 1
    logs = snapshot(lake)["logs"]
    assert {r["data"] for r in logs if r["block_number"] == 42} == {"0xbeef"}  # not reverted
    assert all(r["data"] == "0x" for r in logs if r["block_number"] != 42)
    assert len(logs) == 600 and len(files_in(lake, "logs", 0, 100)) == 1


def test_a_concurrent_writer_during_maintenance_leaves_the_lake_exact(lake, streamed, caplog):
    """A writer keeps replacing closed ranges with new values while maintenance compacts them;
    afterwards the lake is exactly the writer's last word for every block."""
    caplog.set_level(logging.INFO, logger="chainlake")
    rows = {name: [dict(r) for r in streamed[name]] for name in CORE_TABLES}
    stop, failures = threading.Event(), []
    rng = random.Random(7)

    def writer() -> None:
        i = 0
        try:
            while not stop.is_set():
                a = rng.randrange(0, 197)
                b = a + rng.randint(1, 3)
                for name in CORE_TABLES:
                    for r in rows[name]:
                        if a <= r["block_number"] < b:
                            r[MARK[name]] = f"0x{i:x}"
                write(lake, {k: [r for r in v if a <= r["block_number"] < b]
                             for k, v in rows.items()}, a, b)
                i += 1
        except Exception as err:  # noqa: BLE001 - reported by the test
            failures.append(err)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        compacted = 0
        for _ in range(4):
            report = maintain_lake(lake, closed_before=200, partition_size=50)
            compacted += sum(t.units_compacted for t in report.tables.values())
    finally:
        stop.set()
        thread.join(timeout=120)
    assert not thread.is_alive() and not failures, failures
    assert compacted > 0
    assert snapshot(lake) == expected_rows(rows)
    races = [r for r in caplog.records if "lost a commit race" in r.getMessage()
             or "commit conflict" in r.getMessage()]
    print(f"{compacted} ranges compacted, {len(races)} commit races")


def test_plan_merges_only_whole_clusters_of_closed_aligned_ranges():
    kb = 1000
    f = [LiveFile(f"f{i}", size, 10, lo, hi) for i, (size, lo, hi) in enumerate([
        (kb, 0, 9), (kb, 10, 19), (kb, 20, 29),  # range [0, 100): three small files
        (kb, 95, 105),  # crosses 100: joins [0, 100) and [100, 200) into one window
        (kb, 110, 119),
        (kb, 200, 209), (kb, 205, 215),  # overlapping files: one cluster
        (kb, 300, 309), (kb, 310, 319),  # the open range (closed_before=300)
    ])]
    units = plan_compaction(f, closed_before=300, partition_size=100, target_file_bytes=10 * kb)
    assert [(u.start, u.end, u.paths) for u in units] == [
        (0, 120, ("f0", "f1", "f2", "f3", "f4")),
        (200, 216, ("f5", "f6")),
    ]
    # The target bounds a unit: 3 KB allows three 1 KB files per unit, in block order.
    units = plan_compaction(f[:5], closed_before=300, partition_size=100, target_file_bytes=3 * kb)
    assert [(u.start, u.end, u.paths) for u in units] == [(0, 30, ("f0", "f1", "f2")),
                                                          (95, 120, ("f3", "f4"))]
    # Big files are left as they are; a window reaching closed_before is open.
    big = [LiveFile("a", 9 * kb, 10, 0, 9), LiveFile("b", 9 * kb, 10, 10, 19)]
    assert plan_compaction(big, closed_before=300, partition_size=100, target_file_bytes=10 * kb) == []
    assert plan_compaction(f[:3], closed_before=29, partition_size=100, target_file_bytes=10 * kb) == []


def test_scope_ranges():
    assert scope_range(f"partition-{BlockSpan(100, 200).key}") == (100, 200)
    assert scope_range(f"partition-{BlockSpan(0, 100).key}", first_block=40) == (40, 100)
    assert scope_range("ingest-000000000005-000000000050") == (5, 50)
    assert scope_range("ingest-000000000005-head") is None
    assert scope_range("something-else") is None


def test_spark_checkpoints_of_complete_scopes_are_removed_and_the_others_kept(lake):
    write(lake, chain(250), 0, 250)
    root = Path(lake.checkpoint_uri("x")).parent

    def scope(name: str, age_hours: float = 2.0) -> str:
        path = root / name / "offsets"
        path.mkdir(parents=True)
        (path / "0").write_text("v1\n{}\n")
        stamp = time.time() - age_hours * 3600
        for p in (path / "0", path, path.parent):
            os.utime(p, (stamp, stamp))
        return name

    complete = [scope(f"partition-{BlockSpan(0, 100).key}"), scope(f"partition-{BlockSpan(100, 200).key}"),
                scope("ingest-000000000000-000000000250"), scope("ingest-000000000010-000000000020"),
                scope("partition-000000000000-000000000099.unreadable-20200101T000000")]
    kept = [scope(f"partition-{BlockSpan(200, 300).key}"),  # the open tip: blocks 250.. missing
            scope("ingest-000000000000-head"), scope("ingest-000000000200-000000000400"),
            scope(f"partition-{BlockSpan(100, 200).key}.unreadable-"
                  f"{time.strftime('%Y%m%dT%H%M%S')}"),  # set aside just now
            scope("ingest-000000000000-000000000100.unreadable-bad-name", age_hours=0),
            scope("ingest-000000000000-000000000200", age_hours=0.1),  # a query may be running
            scope("not-a-scope")]
    removed, left = clean_spark_checkpoints(lake, retention_hours=168, idle_hours=1)
    assert sorted(removed) == sorted(complete)
    assert sorted(left) == sorted(kept)
    assert sorted(p.name for p in root.iterdir()) == sorted(kept)


def test_maintain_lake_reports_the_checkpoints_it_removed(lake, streamed):
    done = Path(lake.checkpoint_uri(f"partition-{BlockSpan(0, 100).key}"))
    tip = Path(lake.checkpoint_uri(f"partition-{BlockSpan(300, 400).key}"))
    for path in (done, tip):
        path.mkdir(parents=True)
        (path / "metadata").write_text("{}")
    report = maintain_lake(lake, closed_before=200, partition_size=100, checkpoint_idle_hours=0,
                           **SHORT)
    assert report.checkpoints_removed == [done.name] and report.checkpoints_kept == [tip.name]
    assert not done.exists() and tip.exists()
    assert "removed 1, kept 1" in report.render()


def test_the_cli_prints_the_report(lake, streamed, capsys):
    from ingestion.cli import main

    assert main(["maintain", "--lake", lake.root, "--partition-size", "100",
                 "--retention-hours", "0"]) == 2  # below a week: refused without the flag
    assert "--allow-short-retention" in capsys.readouterr().err
    assert main(["maintain", "--lake", lake.root, "--partition-size", "100",
                 "--retention-hours", "0", "--allow-short-retention"]) == 0
    out = capsys.readouterr().out
    assert "maintenance of blocks below 200" in out  # the tip 299 is in [200, 300)
    assert "blocks: live files 30 -> 12" in out and "live files 90 -> 36" in out
    assert main(["maintain", "--lake", lake.root + "-missing"]) == 2
