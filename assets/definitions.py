"""The chainlake Dagster code location (loaded by workspace.yaml)."""

import gc
import os
import warnings
from pathlib import Path

import dagster as dg

from assets.bronze import bronze_ingest
from assets.checks import CONTINUITY_CHECKS
from assets.maintenance import (
    lake_maintenance,
    lake_maintenance_schedule,
    purge_old_runs_job,
    purge_old_runs_schedule,
)
from assets.resources import default_resources
from assets.silver import SILVER_ASSETS, SILVER_CHECKS
from ingestion import settings
from sensors import catch_up_job, catch_up_schedule, chain_head_sensor


def with_code_references(assets: list) -> list:
    """Each asset names the file and line that defines it (the UI's "Code" link); links go to
    the repository when CHAINLAKE_GIT_URL (and CHAINLAKE_GIT_BRANCH, default main) are set."""
    with warnings.catch_warnings():  # beta in Dagster 1.13: not a problem of every run's log
        warnings.simplefilter("ignore", dg.BetaWarning)
        assets = dg.with_source_code_references(assets)
        git_url = os.environ.get(settings.ENV_GIT_URL)
        if git_url:
            root = Path(__file__).resolve().parent.parent
            assets = dg.link_code_references_to_git(
                assets, git_url=git_url,
                git_branch=os.environ.get(settings.ENV_GIT_BRANCH) or "main",
                file_path_mapping=dg.AnchorBasedFilePathMapping(
                    local_file_anchor=root / "pyproject.toml",
                    file_anchor_path_in_repository="pyproject.toml"))
    return list(assets)


defs = dg.Definitions(
    assets=with_code_references([bronze_ingest, *SILVER_ASSETS]),
    asset_checks=[*CONTINUITY_CHECKS, *SILVER_CHECKS],
    jobs=[catch_up_job, lake_maintenance, purge_old_runs_job],
    sensors=[chain_head_sensor],
    schedules=[catch_up_schedule, lake_maintenance_schedule, purge_old_runs_schedule],
    resources=default_resources(),
    # A bronze run is two steps in a row (ingest, then its blocking checks): running them in the
    # run worker's process saves a step subprocess start (a Python with Dagster, GX and Spark
    # imported, 4-25 s on this machine) per step, and keeps one Spark session for the run.
    executor=dg.in_process_executor,
)

# Everything imported so far (Dagster, Spark's Python side, this code location) lives as long as
# the process. Frozen (out of the cyclic collector's generations; reference counting still frees
# what is dropped), no later full collection walks it, and the process's exit skips collecting
# it: a run worker's exit 0.46 s -> 0.03 s, every run.
gc.freeze()
