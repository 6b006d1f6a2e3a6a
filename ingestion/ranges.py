"""Fixed-size block ranges and their zero-padded keys, e.g. ``000000000000-000000099999``.

Keys name inclusive block numbers so that they read naturally in the Dagster UI; the ranges
themselves are half-open ``[start, end)`` everywhere in code. Zero padding to 12 digits makes
lexicographic order equal numeric order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KEY_DIGITS = 12
_KEY = re.compile(r"^(\d{12})-(\d{12})$")


@dataclass(frozen=True, order=True)
class BlockSpan:
    """Blocks ``[start, end)``."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end <= self.start:
            raise ValueError(f"invalid block range [{self.start}, {self.end})")

    @property
    def key(self) -> str:
        return f"{self.start:0{KEY_DIGITS}d}-{self.end - 1:0{KEY_DIGITS}d}"

    def __len__(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return f"[{self.start}, {self.end})"


def parse_key(key: str) -> BlockSpan:
    match = _KEY.match(key)
    if not match:
        raise ValueError(f"not a block-range key: {key!r} (expected e.g. 000000000000-000000099999)")
    return BlockSpan(int(match.group(1)), int(match.group(2)) + 1)


def span_of(block: int, size: int) -> BlockSpan:
    """The fixed-size range containing ``block``."""
    start = (block // size) * size
    return BlockSpan(start, start + size)


def spans_through(last_block: int, size: int, first_block: int = 0) -> list[BlockSpan]:
    """Every fixed-size range from the one holding ``first_block`` to the one holding ``last_block``
    (only ranges that have started: the last one may be open, i.e. extend past the head)."""
    if last_block < first_block:
        return []
    first = span_of(first_block, size).start
    return [BlockSpan(s, s + size) for s in range(first, last_block + 1, size)]

