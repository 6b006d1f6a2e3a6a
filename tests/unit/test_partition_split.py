"""A backfill over several partitions is one query: its figures are split back per partition."""

from ingestion.ingest import BatchProgress, IngestResult
from ingestion.ranges import BlockSpan
from ingestion.source import ChainView, split_range
from ingestion.staging import TaskFigures


def _task(start: int, end: int, txs: int) -> TaskFigures:
    return TaskFigures(start, end, {"blocks": end - start, "transactions": txs},
                       {"fetch": float(end - start), "transform": 1.0, "write": 1.0}, 100 * txs)


def _batch(start: int, end: int, tasks: list[TaskFigures]) -> BatchProgress:
    return BatchProgress(
        batch_id=0, start=start, end=end,
        rows={k: sum(t.rows[k] for t in tasks) for k in ("blocks", "transactions")},
        versions={"blocks": 3}, seconds=1.0,
        stages={"fetch": sum(t.stages["fetch"] for t in tasks), "transform": 2.0, "write": 2.0,
                "commit": 0.4},
        json_bytes=sum(t.json_bytes for t in tasks), tasks=tasks)


def test_tasks_are_as_few_as_their_size_allows_and_of_equal_length():
    def cut(start: int, end: int, size: int) -> list[tuple[int, int]]:
        return [(p.start, p.end) for p in split_range(start, end, size, 1)]

    assert cut(0, 1500, 1000) == [(0, 750), (750, 1500)]
    assert cut(500, 3100, 1000) == [(500, 1366), (1366, 2233), (2233, 3100)]
    assert cut(0, 16, 16) == [(0, 16)]
    assert cut(7, 8, 1000) == [(7, 8)]
    assert cut(5, 5, 1000) == []
    for start, end, size in ((0, 1, 1), (3, 1004, 10), (0, 2001, 1000), (17, 999, 7)):
        parts = cut(start, end, size)
        lengths = [b - a for a, b in parts]
        assert parts[0][0] == start and parts[-1][1] == end
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))  # contiguous
        assert len(parts) == -(-(end - start) // size) and max(lengths) <= size
        assert max(lengths) - min(lengths) <= 1


def test_a_batch_is_split_exactly_along_its_tasks():
    batch = _batch(0, 32, [_task(0, 16, 7), _task(16, 32, 5)])
    first, second = batch.within(0, 16), batch.within(16, 32)
    assert (first.start, first.end, first.rows) == (0, 16, {"blocks": 16, "transactions": 7})
    assert second.rows == {"blocks": 16, "transactions": 5}
    assert second.json_bytes == 500
    assert first.stages["commit"] == second.stages["commit"] == 0.2
    assert batch.within(32, 48) is None
    assert batch.within(0, 100) is batch


def test_a_result_is_split_per_partition():
    view = ChainView(chain_id=1, head=100, confirmations=0)
    result = IngestResult(start_block=0, target_end=40, chain=view, seconds=8.0, batches=[
        _batch(0, 32, [_task(0, 16, 7), _task(16, 32, 5)]), _batch(32, 40, [_task(32, 40, 3)])])
    parts = [result.within(s.start, s.end) for s in (BlockSpan(0, 16), BlockSpan(16, 32),
                                                     BlockSpan(32, 48))]
    assert [p.rows("transactions") for p in parts] == [7, 5, 3]
    assert [p.blocks for p in parts] == [16, 16, 8]
    assert sum(p.seconds for p in parts) == 8.0
    assert all(p.target_end == 40 for p in parts)  # the last partition stays open
