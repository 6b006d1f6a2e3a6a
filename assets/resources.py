"""Dagster resources: thin configuration over ``ingestion`` (RPC node, Spark, lake)."""

import os

import dagster as dg
from pydantic import Field

from ingestion import settings
from ingestion.sink import BronzeLake
from ingestion.source import ChainView, SourceOptions, observe_chain


class RpcResource(dg.ConfigurableResource):
    """The JSON-RPC node and how hard to read it."""

    url: str = Field(description="JSON-RPC URL (from CHAINLAKE_RPC_URL; the devnet by default).")
    chain_id: int | None = Field(default=None, description="Expected chain id; fail on another.")
    confirmations: int | None = Field(
        default=None, description="Blocks kept back from the head (default per chain).")
    requests_per_second: float | None = Field(
        default=None, description="Cap on JSON-RPC calls per second, per Spark task.")
    max_blocks_per_trigger: int = Field(default=settings.DEFAULT_MAX_BLOCKS_PER_TRIGGER)
    blocks_per_partition: int = Field(default=settings.DEFAULT_BLOCKS_PER_PARTITION,
                                      description="Blocks per Spark task.")
    datasets: str | None = Field(
        default=None,
        description="Bronze tables to write, e.g. blocks,transactions,logs (from "
                    f"{settings.ENV_DATASETS}); default the three plus traces when the node "
                    "serves a tracing API.")

    def source_options(self, start_block: int, end_block: int | None) -> SourceOptions:
        opts = SourceOptions(
            rpc_url=self.url, start_block=start_block, end_block=end_block,
            confirmations=self.confirmations, chain_id=self.chain_id,
            max_blocks_per_trigger=self.max_blocks_per_trigger,
            blocks_per_partition=self.blocks_per_partition,
            rpc_requests_per_second=self.requests_per_second, datasets=self.datasets,
        )
        opts.validate()
        return opts

    def observe(self) -> ChainView:
        """Chain id (checked) and head, asked of the node now."""
        return observe_chain(self.source_options(0, None))


class SparkResource(dg.ConfigurableResource):
    """Spark: a warm Spark Connect server when ``remote`` is set (``chainlake spark-server``,
    started by ``make dev``), else a session started in the run (local by default)."""

    master: str = Field(default=settings.DEFAULT_SPARK_MASTER, description="Spark master URL.")
    remote: str | None = Field(
        default=None, description=f"Spark Connect URL, e.g. sc://127.0.0.1:15002 (from "
                                  f"{settings.ENV_SPARK_REMOTE}): runs connect instead of starting "
                                  f"a JVM.")

    def session(self):
        from ingestion.spark import get_spark

        return get_spark(self.master, remote=self.remote)

    def on_demand(self):
        """The session, started by the run when it first needs it (``SparkOnDemand``)."""
        from ingestion.spark import SparkOnDemand

        return SparkOnDemand(self.master, remote=self.remote)


class LakeResource(dg.ConfigurableResource):
    """The lake root holding bronze/ and the ingestion checkpoints."""

    uri: str = Field(description="Lake root URI (from CHAINLAKE_LAKE_URI; ./lake by default).")

    def lake(self) -> BronzeLake:
        return BronzeLake(self.uri)


def _env_or_default(name: str, default: str):
    """An EnvVar when set (Dagster then never shows the value, e.g. an RPC key), else the default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "rpc": RpcResource(url=_env_or_default(settings.ENV_RPC_URL, settings.DEFAULT_RPC_URL),
                           datasets=os.environ.get(settings.ENV_DATASETS) or None),
        "spark": SparkResource(master=settings.spark_master_from_env(),
                               remote=settings.spark_remote_from_env()),
        "lake": LakeResource(uri=_env_or_default(settings.ENV_LAKE_URI, settings.DEFAULT_LAKE_URI)),
    }
