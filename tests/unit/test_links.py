"""Link checks of a range before it is written: inside it and at both edges (no Spark, no node)."""

import pyarrow as pa
import pytest
from synthetic_chain import block_hash, chain, rows_to_table

from ingestion.links import find_broken_link
from ingestion.source import InconsistentChainError


def blocks(start: int, end: int, change=None) -> pa.Table:
    rows = chain(end - start, first=start, txs=0)["blocks"]
    for row in rows:
        if change is not None:
            change(row)
    return rows_to_table("blocks", rows)


def stored(*numbers: int) -> dict[int, tuple[str, str]]:
    return {n: (block_hash(n), block_hash(n - 1)) for n in numbers}


def test_a_linked_range_between_stored_neighbours_passes():
    assert find_broken_link(blocks(10, 20), 10, 20, stored=stored(9, 20),
                            node_parent_hash=None) is None


def test_in_any_row_order():
    table = blocks(10, 20)
    shuffled = table.take(pa.array([5, 0, 9, 1, 2, 3, 4, 6, 7, 8]))
    assert find_broken_link(shuffled, 10, 20, stored={}, node_parent_hash=block_hash(9)) is None


def test_a_break_inside_the_range_names_the_block():
    def unlink(row):
        if row["block_number"] == 14:
            row["parent_hash"] = "0x" + "de" * 32

    broken = find_broken_link(blocks(10, 20, unlink), 10, 20, stored={}, node_parent_hash=None)
    assert broken.block == 14 and broken.expected == block_hash(13)
    assert "block 14 does not link to block 13" in broken.message()


def test_the_first_block_must_link_to_the_stored_block_before_it():
    lake_has = {9: (block_hash(9, fork="f"), block_hash(8))}  # the lake holds another block 9
    broken = find_broken_link(blocks(10, 20), 10, 20, stored=lake_has, node_parent_hash=None)
    assert broken.block == 10 and broken.where == "the stored"


def test_without_a_stored_block_before_it_the_nodes_hash_is_the_reference():
    broken = find_broken_link(blocks(10, 20), 10, 20, stored={},
                              node_parent_hash=block_hash(9, fork="f"))
    assert broken.block == 10 and broken.where == "the node's"


def test_the_stored_block_after_the_range_must_link_to_its_last_block():
    lake_has = {20: (block_hash(20), block_hash(19, fork="f"))}
    broken = find_broken_link(blocks(10, 20), 10, 20, stored=lake_has, node_parent_hash=None)
    assert broken.block == 20 and broken.where == "the written"


@pytest.mark.parametrize("numbers", [[10, 11, 11, 13], [10, 11, 12], [11, 12, 13, 14]])
def test_missing_or_repeated_blocks_are_refused(numbers):
    rows = [dict(r, block_number=n) for r, n in
            zip(chain(len(numbers), first=10, txs=0)["blocks"], numbers, strict=True)]
    with pytest.raises(InconsistentChainError, match="not one per block"):
        find_broken_link(rows_to_table("blocks", rows), 10, 14, stored={}, node_parent_hash=None)
