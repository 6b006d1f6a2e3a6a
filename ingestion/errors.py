"""Errors by which chainlake refuses to go on, because going on could corrupt the lake.

A refusal is not a failure of the run: the input (the node, the lake, an option) is wrong, and
the operator must act. The command line reports it as one line with exit code 2.
"""

from __future__ import annotations


class RefusedError(RuntimeError):
    """Going on would store something the chain does not say, or lose what the lake holds."""


class TransformError(ValueError):
    """A node reply that cannot be turned into rows exactly (names the block and field)."""
