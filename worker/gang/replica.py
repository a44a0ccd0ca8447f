"""One replica of a gang (worker/gang/protocol.py) on a block worker: the job's training loop for one turn, its
gradient computed one block group here and the rest received from the other replicas."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import redis
from numpy.typing import NDArray

from worker.fanout.blocks import all_groups, prepared_group
from worker.fanout.gradient import gather_layout
from worker.gang.protocol import ReplicaStart
from worker.gang.shared_parts import SharedParts
from worker.scheduling.lost_work import ENDED
from worker.scheduling.turns import Turn
from worker.settings import Settings
from worker.state.checkpoints import decode_state, state_fields
from worker.state.errors import public_reason
from worker.state.frames import pack, unpack
from worker.state.replies import maybe_bytes
from worker.state.scripts import enter
from worker.state.transfer import StepData
from worker.state.usage import CpuMeter, block_clock
from zdl.datasets import dataset_shape, load_mnist
from zdl.engine import param_shapes
from zdl.history import History
from zdl.train import Progress, Trainer

log = logging.getLogger(__name__)

class TurnAbandoned(Exception):
    """The coordinator gave this turn up (a replica was lost); the replica stops without a word."""


def serve_replica(client: redis.Redis, data: StepData, settings: Settings, start: ReplicaStart, worker: str,
                  stopping: Callable[[], bool] = lambda: False) -> int:
    """Run the job's loop from the turn's state until replica 0 ends the turn; returns the steps taken.

    client: the main Redis (the job's cancel flag, the Celery queue); data: the step Redis (the turn's keys).
    """
    keys = start.keys
    if not enter(data.client, keys.loops, str(start.replica), worker):
        log.info("job %s turn %d: replica %d is no longer wanted", start.job_id, start.turn, start.replica)
        return 0
    steps = 0
    exchange: Exchange | None = None
    meter = CpuMeter(client, settings, start.job_id, start.owner, block_clock(settings))
    try:
        trainer = replica_trainer(start, maybe_bytes(data.client.get(keys.state)))
        exchange = Exchange(client, data, settings, start, trainer, stopping)
        trainer.gradient_fn = exchange
        report = Reporter(data, settings, start, trainer, exchange) if start.replica == 0 else None
        while not trainer.done:
            progress = trainer.step()
            steps += 1
            meter.tick()
            if report is not None:
                report(progress, end=exchange.last or trainer.done)
            if exchange.last:
                break
    except TurnAbandoned:
        log.warning("job %s turn %d: abandoned; replica %d stops", start.job_id, start.turn, start.replica)
    except redis.RedisError as exc:  # the coordinator sees the replica gone and starts the turn again
        log.warning("job %s turn %d: replica %d lost Redis (%s)", start.job_id, start.turn, start.replica, exc)
        _leave(data, start)
    except Exception as exc:  # it would fail again: the job ends, saying why
        log.exception("job %s turn %d: replica %d failed", start.job_id, start.turn, start.replica)
        _fail(data, settings, start, exc)
    finally:
        meter.flush()
        if exchange is not None:
            exchange.close()
        if start.replica == 0:
            _ended(data, start)
    return steps


def replica_trainer(start: ReplicaStart, state: bytes | None) -> Trainer:
    """The job's trainer at the turn's state (None: the first step), with a float copy of the data set of its own
    (the files are parsed once per process), freed when the turn ends."""
    config = start.spec.train_config()
    dataset = start.spec.dataset
    trainer = Trainer(load_mnist(dataset=dataset), config, output_size=dataset_shape(dataset)[1])
    if state is not None:
        trainer.restore(decode_state(state, History(config=trainer.history.config)))
    return trainer


def _ended(data: StepData, start: ReplicaStart) -> None:
    """Say that replica 0's task returns (after its last report), so that a coordinator still waiting for the
    turn's end never waits for it in vain; only while it is listed (the coordinator may have closed the turn).
    The other replicas stay listed by their worker: one that stops early is lost when its process goes."""
    try:
        enter(data.client, start.keys.loops, str(start.replica), ENDED)
    except redis.RedisError:
        pass  # the coordinator also sees the worker's heartbeat


def _leave(data: StepData, start: ReplicaStart) -> None:
    try:
        data.client.hdel(start.keys.loops, str(start.replica))
    except redis.RedisError:
        pass  # the coordinator also sees the worker's heartbeat


def _fail(data: StepData, settings: Settings, start: ReplicaStart, exc: Exception) -> None:
    reason = f"replica {start.replica} of the gang failed: {public_reason(exc, start.spec.dataset)}"
    try:
        with data.client.pipeline(transaction=False) as pipe:
            pipe.rpush(start.keys.progress, pack({"error": reason}))
            pipe.expire(start.keys.progress, settings.step_key_ttl_s)
            pipe.execute()
    except redis.RedisError:
        _leave(data, start)


class Exchange:
    """The trainer's gradient function in a gang: this replica's block group, then everyone's parts.

    It counts the steps itself (one call per step, from the trainer's step at the turn's start) rather than
    holding the trainer: the trainer holds it as its gradient function, and the cycle of the two would keep
    the turn's trainer, with its float copy of the data set (47 MB for mnist-small, 219 MB for MNIST), until
    the garbage collector's next run, which a turn's few allocations bring only every ~18 turns.
    """

    def __init__(self, client: redis.Redis, data: StepData, settings: Settings, start: ReplicaStart,
                 trainer: Trainer, stopping: Callable[[], bool]) -> None:
        self.client, self.data, self.settings, self.start = client, data, settings, start
        self.stopping = stopping
        self.step = trainer.step_index  # the step the next call computes
        shapes = param_shapes(trainer.net.params)
        shape_items = tuple((name, tuple(shape)) for name, shape in shapes.items())
        groups = all_groups(shape_items, start.replicas)
        if len(groups) != start.replicas:
            raise ValueError(f"a gang of {start.replicas} needs as many block groups, got {len(groups)}")
        self.group = prepared_group(shape_items, start.replicas, start.replica)
        _, self.sizes, self.gather = gather_layout(shapes, start.replicas)
        self.method = start.spec.gradient.method
        # replica 0 decides when the turn ends (the same share of the workers as a block loop's)
        self.turn = Turn(client, settings, start.job_id, start.owner, start.run) if start.replica == 0 else None
        self.waiting: dict[int, dict[int, tuple[float, NDArray[np.float64], bool]]] = {}  # parts read early, by step
        self.last = False
        self.block_seconds: list[float] = []  # each replica's compute time of the last step
        self.overhead_s = 0.0  # the last step's gradient wall time minus the slowest replica's compute
        self._next_abort_look = time.monotonic() + settings.block_poll_s
        self.shared: SharedParts | None = None
        if start.replicas > 1 and settings.gang_shared_memory:
            self.shared = SharedParts.connect(data, start.keys, self.sizes, start.replica, settings.step_key_ttl_s,
                                              self._check_abandoned)

    def __call__(self, params: dict[str, NDArray[Any]], x: NDArray[Any], t: NDArray[Any]) -> dict[str, NDArray[Any]]:
        began = time.perf_counter()
        step, self.step = self.step, self.step + 1
        own = self.group.gradient(params, x, t, self.method, threads=self.settings.block_threads)
        computed = time.perf_counter() - began
        last = self._turn_over() if self.turn is not None else False
        parts = {self.start.replica: (computed, own)}
        if self.shared is not None:
            self.shared.send(step, own, computed, last)
            last = self.shared.receive(step, parts, self._check_abandoned) or last
        elif self.start.replicas > 1:
            self._send(step, own, computed, last)
            last = self._receive(step, parts) or last
        self.last = last
        self.block_seconds = [parts[r][0] for r in range(self.start.replicas)]
        values = np.concatenate([parts[r][1] for r in range(self.start.replicas)])
        grads = {name: values[index] for name, index in self.gather.items()}
        self.overhead_s = max(time.perf_counter() - began - max(self.block_seconds), 0.0)
        return grads

    def close(self) -> None:
        if self.shared is not None:
            self.shared.close()
            self.shared = None

    def _turn_over(self) -> bool:
        """Replica 0's look at the turn: over when its share of the workers is used and other work waits, when
        the job was cancelled or is no longer this run's (its coordinator died and another resumed it), when the
        coordinator abandoned the turn, or when this worker is stopping."""
        assert self.turn is not None
        look = self.turn.look()
        if look is None:
            return False
        return look.cancelled or not look.current or (look.others_waiting and self.turn.used_up(look.at)) or \
            self.stopping() or bool(self.data.client.exists(self.start.keys.abort))

    def _check_abandoned(self) -> None:
        """While waiting for the others' parts: stop if this worker is stopping or (looked at every
        `block_poll_s`) the coordinator abandoned the turn."""
        if self.stopping():
            raise TurnAbandoned()
        now = time.monotonic()
        if now >= self._next_abort_look:
            self._next_abort_look = now + self.settings.block_poll_s
            if self.data.client.exists(self.start.keys.abort):
                raise TurnAbandoned()

    def _send(self, step: int, own: NDArray[np.float64], computed: float, last: bool) -> None:
        payload = pack({"step": step, "replica": self.start.replica, "last": last, "compute_s": computed}, own)
        ttl = self.settings.step_key_ttl_s
        with self.data.client.pipeline(transaction=False) as pipe:
            for other in range(self.start.replicas):
                if other != self.start.replica:
                    pipe.rpush(self.start.keys.inbox(other), payload)
                    pipe.expire(self.start.keys.inbox(other), ttl)
            pipe.execute()

    def _receive(self, step: int, parts: dict[int, tuple[float, NDArray[np.float64]]]) -> bool:
        """The other replicas' parts of `step` into `parts`; True if replica 0 ends the turn with it."""
        mine = self.start.keys.inbox(self.start.replica)
        last = False
        for replica, (computed, values, ends) in self.waiting.pop(step, {}).items():
            parts[replica] = (computed, values)
            last = last or ends
        while len(parts) < self.start.replicas:
            item = self.data.client.blpop([mine], timeout=self.settings.block_poll_s)
            if item is None:
                if self.data.client.exists(self.start.keys.abort) or self.stopping():
                    raise TurnAbandoned()
                continue
            more = self.start.replicas - len(parts) - 1  # whatever else has arrived, in one more round trip
            for raw in [item[1], *((self.data.client.lpop(mine, more) or []) if more else [])]:
                header, values = unpack(raw)
                computed, ends = float(header["compute_s"]), bool(header["last"])
                if header["step"] == step:
                    parts[int(header["replica"])] = (computed, values)
                    last = last or ends
                else:  # a faster replica's next step
                    self.waiting.setdefault(int(header["step"]), {})[int(header["replica"])] = \
                        (computed, values, ends)
        return last


