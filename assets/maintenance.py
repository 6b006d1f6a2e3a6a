"""Keeping the lake and the Dagster instance small: thin wiring over ``ingestion.maintenance``.

- Job ``lake_maintenance`` (schedule ``lake_maintenance_schedule``, daily at 03:30, running by
  default; also launchable from the UI): compacts the closed block ranges of the bronze tables
  (every partition below the one holding the stored tip), vacuums removed files older than the
  retention, checkpoints the Delta logs and deletes the Spark checkpoints of complete scopes.
  It materializes no asset. It runs in its own pool ``chainlake_maintenance`` (one maintenance
  at a time), not in ``chainlake_ingest``: every writer range-replaces with conflict detection,
  so maintenance and ingestion may overlap (``tests/unit/test_maintenance.py`` races them).
- Job ``purge_old_runs`` (schedule ``purge_old_runs_schedule``, daily at 04:30, running by
  default): deletes finished runs older than 7 days that the head sensor and the schedules
  started (tag ``chainlake/trigger``), with their event logs and compute logs — except every run
  that holds the latest materialization of an asset partition, so the UI still shows each
  partition materialized. Runs launched by hand and backfills are never purged.
"""

import contextlib
import datetime
import os

import dagster as dg
from pydantic import Field

from assets.partitions import partition_size
from assets.resources import LakeResource
from ingestion import settings
from ingestion.maintenance import closed_before_of, maintain_lake

MAINTENANCE_POOL = "chainlake_maintenance"  # never two maintenances at once (not the ingest pool)
TRIGGER_TAG = "chainlake/trigger"
# Runs started by these (the value of their chainlake/trigger tag) are purged when old.
PURGED_TRIGGERS = ("chain_head_sensor", "catch_up_schedule", "lake_maintenance_schedule",
                   "purge_old_runs_schedule")


class LakeMaintenanceConfig(dg.Config):
    retention_hours: float = Field(
        default=settings.DEFAULT_RETENTION_HOURS,
        description="Delete files removed (and unreadable Spark checkpoints set aside) longer ago "
                    "than this. Below 168 (Delta's 7 days) only with allow_short_retention.")
    allow_short_retention: bool = Field(
        default=False, description="Accept a retention below 7 days (readers of older versions "
                                   "and writes in flight may lose files).")
    target_file_mb: float = Field(
        default=settings.DEFAULT_COMPACT_TARGET_FILE_BYTES / 2**20,
        description="Compacted files hold about this many MiB (one range is read at a time).")


@dg.op(name="maintain_bronze_lake", pool=MAINTENANCE_POOL, out=dg.Out(dg.Nothing),
       description="Compact closed block ranges, vacuum, checkpoint the Delta logs, delete the "
                   "Spark checkpoints of complete scopes.")
def maintain_bronze_lake(context: dg.OpExecutionContext, config: LakeMaintenanceConfig,
                         lake: LakeResource):
    bronze = lake.lake()
    size = partition_size()
    closed_before = closed_before_of(bronze, size)
    context.log.info(f"maintaining {bronze.root}: compacting blocks below {closed_before:,} "
                     f"(partitions of {size:,} blocks)")
    report = maintain_lake(
        bronze, closed_before=closed_before, partition_size=size,
        retention_hours=config.retention_hours,
        enforce_retention_duration=not config.allow_short_retention,
        target_file_bytes=int(config.target_file_mb * 2**20),
        first_block=settings.start_block_from_env(), progress=context.log.info)
    context.log.info(report.render())
    yield dg.Output(None, metadata={
        "closed_before": closed_before,
        "files_before": report.files_before,
        "files_after": report.files_after,
        "commits": report.commits,
        "checkpoints_removed": len(report.checkpoints_removed),
        "seconds": dg.MetadataValue.float(round(report.seconds, 2)),
        "tables": dg.MetadataValue.md(_tables_markdown(report)),
    })


def _tables_markdown(report) -> str:
    rows = ["| table | live files | live MB | compacted files | vacuumed | commits | log entries |",
            "|---|---|---|---|---|---|---|"]
    for t in report.tables.values():
        log_entries = ("" if t.log_files_before is None
                       else f"{t.log_files_before} → {t.log_files_after}")
        rows.append(f"| {t.table} | {t.files_before} → {t.files_after} | "
                    f"{t.bytes_before / 1e6:.1f} → {t.bytes_after / 1e6:.1f} | "
                    f"{t.files_compacted} | {t.files_vacuumed} | {t.commits} | {log_entries} |")
    return "\n".join(rows)


@dg.job(name="lake_maintenance",
        description="Keep the bronze lake small: compact closed block ranges (no row changes), "
                    "vacuum removed files past the retention, checkpoint the Delta logs, delete "
                    "the Spark checkpoints of complete scopes. Safe while ingestion runs.")
def lake_maintenance():
    maintain_bronze_lake()


