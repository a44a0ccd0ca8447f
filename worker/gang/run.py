"""The coordinator's side of a gang (worker/gang/protocol.py): a job run as turns of replicas on the block workers.

Each turn starts the replicas from the job's last state and follows replica 0's reports, feeding them to
the same `StepReporter` a fan-out job uses (losses, evaluations, checkpoints, events, the cancel flag), so
the job's record looks the same either way. A turn ends when replica 0 says so; the next one starts at
once, behind whatever else waits for the workers. A turn that loses a replica (its worker died, its
Celery message was lost, or it failed) is abandoned, and the run goes on from the last checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from worker.gang.protocol import GangKeys, ReplicaStart
from worker.scheduling.heartbeat import alive_workers, worker_name
from worker.scheduling.lost_work import ENDED, live_takers, lost_entries, patience, queued, queued_ages
from worker.settings import Settings
from worker.state import job_log
from worker.state.cancel import cancel_requested
from worker.state.checkpoints import encode_state, read_state, resume
from worker.state.errors import BlockFailed, JobCancelled
from worker.state.frames import unpack
from worker.state.keys import JobKeys
from worker.state.replies import as_bytes, hash_reply
from worker.state.transfer import StepData
from zdl.history import History
from zdl.spec import JobSpec
from zdl.train import Progress, TrainerState

log = logging.getLogger(__name__)

StartReplicas = Callable[[list[ReplicaStart]], None]

#: The job's reporter (`worker.coordinator.reporter.StepReporter`): called after every step with its progress.
Report = Callable[[Progress, "RunState"], None]


@dataclass
class StepTimes:
    """One step's compute time of each replica and the gang's overhead (the gradient's wall time minus the
    slowest replica's compute), read by the reporter as it reads a fan-out gradient's."""

    last_overhead_s: float = 0.0
    last_block_seconds: list[float] = field(default_factory=list)


@dataclass
class RunState:
    """What the coordinator knows of a gang run: the history so far, and the latest state replica 0 sent with
    the history as it stood at that state's step (the trainer the reporter reads: `history` and `state()`).

    Replica 0 sends a state only now and then (checkpoint steps, a turn's end), and the coordinator may have to
    checkpoint between two (it is stopping): the checkpoint is then the latest state with *its* history, not the
    history so far, so that a run resumed from it counts its steps from where its state is."""

    history: History
    latest: TrainerState | None = None
    history_at_latest: History | None = None
    pending: TrainerState | None = None  # a state received whose step is not yet recorded

    def __post_init__(self) -> None:
        if self.latest is not None and self.history_at_latest is None:
            self.history_at_latest = _copy(self.history)

    def received(self, state: TrainerState) -> None:
        """A state replica 0 sent: the latest once the step it was taken after is recorded (`recorded`)."""
        self.pending = state

    def recorded(self, iteration: int) -> None:
        """Iteration `iteration`'s step is now in the history."""
        if self.pending is not None and self.pending.step == iteration:
            self.latest, self.history_at_latest, self.pending = self.pending, _copy(self.history), None

    def state(self) -> TrainerState | None:
        """The latest state with its history (None: none was sent yet, as when stopping early in the first turn)."""
        if self.latest is None or self.history_at_latest is None:
            return None
        return TrainerState(self.latest.step, self.latest.params, self.latest.rng_state, _copy(self.history_at_latest))

    @property
    def step(self) -> int:
        """Where the gang's training is: the latest state's step (the next turn starts from that state)."""
        return 0 if self.latest is None else self.latest.step


def _copy(history: History) -> History:
    return History.from_dict(history.to_dict())


class GangRun:
    """Turns of `replicas` replicas (fewer while fewer block workers are alive) until the job's last
    iteration; `run()` returns the final state."""

    def __init__(self, client: redis.Redis, data: StepData, settings: Settings, job_id: str, owner: str, run: int,
                 spec: JobSpec, replicas: int, send: StartReplicas,
                 reporter: Callable[[StepTimes], Report]) -> None:
        """reporter: makes the job's StepReporter, reading step times from the StepTimes it is given."""
        self.client, self.data, self.settings, self.job_id, self.owner = client, data, settings, job_id, owner
        self.run_number, self.spec, self.planned, self.send = run, spec, replicas, send
        self.replicas = replicas
        self.new_reporter = reporter
        self.record = JobKeys.of(settings, job_id).record
        self.total = spec.training.iters
        self.turn = 0
        self.times = StepTimes()

    def run(self, start: TrainerState | None) -> TrainerState:
        progress = RunState(_copy(start.history) if start else History(), start)
        reporter = self.new_reporter(self.times)
        while progress.step < self.total:
            self.turn += 1
            keys = GangKeys.of(self.settings, self.job_id, self.run_number, self.turn)
            # as many replicas as planned, or as there are block workers now (the bits do not depend on it)
            live = len(alive_workers(self.client, self.settings, self.settings.blocks_queue))
            self.replicas = max(1, min(self.planned, live))
            self._start(keys, progress.latest)
            try:
                lost = self._follow(keys, progress, reporter)
            except BaseException:  # cancelled, stopping, failed: the replicas stop too
                self._abandon(keys)
                raise
            finally:  # (inboxes are left alone: a replica may still be taking replica 0's last part)
                self.data.client.delete(keys.state)
            if lost is not None:  # abandoned: on from the last checkpoint, forgetting what came after it
                progress, reporter = self._rewind(), self.new_reporter(self.times)
                self._tell_owner(lost, progress.step)
        final = progress.state()
        assert final is not None, "every turn ends with replica 0's state"
        return final

    def _start(self, keys: GangKeys, state: TrainerState | None) -> None:
        ttl = self.settings.step_key_ttl_s
        starts = [ReplicaStart(self.job_id, self.owner, self.run_number, self.turn, r, self.replicas, keys.prefix,
                               self.spec) for r in range(self.replicas)]
        with self.data.client.pipeline(transaction=False) as pipe:
            if state is not None:
                pipe.set(keys.state, encode_state(state), ex=ttl)
            pipe.hset(keys.loops, mapping={str(r): queued(time.time()) for r in range(self.replicas)})
            for key in (keys.loops, keys.progress):
                pipe.expire(key, ttl)
            pipe.execute()
        self.send(starts)

    def _follow(self, keys: GangKeys, progress: RunState, reporter: Report) -> dict[int, str] | None:
        """Feed replica 0's reports to the reporter until the turn ends (None) or is abandoned: then the replicas
        lost (`_lost`)."""
        while True:
            item = self.data.client.blpop([keys.progress], timeout=self.settings.block_poll_s)
            if item is None:
                if cancel_requested(self.client, self.record):
                    raise JobCancelled(self.job_id)  # (its replicas may still wait behind other work)
                if lost := self._lost(keys):
                    self._abandon(keys)
                    return lost
                continue
            header, values = unpack(as_bytes(item[1]))
            if "error" in header:
                raise BlockFailed(header["error"])
            if "state" in header:
                progress.received(read_state(header["state"], values, History()))
            for step in header["steps"]:
                self._record(step, progress, reporter)
            if header["end"]:
                self.data.client.delete(keys.loops)
                if cancel_requested(self.client, self.record):
                    raise JobCancelled(self.job_id)
                return None

    def _record(self, step: Mapping[str, Any], progress: RunState, reporter: Report) -> None:
        history = progress.history
        history.loss.append(step["loss"])
        history.gradient_time += step["gradient_s"]
        history.wall_time += step["wall_s"]
        if step["test_acc"] is not None:
            history.epoch_iters.append(step["iteration"] - 1)
            history.train_acc.append(step["train_acc"])
            history.test_acc.append(step["test_acc"])
        self.times.last_block_seconds = list(step["block_s"])
        self.times.last_overhead_s = step["overhead_s"]
        progress.recorded(step["iteration"])
        reporter(Progress(step["iteration"], self.total, step["loss"], history.wall_time, step["train_acc"],
                          step["test_acc"]), progress)

    def _lost(self, keys: GangKeys) -> dict[int, str]:
        """The replicas the turn has lost (then it is abandoned: replicas see `abort` and stop), each with what
        became of it: the worker process that ran it stopped heartbeating, it never started, it left, or it
        ended (its task returned) with no end of the turn left to read."""
        listed = {int(r): v.decode() for r, v in hash_reply(self.data.client.hgetall(keys.loops)).items()}
        ended = {r for r, value in listed.items() if value == ENDED}
        running = {r: value for r, value in listed.items() if r not in ended}
        alive = live_takers(self.client, self.settings)
        queued_for = queued_ages(running, time.time())
        lost = lost_entries(running, queued_for, alive, patience(self.client, self.settings, queued_for.values()))
        gone = {r: "it left the turn" for r in range(self.replicas) if r not in listed}
        gone |= {r: "it was never started by a block worker" if r in queued_for else
                 f"the process of {worker_name(listed[r])} that ran it stopped (killed, or started again by its name)"
                 for r in lost}
        if 0 in ended:  # replica 0 reports before it ends: the turn's end, or its error, is still to be read
            gone[0] = "it ended without ending the turn"
        if gone and self.data.client.llen(keys.progress):
            return {}  # (read after the listing: a replica that left or ended reported first)
        if gone:
            log.warning("job %s turn %d: abandoned (replicas %s lost, %d listed, %s ended; alive: %s)", self.job_id,
                        self.turn, sorted(gone), len(listed), sorted(ended), sorted(alive))
        return gone

    def _tell_owner(self, lost: dict[int, str], from_iteration: int) -> None:
        """A `replica_lost` entry in the job's event log: which replicas, what became of them, and where the run
        goes on from."""
        why = "; ".join(f"replica {r}: {what}" for r, what in sorted(lost.items()))
        try:
            job_log.append(self.client, self.settings, self.job_id, "replica_lost", turn=self.turn,
                           replicas=sorted(lost), why=why, from_iteration=from_iteration)
        except redis.RedisError as exc:
            log.warning("job %s: could not log the lost replicas (%s)", self.job_id, exc)

    def _abandon(self, keys: GangKeys) -> None:
        """Tell the turn's replicas to stop, and those not started yet not to start (best effort)."""
        try:
            with self.data.client.pipeline(transaction=False) as pipe:
                pipe.set(keys.abort, 1, ex=self.settings.step_key_ttl_s)
                pipe.delete(keys.loops)
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("job %s turn %d: could not abandon it (%s)", self.job_id, self.turn, exc)

    def _rewind(self) -> RunState:
        """Back to the last checkpoint (or the start), the job's record too."""
        state = resume(self.client, self.settings, self.job_id)
        return RunState(_copy(state.history) if state else History(), state)
