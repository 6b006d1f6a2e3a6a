"""The docker deployment (docker/), checked without a Docker engine.

Compose structure, shared volumes and env, ports between services, the Dagster instance and
workspace config against Dagster's own schemas, and the Dockerfile's install commands.
"""

import re
import shlex
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DAGSTER_SERVICES = ("code", "webserver", "daemon")
IMAGE_SERVICES = ("devnet", *DAGSTER_SERVICES)


def _load(name: str) -> dict:
    return yaml.safe_load((DOCKER / name).read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return _load("compose.yaml")


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    lines = (line.strip() for line in text.splitlines())
    return [(w.upper(), rest.strip()) for w, _, rest in
            (line.partition(" ") for line in lines if line and not line.startswith("#"))]


def _env_of(dockerfile) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in dockerfile:
        if word == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args))
    return env


def _copies(dockerfile) -> dict[str, str]:
    """Source -> destination of single-source COPY lines (flags dropped)."""
    out = {}
    for word, args in dockerfile:
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        if word == "COPY" and len(parts) == 2:
            out[parts[0]] = parts[1]
    return out


def _default(value: str) -> str:
    """``${VAR:-default}`` -> default; anything else unchanged."""
    m = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    return m.group(1) if m else value


def _option(command: list[str], *names: str) -> str:
    for i, word in enumerate(command[:-1]):
        if word in names:
            return command[i + 1]
    raise AssertionError(f"none of {names} in {command}")


def _mounts(service: dict) -> dict[str, str]:
    """Mount target -> source of a service's short-syntax volumes."""
    return {target: source for source, target, *_ in
            (v.split(":") for v in service.get("volumes", []))}


def test_services_present(services):
    assert set(services) == {"postgres", *IMAGE_SERVICES}


def test_services_come_back_after_a_crash(services):
    # Left running for weeks: an exited service is started again; the runs a dead code server
    # left STARTED are failed by the instance's run monitoring.
    assert {name: s.get("restart") for name, s in services.items()} == {
        name: "unless-stopped" for name in services}
    assert _load("dagster.yaml")["run_monitoring"]["enabled"] is True


