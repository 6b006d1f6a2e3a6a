"""ingestion.sink on real devnet blocks: every write replaces exactly the block range it covers.

No Spark here: bundles are built with the same transform the source uses, from blocks fetched
over JSON-RPC once per module, and written with ``BronzeLake`` (delta-rs). What is checked:

- a range replace is idempotent, and replacing a sub-range changes exactly that sub-range;
- it rewrites only the Delta files whose block range overlaps (read from the ``_delta_log``);
- concurrent writers (separate processes) of disjoint ranges both succeed, and writers of the
  same range never leave a duplicate; a ``CommitFailedError`` is retried inside the sink;
- ``stored_tip``, ``committed_batch``, the range guard and the cast to the declared schema.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake.exceptions import CommitFailedError

from ingestion import sink
from ingestion.rpc import RpcClient
from ingestion.schemas import TABLES
from ingestion.sink import BronzeLake
from ingestion.transform import bundle_batch, split_bundle

pytestmark = pytest.mark.devnet

NAMES = ("blocks", "transactions", "logs")


@pytest.fixture(scope="module")
def chain_bundle(devnet) -> pa.Table:
    """The bundle (one row per block, children nested) of blocks ``[0, devnet.head]``."""
    assert devnet.head >= 30, "these tests need at least 31 blocks"
    with RpcClient(devnet.url) as client:
        raw = client.fetch_raw_blocks(0, devnet.head + 1)
    bundle = pa.Table.from_batches([bundle_batch(devnet.chain_id, raw)])
    assert bundle.column("block_number").to_pylist() == list(range(devnet.head + 1))
    return bundle


@pytest.fixture(scope="module")
def expected(chain_bundle) -> dict[str, pa.Table]:
    """What the three tables must hold after the whole bundle was written, sorted by key."""
    return {name: sort(table, name) for name, table in split_bundle(chain_bundle).items()}


def blocks_of(bundle: pa.Table, start: int, end: int) -> pa.Table:
    """The bundle rows of blocks ``[start, end)`` (the bundle starts at block 0)."""
    return bundle.slice(start, end - start)


def sort(table: pa.Table, name: str) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in TABLES[name].key]).combine_chunks()


def in_range(table: pa.Table, start: int, end: int) -> pa.Table:
    numbers = table.column("block_number")
    return table.filter(pc.and_(pc.greater_equal(numbers, start), pc.less(numbers, end)))


def outside(table: pa.Table, start: int, end: int) -> pa.Table:
    numbers = table.column("block_number")
    return table.filter(pc.or_(pc.less(numbers, start), pc.greater_equal(numbers, end)))


def with_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """``table`` with column ``name`` replaced, keeping the field (nullability) when types match."""
    i = table.schema.get_field_index(name)
    field = table.schema.field(i)
    return table.set_column(i, field if field.type == values.type else name, values)


def assert_same(actual: pa.Table, wanted: pa.Table, label: str) -> None:
    """Equal tables, or a short message naming the first differing row."""
    if actual.equals(wanted):
        return
    assert actual.schema == wanted.schema, f"{label}: schema {actual.schema} != {wanted.schema}"
    assert actual.num_rows == wanted.num_rows, f"{label}: {actual.num_rows} rows, not {wanted.num_rows}"
    for i, (got, want) in enumerate(zip(actual.to_pylist(), wanted.to_pylist(), strict=True)):
        assert got == want, f"{label}: row {i} differs"
    raise AssertionError(f"{label}: tables differ")


def live_files(lake: BronzeLake, name: str) -> set[str]:
    """Paths of the data files in the table's current version."""
    return set(pa.table(lake.table(name).get_add_actions()).column("path").to_pylist())


def assert_unique_keys(table: pa.Table, name: str) -> None:
    keys = table.select(list(TABLES[name].key)).to_pylist()
    assert len(keys) == len({tuple(k.values()) for k in keys}), f"duplicate key in {name}"


def assert_lake_holds(lake: BronzeLake, expected: dict[str, pa.Table]) -> None:
    for name in NAMES:
        table = lake.read(name)
        assert_unique_keys(table, name)
        assert_same(sort(table, name), expected[name], name)


def log_actions(table_uri: str) -> dict[int, dict[str, set[str]]]:
    """Per Delta version, the data files its commit added and removed (from ``_delta_log``)."""
    out: dict[int, dict[str, set[str]]] = {}
    for commit in sorted(Path(table_uri, "_delta_log").glob("*.json")):
        actions: dict[str, set[str]] = {"add": set(), "remove": set()}
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            for kind in ("add", "remove"):
                if kind in action:
                    actions[kind].add(action[kind]["path"])
        out[int(commit.stem)] = actions
    return out


# --- range replace ---------------------------------------------------------------------------


