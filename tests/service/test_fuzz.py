"""Property-based fuzzing of the API with schemathesis, from its own OpenAPI schema: no input may cause a 5xx.

Runs in this process against the ASGI app (on the session's Redis, its own key prefix, a coordinator
queue no worker serves: fuzzed jobs are created but never trained). Each operation is fuzzed with valid
and invalid inputs, with random job ids, with the id of a real job of the caller, with that id bent into
other Redis key names (`<id>:checkpoint`, ...) and with the id of another key's job. Then jobs that the
API accepts, drawn at random within small sizes, run on the real workers of the session's cluster: each
ends, and a failure says why without showing the machine's paths.
"""

from __future__ import annotations

from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
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
    """(schema of the running app, job ids to try: the test key's queued job, the same id bent into the names
    of its other Redis keys, another key's job)."""
    from schemathesis.python.asgi import get_client

    settings = cluster.settings.model_copy(update={"key_prefix": "zdl-fuzz", "coordinator_queue": "zdl.nobody",
                                                   "max_active_jobs_per_key": 5})
    app = create_app(settings)
    # schemathesis's own client: the lifespan (and so the app's asyncio Redis client) runs on the one event
    # loop that serves every fuzzed call, as uvicorn's single loop does.
    with get_client(app) as client:
        client.headers.update(AUTH)
        job = client.post("/v1/jobs", json={"dataset": "mnist", "training": {"iters": 3}}).json()
        foreign = client.post("/v1/jobs", json={"dataset": "mnist", "training": {"iters": 3}},
                              headers={"Authorization": "Bearer other-key-91c2"}).json()
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        odd = [job["id"] + suffix for suffix in (":checkpoint", ":loss", ":weights", ":history", ":lease", ":")]
        yield {op.ok().label: op.ok() for op in schema.get_all_operations()}, [job["id"], foreign["id"], *odd]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("label", OPERATIONS)
def test_no_input_causes_a_server_error(fuzzed: Any, label: str, mode: GenerationMode) -> None:
    operations, job_ids = fuzzed
    operation = operations[label]
    strategies = [operation.as_strategy(generation_mode=mode)]
    if "{job_id}" in operation.path and not operation.path.endswith("/events"):  # a queued job's stream never ends
        strategies += [operation.as_strategy(generation_mode=mode, path_parameters={"job_id": job_id})
                       for job_id in job_ids]

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


accepted_jobs = st.fixed_dictionaries({
    "dataset": st.sampled_from(["mnist", "fashion-mnist"]),  # the test cluster has no Fashion-MNIST: fails, saying so
    "model": st.fixed_dictionaries({"hidden_size": st.integers(1, 12),
                                    "weight_init_std": st.sampled_from([0.0, 1e-3, 0.01, 1.0, 10.0])}),
    "training": st.fixed_dictionaries({"iters": st.integers(1, 12), "batch_size": st.integers(1, 40),
                                       "learning_rate": st.sampled_from([1e-10, 0.1, 10.0, 1e6]),
                                       "seed": st.integers(0, 2**63 - 1)}),
    "gradient": st.fixed_dictionaries({"method": st.sampled_from(["numerical", "numerical-reference", "backprop"]),
                                       "blocks": st.one_of(st.just("auto"), st.integers(1, 8))}),
})


def test_accepted_jobs_run_to_an_end_on_real_workers(api, wait_for, data_dir) -> None:
    @given(body=accepted_jobs)
    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(body: dict[str, Any]) -> None:
        if body["gradient"]["method"] == "numerical-reference":
            body["model"]["hidden_size"] = min(body["model"]["hidden_size"], 2)  # keep it a few seconds
        response = api.post("/v1/jobs", json=body)
        assert response.status_code == 201, response.text
        job = wait_for(response.json()["id"], timeout=120)
        assert job["status"] in ("succeeded", "failed"), job
        if job["status"] == "failed":
            assert job["error"] and str(data_dir) not in job["error"] and "Traceback" not in job["error"], job
            assert body["dataset"] == "fashion-mnist" or job["diverged"], job
        else:
            assert job["progress"]["iteration"] == body["training"]["iters"]

    run()