class Reporter:
    """Replica 0's reports to the coordinator: each step's loss and accuracies, in batches (every
    `progress_interval_s`, at evaluations, checkpoints and the turn's end); the state at checkpoint steps and
    at the end, so the coordinator can checkpoint and start the next turn from it."""

    def __init__(self, data: StepData, settings: Settings, start: ReplicaStart, trainer: Trainer,
                 exchange: Exchange) -> None:
        self.data, self.settings, self.start, self.trainer, self.exchange = data, settings, start, trainer, exchange
        self.steps: list[dict[str, Any]] = []
        self.last_push = time.monotonic()
        self.gradient_s = trainer.history.gradient_time
        self.began = time.monotonic()

    def __call__(self, progress: Progress, end: bool) -> None:
        history = self.trainer.history
        self.steps.append({"iteration": progress.iteration, "loss": progress.loss, "train_acc": progress.train_acc,
                           "test_acc": progress.test_acc, "gradient_s": history.gradient_time - self.gradient_s,
                           "wall_s": time.monotonic() - self.began, "block_s": self.exchange.block_seconds,
                           "overhead_s": self.exchange.overhead_s})
        self.gradient_s = history.gradient_time
        self.began = time.monotonic()
        checkpoint = progress.iteration % self.settings.checkpoint_every == 0 and progress.iteration < progress.total
        now = time.monotonic()
        if not (end or checkpoint or progress.test_acc is not None or now - self.last_push >= \
                self.settings.progress_interval_s):
            return
        header: dict[str, Any] = {"steps": self.steps, "end": end}
        values = np.empty(0)
        if end or checkpoint:
            header["state"], values = state_fields(self.trainer.state())
        with self.data.client.pipeline(transaction=False) as pipe:
            pipe.rpush(self.start.keys.progress, pack(header, values))
            pipe.expire(self.start.keys.progress, self.settings.step_key_ttl_s)
            pipe.execute()
        self.steps, self.last_push = [], now