def test_writing_the_same_range_twice_is_idempotent(lake, chain_bundle, expected):
    end = chain_bundle.num_rows
    first = lake.write_bundle(chain_bundle, 0, end)
    assert {name: w.rows for name, w in first.items()} == {
        name: expected[name].num_rows for name in NAMES}
    assert_lake_holds(lake, expected)
    second = lake.write_bundle(chain_bundle, 0, end)
    assert_lake_holds(lake, expected)
    for name in NAMES:  # a new commit that replaced the rows, not a no-op that hid a duplicate
        assert second[name].version == first[name].version + 1


def test_rewriting_a_sub_range_replaces_exactly_that_sub_range(lake, chain_bundle, expected):
    end = chain_bundle.num_rows
    lake.write_bundle(chain_bundle, 0, end)
    a, b = 10, 20
    original = {name: in_range(expected[name], a, b) for name in NAMES}
    assert all(original[name].num_rows for name in NAMES), "the sub-range needs txs and logs"
    # Other content for [a, b): blocks with another extra_data, one transaction per block, no logs
    # (what a reorg repair may look like).
    blocks = original["blocks"]
    blocks = with_column(blocks, "extra_data", pa.array(["0xdead"] * blocks.num_rows, pa.string()))
    txs = original["transactions"]
    txs = txs.filter(pc.equal(txs.column("transaction_index"), 0))
    replacement = {"blocks": blocks, "transactions": txs, "logs": TABLES["logs"].arrow_schema.empty_table()}
    for name in ("transactions", "logs", "blocks"):
        result = lake.replace_range(name, replacement[name], a, b)
        assert result.rows == replacement[name].num_rows
    for name in NAMES:
        table = lake.read(name)
        assert_unique_keys(table, name)
        assert_same(sort(in_range(table, a, b), name), sort(replacement[name], name), name)
        assert_same(sort(outside(table, a, b), name), outside(expected[name], a, b), name)
    assert lake.read("logs").num_rows == expected["logs"].num_rows - original["logs"].num_rows
    # Writing the node's blocks again restores the original content.
    lake.write_bundle(blocks_of(chain_bundle, a, b), a, b)
    assert_lake_holds(lake, expected)


def test_a_range_replace_rewrites_only_the_files_of_that_range(lake, chain_bundle):
    ranges = [(0, 10), (10, 20), (20, 30)]
    for start, end in ranges:
        lake.write_bundle(blocks_of(chain_bundle, start, end), start, end)
    lake.write_bundle(blocks_of(chain_bundle, 10, 20), 10, 20)
    for name in NAMES:
        uri = lake.table_uri(name)
        log = log_actions(uri)
        # Version 0 creates the empty table; then one commit per write.
        assert sorted(log) == [0, 1, 2, 3, 4], f"{name}: one commit per write"
        assert not log[0]["add"] and not log[0]["remove"]
        added = {v: log[v]["add"] for v in (1, 2, 3)}
        assert all(len(files) == 1 for files in added.values()), f"{name}: one file per range"
        # Version 4 removed exactly the file of [10, 20) and added its replacement ...
        assert log[4]["remove"] == added[2], f"{name}: removed files of other ranges"
        assert len(log[4]["add"]) == 1
        # ... the files of [0, 10) and [20, 30) are untouched and still live.
        assert live_files(lake, name) == added[1] | added[3] | log[4]["add"]
        (added_file,) = log[4]["add"]
        rows = lake.table(name).to_pyarrow_dataset().to_table(
            filter=pc.field("block_number") >= 10)  # prunes by the file statistics
        assert in_range(rows, 10, 20).num_rows == in_range(lake.read(name), 10, 20).num_rows
        assert added_file in live_files(lake, name)


def test_a_replace_across_file_boundaries_keeps_the_rest_of_those_files(lake, chain_bundle,
                                                                         expected):
    for start, end in [(0, 10), (10, 20), (20, 30)]:
        lake.write_bundle(blocks_of(chain_bundle, start, end), start, end)
    before = {name: log_actions(lake.table_uri(name)) for name in NAMES}
    lake.write_bundle(blocks_of(chain_bundle, 15, 25), 15, 25)
    for name in NAMES:
        log = log_actions(lake.table_uri(name))
        # The two overlapping files go (their rows outside [15, 25) are copied into the new
        # file); the file of [0, 10) stays.
        assert log[4]["remove"] == before[name][2]["add"] | before[name][3]["add"], name
        assert before[name][1]["add"] <= live_files(lake, name)
        table = lake.read(name)
        assert_unique_keys(table, name)
        assert_same(sort(table, name), in_range(expected[name], 0, 30), name)


