"""docker-compose.yml (no Docker engine here to run it): its settings are real settings, its services exist,
and the two Redis servers keep what each should keep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_every_zdl_variable_is_a_setting(services) -> None:
    fields = {f"ZDL_{name.upper()}" for name in Settings.model_fields}
    fields.add("ZDL_DATA_DIR")  # read by zdl.datasets, not by the service's settings
    for name, service in services.items():
        unknown = {var for var in service.get("environment", {}) if var.startswith("ZDL_")} - fields
        assert not unknown, f"{name}: {unknown}"


def test_services_depend_on_services_that_exist(services) -> None:
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name


def test_job_records_persist_and_step_data_does_not(services) -> None:
    env = services["worker"]["environment"]
    main, steps = (env[var].split("//")[1].split(":")[0] for var in ("ZDL_REDIS_URL", "ZDL_STEP_REDIS_URL"))
    assert "--appendonly yes" in " ".join(services[main]["command"])
    assert "--appendonly no" in " ".join(services[steps]["command"]) and "volumes" not in services[steps]
    for role in ("api", "coordinator", "worker"):
        assert services[role]["environment"]["ZDL_STEP_REDIS_URL"] == env["ZDL_STEP_REDIS_URL"]
