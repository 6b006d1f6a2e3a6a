"""A long-lived Spark Connect server: the warm Spark that runs connect to in about a second.

A local Spark session costs every run a JVM start and a slow first micro-batch (DESIGN.md: 30-45 s
cold against ~5 s warm for a 20-block run). A deployment that follows the chain head keeps one
server running (``chainlake spark-server``, started by ``make dev``; a service in docker/) and
points runs at it with ``CHAINLAKE_SPARK_REMOTE=sc://127.0.0.1:15002``. The server is pyspark's
own jars (no download), bound to loopback, with the same configuration as a local session; the
`evm` source and the sink run in its Python workers, so it must see the lake's file system.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ingestion import settings
from ingestion.processes import stop_group
from ingestion.spark import SESSION_CONF, java_options, python_environment, worker_interpreter

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


class SparkServerError(RuntimeError):
    """The Spark Connect server could not be started."""


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class SparkConnectServer:
    """A Spark Connect server process in its own process group; ``url`` is what clients use."""

    port: int = settings.DEFAULT_SPARK_SERVER_PORT
    master: str = settings.DEFAULT_SPARK_MASTER
    log_path: Path | None = None
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        conf = {**SESSION_CONF,
                "spark.driver.extraJavaOptions": java_options(
                    SESSION_CONF["spark.driver.extraJavaOptions"]),
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1", "spark.pyspark.python": worker_interpreter(),
                "spark.connect.grpc.binding.address": "127.0.0.1",
                "spark.connect.grpc.binding.port": str(self.port)}
        cmd = [str(spark_home() / "bin" / "spark-submit"), "--class", SERVER_CLASS,
               "--master", self.master, "--name", "chainlake-spark-server"]
        for key, value in conf.items():
            cmd += ["--conf", f"{key}={value}"]
        return [*cmd, "spark-internal"]

    def start(self, timeout: float = 180.0) -> SparkConnectServer:
        if self.process is not None:
            raise SparkServerError("Spark Connect server already started")
        if _port_open(self.port):
            raise SparkServerError(f"port {self.port} on 127.0.0.1 is already in use (a Spark "
                                   f"Connect server already running?); choose another port")
        python_environment()
        command = self.command()
        env = {**os.environ, "SPARK_HOME": str(spark_home())}
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SparkServerError(f"the Spark Connect server exited with code "
                                       f"{self.process.returncode} at start"
                                       + (f" (see {self.log_path})" if self.log_path else ""))
            if _port_open(self.port):
                return self
            time.sleep(0.2)
        self.stop()
        raise SparkServerError(f"the Spark Connect server did not listen on port {self.port} "
                               f"within {timeout:.0f}s")

    def stop(self) -> None:
        proc, self.process = self.process, None
        stop_group(proc, timeout=20)

    def __enter__(self) -> SparkConnectServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