# --- concurrent writers ----------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import json, logging, sys
    import pyarrow as pa
    from ingestion import sink
    from ingestion.sink import BronzeLake

    root, bundle_path, ranges = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    conflicts = []

    class Count(logging.Handler):
        def emit(self, record):
            conflicts.append(record.getMessage())

    sink.log.addHandler(Count())
    sink.log.setLevel(logging.INFO)
    bundle = pa.ipc.open_file(bundle_path).read_all()
    lake = BronzeLake(root)
    print("ready", flush=True)
    sys.stdin.readline()  # "go": every writer starts its first commit at the same moment
    for start, end in ranges:
        lake.write_bundle(bundle.slice(start, end - start), start, end)
    print(json.dumps({"conflicts": len(conflicts)}), flush=True)
""")


def run_writers(tmp_path: Path, lake: BronzeLake, bundle: pa.Table,
                ranges_per_writer: list[list[tuple[int, int]]]) -> list[dict]:
    """Run one writer process per list of ranges, all starting together; their reports."""
    bundle_path = tmp_path / "bundle.arrow"
    with pa.ipc.new_file(bundle_path, bundle.schema) as out:
        out.write_table(bundle)
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, lake.root, str(bundle_path),
                          json.dumps(ranges)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for ranges in ranges_per_writer
    ]
    reports = []
    try:
        for proc in procs:  # wait until each has imported pyarrow and deltalake
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-3000:]
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"writer failed:\n{err[-3000:]}"
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return reports


def test_concurrent_writers_of_disjoint_ranges_both_succeed(lake, tmp_path, chain_bundle,
                                                            expected):
    # Two processes, 8 range writes each (24 commits each, to the same three tables),
    # interleaved ranges so that both keep committing to every table at the same time.
    n = chain_bundle.num_rows
    cuts = list(range(0, n, 3)) + [n]
    ranges = list(zip(cuts, cuts[1:], strict=False))
    assert len(ranges) >= 16
    writers = [ranges[0::2], ranges[1::2]]
    reports = run_writers(tmp_path, lake, chain_bundle, writers)
    assert len(reports) == 2
    assert_lake_holds(lake, expected)  # every block exactly once, every row as the node's
    assert lake.stored_tip() == n - 1
    for name in NAMES:  # the creation, then one commit per range write (retries add none)
        assert lake.table(name).version() == len(ranges)


def test_concurrent_writers_of_the_same_range_never_duplicate(lake, tmp_path, chain_bundle,
                                                             expected):
    n = chain_bundle.num_rows
    lake.write_bundle(chain_bundle, 0, n)
    # Both processes replace [10, 20) eight times; the conflicts are real (delta-rs rejects the
    # commit whose read is stale) and retried by the sink.
    reports = run_writers(tmp_path, lake, chain_bundle, [[(10, 20)] * 8, [(10, 20)] * 8])
    assert_lake_holds(lake, expected)
    for name in NAMES:  # the creation, the first write, then 16 replaces
        assert lake.table(name).version() == 17
    print("commit conflicts retried:", [r["conflicts"] for r in reports])


def test_concurrent_creators_of_a_new_table_both_succeed(lake, tmp_path, chain_bundle,
                                                         expected):
    n = chain_bundle.num_rows
    half = n // 2
    run_writers(tmp_path, lake, chain_bundle, [[(0, half)], [(half, n)]])
    assert_lake_holds(lake, expected)


def test_a_commit_conflict_is_retried_inside_the_sink(lake, chain_bundle, expected,
                                                      monkeypatch, caplog):
    real = sink.DeltaTable.create_write_transaction
    calls = []

    def conflicting(self, *args, **kwargs):
        calls.append(self.table_uri)
        if len(calls) <= 2:  # the first two attempts lose the race to another writer
            raise CommitFailedError("Commit failed: a concurrent transaction deleted data")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(sink.DeltaTable, "create_write_transaction", conflicting)
    monkeypatch.setattr(sink.time, "sleep", lambda _: None)
    with caplog.at_level(logging.INFO, logger="chainlake.sink"):
        lake.write_bundle(chain_bundle, 0, chain_bundle.num_rows)
    assert len(calls) == 5  # transactions three times, then logs and blocks once
    assert sum("commit conflict" in r.getMessage() for r in caplog.records) == 2
    assert_lake_holds(lake, expected)


def test_a_commit_that_keeps_conflicting_fails_loudly(lake, chain_bundle, monkeypatch):
    def always(self, *args, **kwargs):
        raise CommitFailedError("Commit failed: a concurrent transaction deleted data")

    monkeypatch.setattr(sink.DeltaTable, "create_write_transaction", always)
    monkeypatch.setattr(sink.time, "sleep", lambda _: None)
    with pytest.raises(CommitFailedError):
        lake.write_bundle(blocks_of(chain_bundle, 0, 5), 0, 5)


# --- tip, app transactions, guards, types ----------------------------------------------------


def test_stored_tip_follows_the_blocks_table(lake, chain_bundle):
    assert lake.stored_tip() is None
    lake.write_bundle(blocks_of(chain_bundle, 0, 10), 0, 10)
    assert lake.stored_tip() == 9
    lake.write_bundle(blocks_of(chain_bundle, 20, 30), 20, 30)  # a gap does not matter to the tip
    assert lake.stored_tip() == 29
    lake.write_bundle(blocks_of(chain_bundle, 5, 8), 5, 8)  # replacing below the tip keeps it
    assert lake.stored_tip() == 29
    # Replacing [25, 30) with fewer blocks (a shorter chain after a reorg) lowers it.
    lake.write_bundle(blocks_of(chain_bundle, 25, 28), 25, 30)
    assert lake.stored_tip() == 27
    assert sorted(lake.read("blocks").column("block_number").to_pylist()) == [
        *range(0, 10), *range(20, 28)]


def test_committed_batch_records_the_app_transaction_on_blocks(lake, chain_bundle):
    assert lake.committed_batch("query-a") is None
    lake.write_bundle(blocks_of(chain_bundle, 0, 5), 0, 5, app_transaction=("query-a", 0))
    assert lake.committed_batch("query-a") == 0
    assert lake.committed_batch("query-b") is None
    lake.write_bundle(blocks_of(chain_bundle, 5, 10), 5, 10, app_transaction=("query-a", 1))
    lake.write_bundle(blocks_of(chain_bundle, 0, 3), 0, 3, app_transaction=("query-b", 7))
    lake.write_bundle(blocks_of(chain_bundle, 10, 12), 10, 12)  # no app transaction: kept as is
    assert lake.committed_batch("query-a") == 1
    assert lake.committed_batch("query-b") == 7
    # Recorded with the last commit of a batch only (blocks): children say nothing.
    for name in ("transactions", "logs"):
        assert lake.table(name).transaction_version("query-a") is None


def test_rows_outside_the_replaced_range_are_refused(lake, chain_bundle, expected):
    lake.write_bundle(blocks_of(chain_bundle, 0, 20), 0, 20)
    rows = in_range(expected["transactions"], 8, 12)
    for start, end in [(9, 12), (8, 11), (0, 5)]:
        with pytest.raises(ValueError, match=r"rows outside the range"):
            lake.replace_range("transactions", rows, start, end)
    with pytest.raises(ValueError, match="empty block range"):
        lake.replace_range("blocks", expected["blocks"].slice(0, 0), 5, 5)
    with pytest.raises(ValueError, match="unknown bronze table"):
        lake.replace_range("receipts", rows, 8, 12)
    for name in NAMES:  # nothing was committed after the creation and the first write
        assert lake.table(name).version() == 1
    assert_same(sort(lake.read("transactions"), "transactions"),
                in_range(expected["transactions"], 0, 20), "transactions")


def test_wrong_types_are_cast_to_the_declared_schema(lake, expected):
    declared = TABLES["blocks"].arrow_schema
    rows = in_range(expected["blocks"], 0, 5)
    # Narrower and textual types, columns in another order, plus a column the table lacks.
    loose = with_column(rows, "block_number", rows.column("block_number").cast(pa.int32()))
    loose = with_column(loose, "gas_used", loose.column("gas_used").cast(pa.string()))
    loose = with_column(loose, "chain_id", loose.column("chain_id").cast(pa.int16()))
    loose = loose.select(list(reversed(loose.column_names))).append_column(
        "not_a_column", pa.array(["x"] * loose.num_rows))
    lake.replace_range("blocks", loose, 0, 5)
    stored = lake.table("blocks").to_pyarrow_table()
    assert stored.schema.names == declared.names
    assert [f.type for f in stored.schema] == [f.type for f in declared]
    assert_same(sort(lake.read("blocks"), "blocks"), rows, "blocks")
    # Block numbers given as text are cast before the range check, too.
    text = with_column(rows, "block_number", rows.column("block_number").cast(pa.string()))
    lake.replace_range("blocks", text, 0, 5)
    assert_same(sort(lake.read("blocks"), "blocks"), rows, "blocks")


def test_values_that_do_not_fit_are_an_error_not_silently_changed(lake, expected):
    rows = in_range(expected["blocks"], 0, 3)
    fractional = with_column(rows, "gas_used", pa.array([3.7] * rows.num_rows, pa.float64()))
    with pytest.raises(pa.ArrowInvalid):
        lake.replace_range("blocks", fractional, 0, 3)
    text = with_column(rows, "gas_limit", pa.array(["lots"] * rows.num_rows, pa.string()))
    with pytest.raises(pa.ArrowInvalid):
        lake.replace_range("blocks", text, 0, 3)
    assert lake.table("blocks") is None  # nothing was written
