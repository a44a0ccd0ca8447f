"""examples/chapter4.ipynb never rots: the suite runs it top to bottom through the kernel it names (registered as
`scripts/notebook` does) against the session's real cluster, and any error in any cell fails the test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.examples import chapter4


@pytest.mark.slow
@pytest.mark.usefixtures("leaves_no_jobs")  # its jobs are deleted afterwards (the key has a stored-jobs quota)
def test_the_notebook_runs_clean_against_a_cluster(cluster: Any, service_env: dict[str, str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = chapter4.register_kernel()
    for name, value in {**service_env, "ZDL_URL": cluster.url, "ZDL_API_KEY": "test-key-7f3a",
                        "IPYTHONDIR": str(tmp_path / "ipython")}.items():
        monkeypatch.setenv(name, value)  # the kernel inherits them: the cluster, its key, its data set
    notebook = chapter4.execute(chapter4.read(), kernel, tmp_path)

    assert not [o for o in chapter4.outputs(notebook) if o.output_type == "error"]
    assert chapter4.check_figures(notebook) == 8  # 4-7, 4-9, 4-10, 4-11, 4-12, the job's, local vs job, the sweep's
    part_2 = notebook.cells[chapter4.part_2_index(notebook):]
    assert any("job.plot()" in cell.source and "figure" in cell.metadata.get("tags", []) for cell in part_2)
    table = next(cell for cell in part_2 if cell.source.rstrip().endswith("\ntable"))
    assert any("text/html" in o.get("data", {}) for o in table.outputs)  # the sweep's DataFrame
