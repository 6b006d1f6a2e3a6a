"""Unreadable Spark checkpoints are set aside (kept, named) and the scope resumes from the lake."""

from pathlib import Path

import pytest
from synthetic_chain import chain, write

from ingestion.checkpoint import resume_point, unreadable_reason

OFFSET = 'v1\n{"batchWatermarkMs":0,"batchTimestampMs":1,"conf":{}}\n{"block_number": %d}\n'


def make_checkpoint(root: Path, ends: list[int]) -> Path:
    (root / "offsets").mkdir(parents=True)
    (root / "commits").mkdir()
    (root / "metadata").write_text('{"id":"3c3798bb-4d81-4db6-b60d-72cf86930a85"}')
    for batch, end in enumerate(ends):
        (root / "offsets" / str(batch)).write_text(OFFSET % end)
        (root / "commits" / str(batch)).write_text('v1\n{"nextBatchWatermarkMs":0}\n')
    return root


def test_a_sound_checkpoint_is_kept(lake):
    write(lake, chain(10), 0, 10)
    cp = make_checkpoint(Path(lake.checkpoint_uri("s")), [5, 10])
    assert unreadable_reason(str(cp)) is None
    assert resume_point(lake, str(cp), 0, 20) is None
    assert cp.exists()


@pytest.mark.parametrize("damage", [
    ("offsets/1", "\x00garbage{"), ("offsets/1", ""), ("metadata", ""), ("commits/0", "v1\n{"),
])
def test_an_unreadable_checkpoint_is_set_aside_and_the_lake_decides(lake, damage):
    write(lake, chain(7), 0, 7)
    cp = make_checkpoint(Path(lake.checkpoint_uri("s")), [5, 10])
    (cp / damage[0]).write_text(damage[1])
    assert damage[0] in unreadable_reason(str(cp))
    assert resume_point(lake, str(cp), 0, 20) == 7  # the first block the lake lacks
    assert not cp.exists()
    kept = list(cp.parent.glob("s.unreadable-*"))
    assert len(kept) == 1 and (kept[0] / damage[0]).exists()


def test_without_a_checkpoint_the_scope_starts_at_the_first_block_the_lake_lacks(lake):
    write(lake, chain(7), 0, 7)
    assert resume_point(lake, lake.checkpoint_uri("new"), 0, 20) == 7
    assert resume_point(lake, lake.checkpoint_uri("new"), 10, 20) is None
    assert resume_point(lake, lake.checkpoint_uri("new"), 0, 5) == 5  # all there: nothing to do
