"""zdl.client without a service: job bodies from settings, where the URL and key come from, and that the
library still imports nothing of the service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zdl.client.bodies import describe, job_body, plain
from zdl.train import TrainConfig

BOOK_BODY = {"model": {"hidden_size": 50, "weight_init_std": 0.01}, "dataset": "mnist",
             "training": {"iters": 10000, "batch_size": 100, "learning_rate": 0.1, "seed": 0},
             "gradient": {"method": "numerical", "blocks": "auto"}}


def test_the_default_body_is_the_books_run() -> None:
    assert job_body() == BOOK_BODY == job_body(TrainConfig())


def test_settings_go_where_the_api_wants_them() -> None:
    body = job_body(TrainConfig(hidden_size=100), learning_rate=0.5, gradient="backprop", dataset="fashion-mnist",
                    blocks=3, seed=np.int64(7), iters=np.int64(20))
    assert body == {"model": {"hidden_size": 100, "weight_init_std": 0.01}, "dataset": "fashion-mnist",
                    "training": {"iters": 20, "batch_size": 100, "learning_rate": 0.5, "seed": 7},
                    "gradient": {"method": "backprop", "blocks": 3}}
    assert type(body["training"]["seed"]) is int and json.loads(json.dumps(body)) == body


def test_mistakes_are_caught_before_any_request() -> None:
    with pytest.raises(TypeError, match="unknown setting 'lr'; the known ones are hidden_size, weight_init_std"):
        job_body(lr=0.1)
    with pytest.raises(ValueError, match="learning_rate must be a positive number"):
        job_body(learning_rate=-1.0)


def test_numpy_scalars_become_python_numbers() -> None:
    assert [type(plain(v)) for v in (np.float64(0.5), np.int64(3), np.float32(0.25), 2, "mnist")] == \
        [float, int, float, int, str]
    assert plain(np.array([1, 2])).tolist() == [1, 2]  # arrays are left alone (the service refuses them)


def test_run_labels() -> None:
    assert describe({"learning_rate": 0.1, "seed": 1}) == "learning_rate=0.1, seed=1"
    assert describe({"learning_rate": 1e-10}) != describe({"learning_rate": 1.0000000001e-10})


def run_python(code: str, env: dict[str, str], cwd: Path | None = None) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("ZDL_URL", "ZDL_API_KEY", "ZDL_STATE_DIR")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**clean, **env},
                            timeout=60, check=True, cwd=cwd or Path(__file__).parent)
    return result.stdout.strip()


def test_the_client_imports_nothing_of_the_service() -> None:
    loaded = run_python("import sys, zdl.client; print(sorted({m.split('.')[0] for m in sys.modules}))", {})
    assert not {"api", "worker", "fastapi", "celery", "redis", "uvicorn"} & set(json.loads(loaded.replace("'", '"')))


def test_url_and_key_come_from_the_arguments_the_environment_or_the_saved_ones(tmp_path: Path) -> None:
    state_dir = tmp_path / "zdl" / "cluster"  # where zdl cluster up writes them under $XDG_STATE_HOME
    state_dir.mkdir(parents=True)
    (state_dir / "api-key").write_text("saved-key\n")
    (state_dir / "url").write_text("http://127.0.0.1:8765\n")
    show = ("from zdl.client.connection import Connection; c = Connection({args}); "
            "print(c.url, c.http.headers.get('authorization'), '|', c.key_source)")
    state = {"XDG_STATE_HOME": str(tmp_path)}
    assert run_python(show.format(args=""), state, cwd=tmp_path) == \
        f"http://127.0.0.1:8765 Bearer saved-key | the key file `zdl cluster up` saved in {state_dir}"
    assert run_python(show.format(args=""), {**state, "ZDL_API_KEY": "env-key", "ZDL_URL": "http://h:1/"}) == \
        "http://h:1 Bearer env-key | $ZDL_API_KEY"
    assert run_python(show.format(args="'http://a:2', 'arg-key'"), {**state, "ZDL_API_KEY": "env-key"}) == \
        "http://a:2 Bearer arg-key | the api_key argument"
    assert run_python(show.format(args=""), {"XDG_STATE_HOME": str(tmp_path / "none")}, cwd=tmp_path).startswith(
        "http://127.0.0.1:8000 None | nowhere")


def test_a_checkouts_own_state_dir_is_found_from_inside_it(tmp_path: Path) -> None:
    """./scripts/main-job and ./scripts/notebook keep their cluster in <checkout>/.zdl/cluster: a notebook in
    examples/ finds it; $ZDL_STATE_DIR still wins."""
    checkout = tmp_path / "checkout"
    state_dir = checkout / ".zdl" / "cluster"
    state_dir.mkdir(parents=True)
    (state_dir / "url").write_text("http://127.0.0.1:8765\n")
    (state_dir / "api-key").write_text("checkout-key\n")
    (checkout / "examples").mkdir()
    show = "from zdl.client import Client; c = Client(); print(c.url, c.connection.http.headers['authorization'])"
    elsewhere = {"XDG_STATE_HOME": str(tmp_path / "user")}
    assert run_python(show, elsewhere, cwd=checkout / "examples") == "http://127.0.0.1:8765 Bearer checkout-key"
    other = tmp_path / "other"
    (other / "api-key").parent.mkdir()
    (other / "api-key").write_text("other-key\n")
    (other / "url").write_text("http://127.0.0.1:9\n")
    assert run_python(show, {**elsewhere, "ZDL_STATE_DIR": str(other)}, cwd=checkout / "examples") == \
        "http://127.0.0.1:9 Bearer other-key"
