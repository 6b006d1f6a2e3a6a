"""Creating the bronze tables: once, race-free, with the chain's identity; refusing tables that
cannot be used (another schema, an unreadable Delta log, another chain)."""

import json
import multiprocessing
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import CommitProperties, DeltaTable, write_deltalake
from synthetic_chain import chain, rows_to_table, write

from ingestion.identity import ChainIdentity
from ingestion.schemas import TABLES
from ingestion.sink import BronzeLake, LakeError, commits_since, range_dataset

IDENTITY = ChainIdentity(31337, 0, "0x" + "ab" * 32)


def test_prepare_creates_every_table_empty_with_the_identity(lake):
    lake.prepare(IDENTITY)
    for name in TABLES:
        dt = lake.table(name)
        assert dt.version() == 0
        assert dt.schema().to_arrow() is not None and len(lake.read(name)) == 0
    assert lake.identity() == IDENTITY
    lake.prepare(IDENTITY)  # idempotent: no new commit
    assert {lake.table(n).version() for n in TABLES} == {0}


def test_an_identity_is_recorded_on_tables_that_have_none(lake):
    write(lake, chain(3), 0, 3)  # tables made without an identity (as earlier versions did)
    assert lake.identity() is None
    lake.prepare(IDENTITY)
    assert lake.identity() == IDENTITY
    assert len(lake.read("blocks")) == 3


def test_tables_that_disagree_about_their_chain_are_refused(lake):
    lake.prepare(IDENTITY)
    other = ChainIdentity(1, 0, "0x" + "cd" * 32)
    lake.table("logs").alter.set_table_properties(other.properties(), raise_if_not_exists=False)
    with pytest.raises(LakeError, match="disagree about their chain"):
        lake.identity()


def _table_id(commit: Path) -> str:
    for line in commit.read_text().splitlines():
        if '"metaData"' in line:
            return json.loads(line)["metaData"]["id"]
    raise AssertionError(f"{commit} has no metaData")


def _race(root: str, start_at: float, worker: int) -> None:
    lake = BronzeLake(root)
    rows = chain(10, txs=2)
    while time.time() < start_at:
        pass
    if worker % 2:
        lake.prepare(IDENTITY)
    write(lake, rows, 0, 10)  # overlapping range-replaces of the same blocks


@pytest.mark.parametrize("round_", range(4))
def test_concurrent_writers_on_a_fresh_lake_never_duplicate_a_row(tmp_path, round_):
    root = str(tmp_path / "lake")
    start_at = time.time() + 1.5
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_race, args=(root, start_at, i)) for i in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    lake = BronzeLake(root)
    for name in TABLES:
        table = lake.read(name)
        keys = table.group_by(list(TABLES[name].key)).aggregate([([], "count_all")])
        assert pc.max(keys.column("count_all")).as_py() in (1, None), f"{name}: duplicate key"
        assert len(table) == {"blocks": 10, "transactions": 20, "logs": 20, "traces": 0}[name]
        # One creation: version 0 alone holds the table's metadata.
        log_dir = Path(lake.table_uri(name)) / "_delta_log"
        later = [p for p in log_dir.glob("*.json") if p.stem != f"{0:020d}"]
        # A later metaData may only record the chain identity on the same table (a writer that
        # created it before another's prepare); never a second creation (a new table id).
        first_id = _table_id(log_dir / f"{0:020d}.json")
        for p in later:
            if '"metaData"' in p.read_text():
                assert '"operation":"SET TBLPROPERTIES"' in p.read_text(), p.read_text()[:300]
                assert _table_id(p) == first_id
    assert not any((Path(root) / "_staging").iterdir())


