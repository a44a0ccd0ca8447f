"""Supervision under `zdl cluster up`: a worker or API process that exits is started again under its name.

A process that exits after running a while (SIGTERM in a rolling upgrade, killed for memory, a crash) is
started again at once. One that exits soon after starting (`min_uptime_s`) is failing at start (a broken
install, a port taken, Redis refusing it): it is started again after a delay that doubles each time
(`base_delay_s`, up to `max_delay_s`), and after `max_failures` such exits in a row the supervisor gives up
and the cluster stops, with that process's log. Redis is not restarted here: its exit stops the cluster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from worker.cluster.processes import Managed

log = logging.getLogger(__name__)


class GaveUp(Exception):
    """A process kept failing at start; the message names it and shows the end of its log."""


@dataclass
class Restarts:
    """One supervised name: when its current process started, its exits at start in a row, and when the
    next start is due (0: now)."""

    started: float
    failures: int = 0
    due: float | None = None


@dataclass
class Supervisor:
    """Watches the processes `processes()` returns; `restart(proc)` starts a fresh one of the same name and role."""

    processes: Callable[[], list[Managed]]
    restart: Callable[[Managed], Managed]
    critical: Callable[[Managed], bool] = lambda proc: False
    min_uptime_s: float = 10.0
    max_failures: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _state: dict[str, Restarts] = field(default_factory=dict)

    def check(self) -> list[str]:
        """Start again every dead process whose delay has passed; returns their names. Raises GaveUp."""
        now, restarted = self.clock(), []
        for proc in self.processes():
            # first seen: it has passed the cluster's start-up checks, so it counts as having run a while
            state = self._state.setdefault(proc.name, Restarts(started=now - self.min_uptime_s))
            if proc.alive():
                if state.failures and now - state.started >= self.min_uptime_s:
                    state.failures = 0  # it ran long enough this time: past failures are forgiven
                continue
            if self.critical(proc):
                raise GaveUp(f"{proc.name} exited (code {proc.popen.returncode}); its log ends:\n{proc.log_tail(1500)}")
            if state.due is None:
                state.due = self._schedule(proc, state, now)
            if now >= state.due:
                self.restart(proc)
                state.started, state.due = self.clock(), None
                restarted.append(proc.name)
        return restarted

    def _schedule(self, proc: Managed, state: Restarts, now: float) -> float:
        """When to start `proc` again: now after a long run, after a growing delay after an exit at start."""
        code = proc.popen.returncode
        if now - state.started >= self.min_uptime_s:
            log.warning("%s exited (code %s) after %.0f s; starting it again", proc.name, code, now - state.started)
            return now
        state.failures += 1
        if state.failures >= self.max_failures:
            raise GaveUp(f"{proc.name} exited {state.failures} times in a row within {self.min_uptime_s:g} s of "
                         f"starting (last code {code}); its log ends:\n{proc.log_tail(1500)}")
        delay: float = min(self.base_delay_s * 2.0 ** (state.failures - 1), self.max_delay_s)
        log.warning("%s exited (code %s) %.1f s after starting; starting it again in %.1f s", proc.name, code,
                    now - state.started, delay)
        return now + delay
