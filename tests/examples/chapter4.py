"""examples/chapter4.ipynb for the tests: read it, split off part 1, shrink its sizes, run it through the kernel
`scripts/notebook` registers (the one the notebook names)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "examples" / "chapter4.ipynb"
#: The heading cell that starts part 2 (the service); everything before it is part 1.
PART_2 = "# 第2部"
#: Sizes for the tests, injected after the notebook's "parameters" cell as papermill does; the numbers checked in
#: part 1 are the book's, unchanged.
QUICK_ITERS_LOCAL = 600
QUICK = f"ITERS_LOCAL = {QUICK_ITERS_LOCAL}\nITERS = 40\nSWEEP_ITERS = 30\nHIDDEN = 8"


def kernel_name() -> str:
    """The kernel the notebook names in its metadata."""
    return str(json.loads(NOTEBOOK.read_text())["metadata"]["kernelspec"]["name"])


def register_kernel() -> str:
    """Register the notebook's kernel as a reader does (`scripts/notebook --setup`); return its name."""
    done = subprocess.run([REPO / "scripts" / "notebook", "--setup"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return kernel_name()


def read(part_1_only: bool = False) -> Any:
    """The notebook with QUICK after its parameters cell; only the cells before part 2 if `part_1_only`."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    if part_1_only:
        notebook.cells = notebook.cells[:part_2_index(notebook)]
    at = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    notebook.cells.insert(at + 1, nbformat.v4.new_code_cell(QUICK))
    return notebook


def part_2_index(notebook: Any) -> int:
    return next(i for i, cell in enumerate(notebook.cells)
                if cell.cell_type == "markdown" and cell.source.startswith(PART_2))


def execute(notebook: Any, kernel: str, workdir: Path) -> Any:
    """Run every cell top to bottom in a fresh kernel (any error fails); keep the result in workdir to look at."""
    NotebookClient(notebook, timeout=600, kernel_name=kernel, resources={"metadata": {"path": str(workdir)}}).execute()
    nbformat.write(notebook, workdir / "chapter4.executed.ipynb")
    return notebook


def outputs(notebook: Any) -> list[Any]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def check_figures(notebook: Any) -> int:
    """Every cell tagged "figure" drew one (an image/png output); returns how many there are."""
    tagged = [cell for cell in notebook.cells if "figure" in cell.metadata.get("tags", [])]
    for cell in tagged:
        assert any("image/png" in output.get("data", {}) for output in cell.outputs), cell.source
    return len(tagged)
