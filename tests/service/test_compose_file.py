"""docker-compose.yml as written, read as YAML (anywhere, no Docker needed): its settings are real settings, its
secrets are required, its Redis servers are locked and bounded, and each keeps what it should keep (the
cluster itself runs in tests/service/test_compose.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from tests.service.compose_project import REPO
from worker.cluster.redis_auth import APP_USER, APP_USER_RULES, acl_file_text
from worker.settings import Settings

ZDL_SERVICES = ("api", "coordinator", "worker")
REDIS_SERVICES = ("redis", "redis-steps")
SECRETS = ("ZDL_API_KEYS", "ZDL_SECRET_KEY", "ZDL_REDIS_PASSWORD")
VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?::([-?])([^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's reading of `$$`, `${VAR}`, `${VAR:-default}` and `${VAR:?error}` in `text`."""
    def value(match: re.Match[str]) -> str:
        name, kind, arg = match.groups()
        if name is None:
            return "$"
        if env.get(name):
            return env[name]
        if kind == "?":
            raise KeyError(f"{name}: {arg}")
        return arg if kind == "-" else ""
    return VARIABLE.sub(value, text)


@pytest.fixture(scope="module")
def compose_text() -> str:
    return (REPO / "docker-compose.yml").read_text()


@pytest.fixture(scope="module")
def services(compose_text: str) -> dict[str, Any]:
    """The services with every variable set to a value named after it (ZDL_REDIS_PASSWORD -> "zdl_redis_password")."""
    names = {match.group(1) for match in VARIABLE.finditer(compose_text) if match.group(1)}
    env = {name: name.lower() for name in names}
    return yaml.safe_load(interpolate(compose_text, env))["services"]


def test_every_zdl_variable_of_the_service_is_a_setting(services: dict[str, Any]) -> None:
    fields = {f"ZDL_{name.upper()}" for name in Settings.model_fields}
    fields |= {"ZDL_DATA_DIR", "ZDL_CACHE_DIR"}  # read by zdl.datasets, not by the service's settings
    for name in ZDL_SERVICES:
        unknown = {var for var in services[name]["environment"] if var.startswith("ZDL_")} - fields
        assert not unknown, f"{name}: {unknown}"


def test_secrets_are_required_and_reach_every_service_that_needs_them(compose_text: str,
                                                                      services: dict[str, Any]) -> None:
    for name in SECRETS:
        assert re.search(r"\$\{" + name + r":\?[^}]+\}", compose_text), f"{name} is not required with a message"
        with pytest.raises(KeyError, match=name):
            interpolate(compose_text, {other: "x" for other in SECRETS if other != name})
    assert services["api"]["environment"]["ZDL_API_KEYS"] == "zdl_api_keys"
    for name in ZDL_SERVICES:
        env = services[name]["environment"]
        assert env["ZDL_SECRET_KEY"] == "zdl_secret_key"
        assert env["ZDL_REDIS_URL"] == f"redis://{APP_USER}:zdl_redis_password@redis:6379/0"
        assert env["ZDL_STEP_REDIS_URL"] == f"redis://{APP_USER}:zdl_redis_password@redis-steps:6379/0"


def test_redis_users_are_the_applications(compose_text: str, services: dict[str, Any]) -> None:
    """The ACL file the Redis entrypoint writes is acl_file_text()'s: the one user with APP_USER_RULES."""
    script = services["redis"]["entrypoint"][2]
    assert services["redis-steps"]["entrypoint"] == services["redis"]["entrypoint"]
    rules = re.search(r"^rules='([^']*)'$", script, re.MULTILINE)
    assert rules is not None and ("on", *rules.group(1).split()) == APP_USER_RULES
    assert f"printf 'user {APP_USER} on >%s %s\\n' \"$ZDL_REDIS_PASSWORD\" \"$rules\" >/tmp/users.acl" in script
    assert acl_file_text("PW") == f"user {APP_USER} on >PW {rules.group(1)}\n"  # what that printf writes
    assert "umask 077" in script and "exec redis-server --aclfile /tmp/users.acl" in script
    for name in REDIS_SERVICES:
        service = services[name]
        assert "zdl_redis_password" not in " ".join(service["command"] + service["entrypoint"])
        assert service["user"] == "redis"
        assert 'REDISCLI_AUTH="$ZDL_REDIS_PASSWORD" redis-cli ping' in service["healthcheck"]["test"][1]


def test_redis_memory_is_bounded_and_never_evicted(compose_text: str) -> None:
    services = yaml.safe_load(compose_text)["services"]  # before interpolation: the defaults
    sizes = (("redis", "${ZDL_REDIS_MAXMEMORY_MB:-1024}mb"), ("redis-steps", "${ZDL_STEP_REDIS_MAXMEMORY_MB:-512}mb"))
    for name, size in sizes:
        assert f"--maxmemory {size} --maxmemory-policy noeviction" in " ".join(services[name]["command"])


def test_job_records_persist_and_step_data_does_not(services: dict[str, Any]) -> None:
    assert "--appendonly yes" in " ".join(services["redis"]["command"])
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert "--appendonly no" in " ".join(services["redis-steps"]["command"])
    assert "volumes" not in services["redis-steps"]


def test_services_depend_on_services_that_exist(services: dict[str, Any]) -> None:
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name


def test_dataset_cache_is_a_named_volume(compose_text: str, services: dict[str, Any]) -> None:
    for name in ZDL_SERVICES:
        assert "zdl-cache:/cache" in services[name]["volumes"]
        assert services[name]["environment"]["ZDL_CACHE_DIR"] == "/cache"
    assert "zdl-cache" in yaml.safe_load(compose_text)["volumes"]


def test_flower_needs_basic_auth_and_gets_secrets_from_its_environment(services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert flower["profiles"] == ["monitoring"]
    assert flower["environment"]["CELERY_BROKER_URL"] == f"redis://{APP_USER}:zdl_redis_password@redis:6379/0"
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "zdl_flower_basic_auth"
    script = flower["entrypoint"][2]
    assert '[ -n "$FLOWER_BASIC_AUTH" ] || {' in script and "exit 1" in script
    assert "zdl_redis_password" not in script and "zdl_flower_basic_auth" not in script