def test_a_table_of_another_schema_is_named_with_its_columns(lake):
    lake.prepare(IDENTITY)
    schema = TABLES["logs"].arrow_schema
    odd = pa.schema([f.with_type(pa.string()) if f.name == "log_index" else f
                     for f in schema if f.name != "address"])
    uri = lake.table_uri("logs")
    shutil.rmtree(uri)
    write_deltalake(uri, odd.empty_table())
    with pytest.raises(LakeError) as err:
        lake.prepare(IDENTITY)
    message = str(err.value)
    assert uri in message and "missing columns" in message and "mistyped columns" in message
    assert "missing columns address;" in message
    assert "log_index (string, expected long)" in message


def test_a_truncated_delta_log_is_named_with_its_version(lake):
    write(lake, chain(3), 0, 3)
    write(lake, chain(3, first=3), 3, 6)
    uri = lake.table_uri("blocks")
    commit = Path(uri) / "_delta_log" / f"{1:020d}.json"
    commit.write_text(commit.read_text()[: len(commit.read_text()) // 2])
    with pytest.raises(LakeError) as err:
        lake.read("blocks")
    assert f"{uri}: cannot read the Delta log at version 1" in str(err.value)


def test_a_table_is_never_left_to_delta_rs_to_create(lake):
    rows = rows_to_table("blocks", chain(2, txs=0)["blocks"])
    lake.replace_range("blocks", rows, 0, 2)
    dt = DeltaTable(lake.table_uri("blocks"))
    assert dt.version() == 1  # version 0: the empty table; version 1: the rows
    assert [h["operation"] for h in reversed(dt.history())] == ["CREATE TABLE", "WRITE"]


def _commit_with(uri: str, value: int) -> None:
    write_deltalake(uri, pa.table({"a": [value]}), mode="append",
                    commit_properties=CommitProperties(custom_metadata={"value": str(value)}))


def test_commits_since_reads_one_consistent_snapshot_of_the_log(tmp_path, monkeypatch):
    uri = str(tmp_path / "t")
    for value in range(4):  # versions 0..3
        _commit_with(uri, value)
    version, commits = commits_since(uri, 1)
    assert version == 3
    assert [(c["version"], c["value"]) for c in commits] == [(2, "2"), (3, "3")]
    assert commits_since(uri, 3) == (3, [])
    assert commits_since(uri, 0, max_commits=2) is None  # too many: the caller falls back

    # A writer commits between loading the table and reading its history: delta-rs then
    # numbers the newest entries from the loaded version down (version 4's info labelled 3).
    stale = DeltaTable(uri)
    _commit_with(uri, 4)
    assert [(c["version"], c["value"]) for c in stale.history(1)][0] == (3, "4")

    real_history, raced = DeltaTable.history, []

    def history_with_a_commit_racing_the_first(self, limit=None):
        if not raced:
            raced.append(True)
            _commit_with(uri, 5)
        return real_history(self, limit)

    monkeypatch.setattr(DeltaTable, "history", history_with_a_commit_racing_the_first)
    version, commits = commits_since(uri, 3)
    assert raced and version == 5
    assert [(c["version"], c["value"]) for c in commits] == [(4, "4"), (5, "5")]


def test_range_reads_open_only_the_files_that_may_hold_the_range(lake):
    # A table following a head has a file per micro-batch: reads and link checks must not pay
    # for every file (delta-rs makes a fragment per live file unless pruned by statistics).
    rows = chain(40)
    for start in range(0, 40, 4):
        lake.replace_range("blocks", rows_to_table("blocks", rows["blocks"][start:start + 4]),
                           start, start + 4)
    dt = lake.table("blocks")
    assert len(dt.file_uris()) == 10
    assert len(range_dataset(dt, 10, 14).files) == 2  # [8, 12) and [12, 16)
    assert len(range_dataset(dt, 100, 200).files) == 0
    assert sorted(lake.read_range("blocks", 10, 14, ["block_number"]).column(0).to_pylist()) \
        == [10, 11, 12, 13]
    assert sorted(lake.stored_links([3, 4, 39, 40])) == [3, 4, 39]
