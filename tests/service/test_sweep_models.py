"""A sweep's `runs` and grid values: repeats found in one pass (a long list costs linear time), and a cap."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.sweep_models import MAX_RUNS, SweepCreate

BASE = {"dataset": "mnist"}


def test_a_repeated_run_is_named_even_at_the_end_of_a_long_list() -> None:
    runs = [{"seed": i} for i in range(MAX_RUNS - 1)] + [{"seed": 7.0}]  # 7.0 is the run seed 7 again
    with pytest.raises(ValidationError, match=f"entry {MAX_RUNS - 1} repeats an earlier one"):
        SweepCreate.model_validate({"base": BASE, "runs": runs})
    distinct = SweepCreate.model_validate({"base": BASE, "runs": [{"seed": i} for i in range(MAX_RUNS)]})
    assert distinct.size == MAX_RUNS
    assert SweepCreate.model_validate({"base": BASE, "runs": [{"gradient": "1"}, {"seed": 1}]}).size == 2


def test_runs_beyond_the_cap_are_refused() -> None:
    with pytest.raises(ValidationError, match=f"at most {MAX_RUNS} items"):
        SweepCreate.model_validate({"base": BASE, "runs": [{"seed": i} for i in range(MAX_RUNS + 1)]})


def test_a_repeated_grid_value_is_named() -> None:
    with pytest.raises(ValidationError, match="learning_rate has 0.1 more than once"):
        SweepCreate.model_validate({"base": BASE, "grid": {"learning_rate": [0.1, 1, 0.1]}})
