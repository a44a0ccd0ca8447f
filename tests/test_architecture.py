"""The rules that keep the layers apart, read from the code's imports (grimp) and its syntax tree (ast), so that a
circle, a shortcut or an overgrown module fails here instead of in review (docs/architecture.md explains them)."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("zdl", "api", "worker")

#: The worker's public face: all that the web tier may import (settings, the store, admission, enqueueing).
API_FACE = frozenset({
    "worker.settings", "worker.state.job_store", "worker.state.sweep_store", "worker.state.records",
    "worker.state.keys", "worker.state.replies", "worker.state.stats", "worker.scheduling.admission",
    "worker.celery_app.enqueue", "worker.celery_app.app",
    # the class's keys, their measured usage, the queue's order and what each worker runs (the admin's view)
    "worker.state.apikeys", "worker.state.usage", "worker.scheduling.queue_order", "worker.scheduling.busy",
    # the store's room (admission refuses new work past its high-water mark)
    "worker.state.headroom",
    # structured logs and each job's event log (the access log, a job's log for its owner)
    "worker.telemetry.structured_log", "worker.state.job_log",
})
#: The Celery app module is imported only where tasks are sent or run.
CELERY_APP = "worker.celery_app.app"
APP_IMPORTERS = frozenset({"worker.celery_app.tasks", "api.main"})
#: worker/'s sub-packages, each importing only those below it (a set: neither imports the other).
WORKER_LAYERS = ({"celery_app", "cluster"}, "coordinator", "gang", "fanout", "scheduling", "state", "telemetry",
                 "settings")

MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 60


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=True, cache_dir=None)


def imports(graph: grimp.ImportGraph, importer_prefix: str, imported_prefix: str) -> set[tuple[str, str]]:
    """Direct imports from modules under `importer_prefix` ("": any of ours) of modules under `imported_prefix`."""
    ours = [m for m in graph.modules if m.split(".")[0] in PACKAGES]
    return {(m, i) for m in ours if _under(m, importer_prefix)
            for i in graph.find_modules_directly_imported_by(m) if _under(i, imported_prefix)}


def _under(module: str, prefix: str) -> bool:
    return not prefix or module == prefix or module.startswith(prefix + ".")


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    cycles = []
    for module in sorted(m for m in graph.modules if m.split(".")[0] in PACKAGES):
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.append((module, *back))
    assert not cycles, cycles


def test_zdl_imports_nothing_of_the_service(graph: grimp.ImportGraph) -> None:
    assert not imports(graph, "zdl", "api") | imports(graph, "zdl", "worker")


def test_the_worker_imports_nothing_of_the_api(graph: grimp.ImportGraph) -> None:
    assert not imports(graph, "worker", "api")


def test_the_api_imports_only_the_workers_public_face(graph: grimp.ImportGraph) -> None:
    assert not {(m, i) for m, i in imports(graph, "api", "worker") if i not in API_FACE}
    assert not imports(graph, "api", "celery")


def test_the_celery_app_is_imported_only_where_tasks_are_sent_or_run(graph: grimp.ImportGraph) -> None:
    importers = {m for m, _ in imports(graph, "", CELERY_APP)}
    assert importers and importers <= APP_IMPORTERS, importers
    celery_importers = {m for m, _ in imports(graph, "", "celery")}
    assert celery_importers and all(_under(m, "worker.celery_app") for m in celery_importers), celery_importers


def test_worker_sub_packages_import_only_those_below_them(graph: grimp.ImportGraph) -> None:
    assert not graph.find_illegal_dependencies_for_layers(layers=WORKER_LAYERS, containers={"worker"})


def test_worker_has_no_loose_module_but_its_face_and_settings() -> None:
    loose = {p.name for p in (REPO / "worker").glob("*.py")}
    assert loose == {"__init__.py", "settings.py"}, loose


def test_every_worker_sub_package_says_what_it_owns() -> None:
    for init in (REPO / "worker").glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, init


def service_modules() -> list[Path]:
    return sorted(p for package in ("api", "worker") for p in (REPO / package).rglob("*.py"))


@pytest.mark.parametrize("path", service_modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_service_modules_and_functions_stay_small(path: Path) -> None:
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    long = {node.name: node.end_lineno - node.lineno + 1 for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES}
    assert not long, long