lake_maintenance_schedule = dg.ScheduleDefinition(
    name="lake_maintenance_schedule",
    cron_schedule="30 3 * * *",
    job=lake_maintenance,
    # On by default, like chain_head_sensor: a deployment following the head grows by thousands
    # of small files and commits a day otherwise. It changes no row and is safe alongside
    # ingestion, so there is nothing to opt into.
    default_status=dg.DefaultScheduleStatus.RUNNING,
    tags={TRIGGER_TAG: "lake_maintenance_schedule"},
    description="Daily at 03:30: the lake_maintenance job.",
)


# --- Dagster run history ------------------------------------------------------------------------


class RunPurgeConfig(dg.Config):
    older_than_days: float = Field(
        default=settings.DEFAULT_RUN_RETENTION_DAYS,
        description="Purge finished runs created longer ago than this.")
    triggers: list[str] = Field(
        default=list(PURGED_TRIGGERS),
        description=f"Only runs whose {TRIGGER_TAG} tag is one of these (sensor and schedules).")


def protected_run_ids(instance: dg.DagsterInstance) -> set[str]:
    """Runs holding the latest materialization of some asset (partition): never purged."""
    keep: set[str] = set()
    for key in instance.get_asset_keys():
        latest = instance.get_latest_materialization_event(key)
        if latest is not None:
            keep.add(latest.run_id)
        by_partition = instance.get_latest_storage_id_by_partition(
            key, dg.DagsterEventType.ASSET_MATERIALIZATION)
        ids = sorted(set(by_partition.values()))
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            result = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, storage_ids=chunk), limit=len(chunk))
            keep.update(record.run_id for record in result.records)
    return keep


def purge_old_runs(instance: dg.DagsterInstance, *,
                   older_than_days: float = settings.DEFAULT_RUN_RETENTION_DAYS,
                   triggers: tuple[str, ...] | list[str] = PURGED_TRIGGERS,
                   now: datetime.datetime | None = None) -> tuple[list[str], int]:
    """Delete finished runs created more than ``older_than_days`` ago whose trigger tag is one
    of ``triggers``, with their event and compute logs; (deleted run ids, protected runs kept)."""
    now = now or datetime.datetime.now(datetime.UTC)
    old = instance.get_run_ids(filters=dg.RunsFilter(
        statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
                  dg.DagsterRunStatus.CANCELED],
        created_before=now - datetime.timedelta(days=older_than_days),
        tags={TRIGGER_TAG: list(triggers)}))
    if not old:
        return [], 0
    keep = protected_run_ids(instance)
    deleted = []
    for run_id in old:
        if run_id in keep:
            continue
        instance.delete_run(run_id)
        _delete_run_files(instance, run_id)
        deleted.append(run_id)
    return deleted, len(old) - len(deleted)


def _delete_run_files(instance: dg.DagsterInstance, run_id: str) -> None:
    """What ``delete_run`` leaves behind: compute logs, and SQLite's per-run event log file."""
    # A compute log manager that cannot delete by prefix keeps them.
    with contextlib.suppress(NotImplementedError, OSError, ValueError):
        instance.compute_log_manager.delete_logs(prefix=[run_id])
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    storage = instance.event_log_storage
    if isinstance(storage, SqliteEventLogStorage):  # what `dagster run wipe` deletes, one run
        shard = storage.path_for_shard(run_id)
        for path in (shard, f"{shard}-wal", f"{shard}-shm"):
            if os.path.exists(path):
                os.remove(path)


@dg.op(name="purge_runs", out=dg.Out(dg.Nothing),
       description="Delete old finished runs of the head sensor and the schedules (keeping every "
                   "run that holds the latest materialization of a partition).")
def purge_old_runs_op(context: dg.OpExecutionContext, config: RunPurgeConfig):
    deleted, kept = purge_old_runs(context.instance, older_than_days=config.older_than_days,
                                   triggers=config.triggers)
    context.log.info(f"purged {len(deleted)} runs older than {config.older_than_days:g} days; "
                     f"kept {kept} that hold the latest materialization of a partition")
    yield dg.Output(None, metadata={"runs_deleted": len(deleted), "runs_kept": kept})


@dg.job(name="purge_old_runs",
        description="Delete finished runs of chain_head_sensor and the schedules older than 7 "
                    "days, with their logs; the run holding each partition's latest "
                    "materialization is kept.")
def purge_old_runs_job():
    purge_old_runs_op()


purge_old_runs_schedule = dg.ScheduleDefinition(
    name="purge_old_runs_schedule",
    cron_schedule="30 4 * * *",
    job=purge_old_runs_job,
    # On by default: the head sensor starts thousands of runs a day (~400 MB of run storage);
    # only old runs of the sensor and schedules go, never the latest materialization of a
    # partition, a run launched by hand or a backfill.
    default_status=dg.DefaultScheduleStatus.RUNNING,
    tags={TRIGGER_TAG: "purge_old_runs_schedule"},
    description="Daily at 04:30: the purge_old_runs job.",
)
