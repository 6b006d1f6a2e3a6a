"""The chainlake Dagster code location (loaded by workspace.yaml)."""

import dagster as dg

from assets.bronze import bronze_ingest
from assets.checks import bronze_continuity
from assets.resources import default_resources
from sensors import catch_up_job, catch_up_schedule, chain_head_sensor

defs = dg.Definitions(
    assets=[bronze_ingest],
    asset_checks=[bronze_continuity],
    jobs=[catch_up_job],
    sensors=[chain_head_sensor],
    schedules=[catch_up_schedule],
    resources=default_resources(),
)
