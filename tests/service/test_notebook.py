"""examples/chapter4.ipynb never rots: the suite runs it top to bottom (nbclient, a real ipykernel) against the
session's real cluster, and any error in any cell fails the test. Its outputs are kept out of git."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "chapter4.ipynb"
#: Sizes for the test (a few seconds of training on the service's 200 synthetic digits), injected after the
#: notebook's "parameters" cell as papermill does; the numbers checked in part 1 are the book's, unchanged.
QUICK = "ITERS = 40\nSWEEP_ITERS = 30\nHIDDEN = 8"


def test_the_notebook_is_stored_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert sum("parameters" in cell.metadata.get("tags", []) for cell in code) == 1


@pytest.mark.slow
@pytest.mark.usefixtures("leaves_no_jobs")  # its jobs are deleted afterwards (the key has a stored-jobs quota)
def test_the_notebook_runs_clean_against_a_cluster(cluster: Any, service_env: dict[str, str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**service_env, "ZDL_URL": cluster.url, "ZDL_API_KEY": "test-key-7f3a"}.items():
        monkeypatch.setenv(name, value)  # the kernel inherits them: the cluster, its key, its data set
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    at = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    notebook.cells.insert(at + 1, nbformat.v4.new_code_cell(QUICK))
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(notebook, tmp_path / "chapter4.executed.ipynb")  # for a person to look at

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [cell for cell in notebook.cells if cell.cell_type == "code"
               and any("image/png" in o.get("data", {}) for o in cell.outputs)]
    assert len(figures) == 5  # tangent, gradient field, descent path, the job's curves, the sweep's curves
    assert any("job.plot()" in cell.source for cell in figures) and any("sweep.plot()" in cell.source
                                                                        for cell in figures)
    table = next(cell for cell in notebook.cells if cell.source.rstrip().endswith("\ntable"))
    assert any("text/html" in o.get("data", {}) for o in table.outputs)  # the sweep's DataFrame
