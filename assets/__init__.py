"""Dagster assets over ``ingestion``: bronze tables partitioned by block range.

The code location is ``assets.definitions`` (see workspace.yaml).
"""
