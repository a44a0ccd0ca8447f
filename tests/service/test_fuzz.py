"""Property-based fuzzing of the API with schemathesis, from its own OpenAPI schema: no input may cause a 5xx.

Runs in this process against the ASGI app (on the session's Redis, its own key prefix, a coordinator
queue no worker serves: fuzzed jobs are created but never trained). Each operation is fuzzed with valid
and invalid inputs, with random job ids and with the id of a real job of the caller.
"""

from __future__ import annotations

from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from api.main import create_app  # noqa: E402
from worker.settings import Settings  # noqa: E402

pytestmark = pytest.mark.slow

AUTH = {"Authorization": "Bearer test-key-7f3a"}
EXAMPLES = 30
#: /readyz takes no input, and its 503 is its answer while not ready (here: the fuzz prefix has no workers).
OPERATIONS = sorted(op.ok().label for op in schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(Settings(api_keys="k", secret_key="s" * 16))).get_all_operations()
    if op.ok().path != "/readyz")


@pytest.fixture(scope="module")
def fuzzed(cluster) -> Any:
    """(schema of the running app, the id of a queued job of the test key)."""
    from fastapi.testclient import TestClient

    settings = cluster.settings.model_copy(update={"key_prefix": "zdl-fuzz", "coordinator_queue": "zdl.nobody",
                                                   "max_active_jobs_per_key": 5})
    app = create_app(settings)
    with TestClient(app, headers=AUTH) as client:  # runs the lifespan: Redis clients on app.state
        job = client.post("/v1/jobs", json={"dataset": "mnist", "training": {"iters": 3}}).json()
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        yield {op.ok().label: op.ok() for op in schema.get_all_operations()}, job["id"]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("label", OPERATIONS)
def test_no_input_causes_a_server_error(fuzzed: Any, label: str, mode: GenerationMode) -> None:
    operations, job_id = fuzzed
    operation = operations[label]
    strategies = [operation.as_strategy(generation_mode=mode)]
    if "{job_id}" in operation.path and not operation.path.endswith("/events"):  # a queued job's stream never ends
        strategies.append(operation.as_strategy(generation_mode=mode, path_parameters={"job_id": job_id}))

    for strategy in strategies:
        @given(case=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: Any) -> None:
            response = case.call(headers={**(case.headers or {}), **AUTH})
            case.validate_response(response, checks=[not_a_server_error])

        try:
            fuzz()
        except Unsatisfiable:  # no parameters and no body: there is no invalid input to make
            assert mode == GenerationMode.NEGATIVE and not operation.path.startswith("/v1/jobs/{"), label