def test_one_image_built_from_the_repo(services):
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:16" and "build" not in postgres
    builds = {yaml.safe_dump(services[name]["build"]) for name in IMAGE_SERVICES}
    images = {services[name]["image"] for name in IMAGE_SERVICES}
    assert len(builds) == 1 and len(images) == 1, "every chainlake service uses one image"
    build = services["code"]["build"]
    context = (DOCKER / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    # BuildKit's per-Dockerfile ignore file keeps host installs out of the context.
    ignored = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", "node_modules", "lake"} <= set(ignored)


def test_depends_on_targets_exist_and_are_healthchecked(services):
    for name, service in services.items():
        for target, spec in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            assert spec["condition"] in {"service_started", "service_healthy"}
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
    for name in DAGSTER_SERVICES:
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"]["code"]["condition"] == "service_healthy"


def test_named_volumes_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for source in _mounts(service).values():
            if not source.startswith((".", "/", "~", "$")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


def test_dagster_services_share_lake_and_storage(services, dockerfile):
    envs = [services[name]["environment"] for name in DAGSTER_SERVICES]
    mounts = [_mounts(services[name]) for name in DAGSTER_SERVICES]
    lake = envs[0]["CHAINLAKE_LAKE_URI"]
    assert all(env["CHAINLAKE_LAKE_URI"] == lake for env in envs)
    assert all(m == mounts[0] for m in mounts), "code, webserver, daemon mount the same volumes"
    assert mounts[0][lake] == "lake"
    # Local artifacts and step logs are written by run workers in `code` and read by the UI.
    instance = _load("dagster.yaml")
    for key in ("local_artifact_storage", "compute_logs"):
        base_dir = Path(instance[key]["config"]["base_dir"])
        assert any(base_dir.is_relative_to(target) for target, src in mounts[0].items()
                   if src == "dagster-storage"), f"{key} is not on the shared volume"
    # Mount points exist in the image (so fresh named volumes inherit the non-root owner).
    mkdirs = " ".join(args for word, args in dockerfile if word == "RUN" and "mkdir" in args)
    for target in mounts[0]:
        assert target in mkdirs, f"{target} is not created in the image"


def test_rpc_url_defaults_to_the_devnet_service(services):
    devnet = services["devnet"]["command"]
    assert devnet[:2] == ["chainlake", "devnet"]
    assert _option(devnet, "--host") == "0.0.0.0"
    port = _option(devnet, "--port")
    for name in DAGSTER_SERVICES:
        url = services[name]["environment"]["CHAINLAKE_RPC_URL"]
        assert url.startswith("${CHAINLAKE_RPC_URL:-"), "a real node is one env var away"
        assert _default(url) == f"http://devnet:{port}"
    health = " ".join(services["devnet"]["healthcheck"]["test"])
    assert "eth_blockNumber" in health and f":{port}" in health


def test_dagster_home_holds_the_instance_config(services, dockerfile):
    home = _env_of(dockerfile)["DAGSTER_HOME"]
    assert _copies(dockerfile)["docker/dagster.yaml"] == f"{home}/dagster.yaml"
    for name in DAGSTER_SERVICES:
        assert services[name]["environment"]["DAGSTER_HOME"] == home


def test_workspace_points_at_the_code_server(services, dockerfile):
    from dagster._core.workspace.config_schema import process_workspace_config

    workspace = _load("workspace.yaml")
    assert process_workspace_config(workspace).success
    [entry] = workspace["load_from"]
    grpc = entry["grpc_server"]
    code = services["code"]["command"]
    assert code[:3] == ["dagster", "code-server", "start"]
    assert _option(code, "-h", "--host") == "0.0.0.0"
    assert grpc["host"] == "code"
    assert str(grpc["port"]) == _option(code, "-p", "--port")
    assert grpc["location_name"] == _option(code, "--location-name") == "chainlake"
    assert _option(code, "-m", "--module-name") == "assets.definitions"
    assert _option(services["code"]["healthcheck"]["test"], "-p") == str(grpc["port"])
    copied_to = _copies(dockerfile)["docker/workspace.yaml"]
    assert services["webserver"]["command"][0] == "dagster-webserver"
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    for name in ("webserver", "daemon"):
        assert _option(services[name]["command"], "-w", "--workspace") == copied_to


def test_instance_config_is_valid_dagster(tmp_path, monkeypatch, services):
    from dagster._config import validate_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes import class_from_code_pointer

    instance = _load("dagster.yaml")
    env_vars = set(re.findall(r"\{env: (\w+)\}", (DOCKER / "dagster.yaml").read_text()))
    for name in DAGSTER_SERVICES:  # every env var the instance reads is set in the services
        assert env_vars <= set(services[name]["environment"])
    for var in env_vars:
        monkeypatch.setenv(var, "x")
    shutil.copy(DOCKER / "dagster.yaml", tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))  # Dagster's own schema
    assert custom_class is None

    assert config["telemetry"] == {"enabled": False}
    assert config["concurrency"]["pools"] == {"granularity": "run", "default_limit": 1}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_launcher"]["class"] == "DefaultRunLauncher"
    assert set(config["storage"]) == {"postgres"}
    # dagster-postgres ships psycopg2; SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3.
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    for key in ("run_coordinator", "run_launcher", "local_artifact_storage", "compute_logs"):
        cls = class_from_code_pointer(instance[key]["module"], instance[key]["class"])
        result = validate_config(cls.config_type(), instance[key].get("config") or {})
        assert result.success, (key, result.errors)


def test_postgres_credentials_agree(services):
    db = services["postgres"]["environment"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    for name in DAGSTER_SERVICES:
        env = services[name]["environment"]
        assert env["DAGSTER_PG_HOST"] == "postgres"
        assert env["DAGSTER_PG_USERNAME"] == db["POSTGRES_USER"]
        assert env["DAGSTER_PG_PASSWORD"] == db["POSTGRES_PASSWORD"]
        assert env["DAGSTER_PG_DB"] == db["POSTGRES_DB"]


def test_dockerfile_installs_like_the_readme(dockerfile):
    assert dockerfile[0] == ("FROM", "python:3.11-slim-bookworm")
    runs = [args for word, args in dockerfile if word == "RUN"]
    apt = next(r for r in runs if "apt-get install" in r).split()
    assert {"openjdk-17-jre-headless", "nodejs", "npm", "make", "git"} <= set(apt)
    install = next(r for r in runs if "make setup" in r)
    assert re.search(r"pip install .*-e '\.\[docker\]'", install)
    assert "setup:" in (REPO / "Makefile").read_text()
    env = _env_of(dockerfile)
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert env["PYSPARK_PYTHON"] == "/opt/chainlake/.venv/bin/python"
    assert env["JAVA_HOME"].startswith("/usr/lib/jvm/")
    users = [args for word, args in dockerfile if word == "USER"]
    assert users and users[-1] not in {"root", "0"}
    # `make setup` runs as that user, after it is set.
    assert dockerfile.index(("USER", users[-1])) < next(
        i for i, (word, args) in enumerate(dockerfile) if word == "RUN" and "make setup" in args)


def test_docker_extra_brings_dagster_postgres():
    """Without it `pip install '.[docker]'` only warns, and the image cannot reach Postgres."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get(
        "optional-dependencies", {})
    assert any(dep.startswith("dagster-postgres") for dep in extras.get("docker", []))
