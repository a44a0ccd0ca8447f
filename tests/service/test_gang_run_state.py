"""What a gang's coordinator checkpoints (worker/gang/run.py `RunState`): replica 0 sends its state only at
checkpoint steps and a turn's end, in the same report as the steps before it, so a checkpoint taken between two
(the coordinator is stopping) must be the latest state with the history of *its* step; a run resumed from a
state whose history counts fewer steps than the state had taken would start one turn too many, which no
replica ends (they are done at once)."""

from __future__ import annotations

import numpy as np

from worker.gang.run import RunState
from zdl.history import History
from zdl.train import TrainerState


def state_at(step: int) -> TrainerState:
    return TrainerState(step, {"W1": np.full((2, 2), float(step))}, {"state": step}, History())


def record(run: RunState, iterations: range) -> None:
    """What `GangRun._record` does to the history, and when it tells the run state."""
    for iteration in iterations:
        run.history.loss.append(1.0 / iteration)
        run.history.wall_time += 0.5
        run.recorded(iteration)


def test_a_checkpoint_between_two_states_is_the_latest_with_its_own_history() -> None:
    run = RunState(History())
    assert run.state() is None and run.step == 0  # stopping before any state: nothing to checkpoint
    run.received(state_at(100))  # one report: steps 97..100 with the state after step 100
    record(run, range(1, 99))
    assert run.state() is None  # stopping at step 98: the state of step 100 is not in the history yet
    record(run, range(99, 101))
    checkpoint = run.state()
    assert checkpoint is not None and checkpoint.step == 100 and len(checkpoint.history.loss) == 100
    record(run, range(101, 103))  # stopping at step 102: still the state of step 100, with its history
    checkpoint = run.state()
    assert checkpoint is not None and checkpoint.step == 100 and len(checkpoint.history.loss) == 100
    assert checkpoint.history.wall_time == 50.0 and run.step == 100
    assert len(run.history.loss) == 102


def test_a_run_from_a_checkpoint_starts_with_its_history() -> None:
    history = History(loss=[0.5] * 100)
    start = TrainerState(100, {}, {}, history)
    run = RunState(History.from_dict(history.to_dict()), start)
    checkpoint = run.state()
    assert checkpoint is not None and checkpoint.step == 100 and checkpoint.history.loss == history.loss
    run.received(state_at(150))
    record(run, range(101, 150))
    assert run.step == 100  # the state of step 150 counts once its step is recorded
    record(run, range(150, 151))
    assert run.step == 150
