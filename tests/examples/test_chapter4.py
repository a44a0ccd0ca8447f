"""examples/chapter4.ipynb as stored: no outputs, the book's sections in the book's order, every explanation in
Japanese with English beside it (the same commands and names in both), and part 1 runs with no cluster at all."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import nbformat
import numpy as np
import pytest

from tests.examples import chapter4

Dataset = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

#: The book's chapter 4, section by section (4.1 to 4.6), as the notebook's numbered headings must follow it.
BOOK_SECTIONS = ["4.1", "4.2", "4.2.1", "4.2.2", "4.2.3", "4.2.4", "4.2.5", "4.3", "4.3.1", "4.3.2", "4.3.3", "4.4",
                 "4.4.1", "4.4.2", "4.5", "4.5.1", "4.5.2", "4.5.3", "4.6"]
ENGLISH = "<!-- en -->"  # where a cell's Japanese ends and its English begins
JAPANESE_SCRIPT = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
KANA = re.compile(r"[\u3040-\u30ff]")
CODE_SPAN = re.compile(r"`([^`]+)`")


def markdown_cells() -> list[str]:
    return [cell.source for cell in nbformat.read(chapter4.NOTEBOOK, as_version=4).cells
            if cell.cell_type == "markdown"]


def test_the_notebook_is_stored_without_outputs() -> None:
    notebook = nbformat.read(chapter4.NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert sum("parameters" in cell.metadata.get("tags", []) for cell in code) == 1
    decomposition = [cell for cell in code if "decomposition" in cell.metadata.get("tags", [])]
    assert len(decomposition) == 1


def test_the_sections_are_the_books_in_its_order() -> None:
    headings = [line for source in markdown_cells() for line in source.splitlines() if line.startswith("#")]
    numbered = [match.group(1) for line in headings if (match := re.match(r"#+ (4(?:\.\d)+) ", line))]
    assert numbered == BOOK_SECTIONS
    assert "### 4.2.1 二乗和誤差 / Sum of squared errors" in headings
    for line in headings:  # "4.2.1 二乗和誤差 / Sum of squared errors": Japanese, then English
        japanese, _, english = line.lstrip("# ").partition(" / ")
        assert JAPANESE_SCRIPT.search(japanese) and english and not KANA.search(english), line


def test_every_explanation_is_in_japanese_and_english_with_the_same_commands() -> None:
    bilingual = 0
    for source in markdown_cells():
        if source.startswith("| 本の用語 |"):
            continue  # the glossary: each row holds both languages (checked below)
        assert ENGLISH in source, f"a cell without its English part: {source[:80]!r}"
        japanese, english = source.split(ENGLISH)
        japanese = "\n".join(line for line in japanese.splitlines() if not line.startswith("#"))
        assert JAPANESE_SCRIPT.search(japanese) and not KANA.search(english), source[:80]
        assert sorted(set(CODE_SPAN.findall(japanese))) == sorted(set(CODE_SPAN.findall(english))), source[:80]
        bilingual += 1
    assert bilingual >= 30
    assert any("`./scripts/notebook`" in source for source in markdown_cells())


def test_the_glossary_names_what_the_notebook_uses() -> None:
    notebook = nbformat.read(chapter4.NOTEBOOK, as_version=4)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    glossary = next(source for source in markdown_cells() if source.startswith("| 本の用語 |"))
    rows = [row.strip("|").split("|") for row in glossary.splitlines()[2:]]
    assert len(rows) >= 8
    for japanese, english, names in rows:
        assert JAPANESE_SCRIPT.search(japanese) and english.strip().isascii()
        for name in CODE_SPAN.findall(names):
            assert name.split(".")[-1] in code, f"the glossary names {name}, which the notebook never uses"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_part_1_runs_with_no_cluster(mnist_data: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Part 1 on real MNIST (what the suite has), the service pointed at a port where nothing listens: were any
    cell of part 1 to need the service, it would fail."""
    kernel = chapter4.register_kernel()
    monkeypatch.setenv("ZDL_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("ZDL_API_KEY", "no-cluster-here")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    notebook = chapter4.execute(chapter4.read(part_1_only=True), kernel, tmp_path)

    assert not [o for o in chapter4.outputs(notebook) if o.output_type == "error"]
    assert chapter4.check_figures(notebook) == 5  # figures 4-7, 4-9, 4-10, 4-11, 4-12
    assert "zdl.client" not in "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    loop = next(cell for cell in notebook.cells if "for i in range(iters_num):" in cell.source)
    printed = "".join(o.get("text", "") for o in loop.outputs)
    epochs = re.findall(r"train acc, test acc \| ([\d.]+), ([\d.]+)", printed)
    per_epoch = max(len(mnist_data[0][0]) / 100, 1)  # the book's iter_per_epoch: training images / batch 100
    assert len(epochs) == sum(i % per_epoch == 0 for i in range(chapter4.QUICK_ITERS_LOCAL))
    if len(epochs) > 1:  # mnist-small: 50 iterations an epoch (all of MNIST: 600, so only the start is measured)
        assert float(epochs[-1][1]) > 0.3  # by then SGD has lifted test accuracy well above chance (0.1)
