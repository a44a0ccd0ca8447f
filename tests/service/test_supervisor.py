"""The supervisor of `zdl cluster up` on real processes: one that exits after running a while is started again at
once under its name; one that fails at start is started again after doubling delays, and given up on after
`max_failures` exits in a row; Redis exiting stops everything. The clock is the test's, so no sleeps decide."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from worker.cluster import processes
from worker.cluster.processes import Managed
from worker.cluster.supervisor import GaveUp, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def python(name: str, code: str, log_dir: Path) -> Managed:
    return processes.spawn(name, [sys.executable, "-c", code], log_dir)


@pytest.fixture
def started(tmp_path: Path):
    """`started(name, code)`: a real Python process; every one is stopped at the end."""
    made: list[Managed] = []

    def start(name: str, code: str) -> Managed:
        made.append(python(name, code, tmp_path))
        return made[-1]

    yield start
    processes.stop(made)


def test_a_process_that_ran_a_while_is_started_again_at_once(started) -> None:
    clock, procs, starts = Clock(), [started("blocks1", "import time; time.sleep(60)")], []

    def restart(proc: Managed) -> Managed:
        fresh = started(proc.name, "import time; time.sleep(60)")
        procs[procs.index(proc)] = fresh
        starts.append(clock.now)
        return fresh

    supervisor = Supervisor(lambda: procs, restart, clock=clock, min_uptime_s=10)
    assert supervisor.check() == []  # alive
    clock.now += 30
    processes.stop([procs[0]])  # SIGTERM after 30 s
    assert supervisor.check() == ["blocks1"] and starts == [clock.now]
    assert procs[0].alive() and procs[0].name == "blocks1"


def test_a_process_failing_at_start_is_retried_with_backoff_then_given_up(started) -> None:
    clock, procs, starts = Clock(), [started("api", "import sys; print('port taken'); sys.exit(3)")], []

    def restart(proc: Managed) -> Managed:
        fresh = started(proc.name, "import sys; print('port taken'); sys.exit(3)")
        procs[0] = fresh
        starts.append(clock.now)
        fresh.popen.wait()
        return fresh

    supervisor = Supervisor(lambda: procs, restart, clock=clock, min_uptime_s=10, max_failures=4, base_delay_s=1)
    procs[0].popen.wait()
    with pytest.raises(GaveUp, match=r"(?s)api exited 4 times in a row .* code 3.*port taken") as gave_up:
        for _ in range(100):
            supervisor.check()
            clock.now += 0.25
    # the first exit is the end of a run (a process is first seen running): started again at once; then exits at
    # start, each seen 0.25 s after its start, and started again after 1, 2 and 4 s; the 4th in a row gives up
    assert [round(b - a, 2) for a, b in zip(starts, starts[1:], strict=False)] == [1.25, 2.25, 4.25]
    assert "port taken" in str(gave_up.value)


def test_a_failure_is_forgiven_once_the_process_runs_long_enough(started) -> None:
    clock, procs = Clock(), [started("coordinator", "import sys; sys.exit(1)")]
    fresh_code = ["import sys; sys.exit(1)"]

    def restart(proc: Managed) -> Managed:
        procs[0] = started(proc.name, fresh_code[0])
        return procs[0]

    supervisor = Supervisor(lambda: procs, restart, clock=clock, min_uptime_s=10, max_failures=2, base_delay_s=1)
    procs[0].popen.wait()
    assert supervisor.check() == ["coordinator"]  # first seen running: its exit ends a run, started again at once
    procs[0].popen.wait()
    clock.now += 1
    assert supervisor.check() == []  # an exit at start: failure 1, started again in 1 s
    fresh_code[0] = "import time; time.sleep(60)"
    clock.now += 1
    assert supervisor.check() == ["coordinator"]
    clock.now += 20
    supervisor.check()  # ran 20 s: forgiven
    processes.stop([procs[0]])
    clock.now += 1
    assert supervisor.check() == ["coordinator"]  # a long run ended: at once, and no failure counted (max 2)


def test_redis_exiting_stops_the_cluster(started) -> None:
    redis_like = started("redis", "import sys; sys.exit(1)")
    redis_like.popen.wait()
    supervisor = Supervisor(lambda: [redis_like], lambda proc: proc, critical=lambda proc: proc.name == "redis")
    with pytest.raises(GaveUp, match="redis exited"):
        supervisor.check()
