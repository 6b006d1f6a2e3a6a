"""Dagster sensors and schedules over the bronze assets (thin wiring; logic in ``ingestion``)."""

from sensors.catchup import catch_up_job, catch_up_schedule, chain_head_sensor

__all__ = ["catch_up_job", "catch_up_schedule", "chain_head_sensor"]
