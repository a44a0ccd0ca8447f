"""What the service shows to whom: the dashboard's headers on every page that runs its script, /readyz's
internals (Redis addresses, the storage check) to admins only, and admin keys read as API keys are."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": "Bearer admin-key-77"}


@pytest.mark.parametrize("path", ["/", "/static/index.html", "/static/app.js", "/static/app.css"])
def test_every_page_and_asset_of_the_dashboard_carries_its_policy(cluster, path: str) -> None:
    response = httpx.get(f"{cluster.url}{path}")
    assert response.status_code == 200
    directives = dict(d.strip().split(" ", 1) for d in response.headers["content-security-policy"].split(";"))
    assert directives["frame-ancestors"] == "'none'" and directives["script-src"] == "'self'"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_readyz_names_no_host_or_port_except_to_an_admin(app_client) -> None:
    client = app_client(redis_url="redis://default:hunter2secret@127.0.0.1:1/0", admin_keys=SecretStr("admin-key-77"))
    anyone = client.get("/readyz", headers={"Authorization": ""})
    assert anyone.status_code == 503 and anyone.json()["redis"] == "unreachable"
    for leak in ("127.0.0.1", ":1", "hunter2", "Error", "connecting"):
        assert leak not in anyone.text, leak
    assert "127.0.0.1" not in client.get("/readyz").text  # an API key that is not an admin's
    admin = client.get("/readyz", headers=ADMIN)
    assert admin.status_code == 503 and admin.json()["redis"].startswith("unreachable: ")


def test_an_admin_sees_when_the_quotas_cannot_all_fit_the_store(app_client) -> None:
    client = app_client(admin_keys=SecretStr(" admin-key-77 , "), max_stored_mb_per_key=1000.0)  # trimmed as API keys
    storage = client.get("/readyz", headers=ADMIN).json()["storage"]
    assert "ZDL_MAX_STORED_MB_PER_KEY=1000 MiB" in storage and "ZDL_REDIS_HIGH_WATER" in storage
    assert "storage" not in client.get("/readyz").json()
    fits = app_client(admin_keys=SecretStr("admin-key-77"), max_stored_mb_per_key=1.0)
    assert fits.get("/readyz", headers=ADMIN).json()["storage"] == "ok"
