"""The fan-out gradient: the same `gradient_fn` the local trainer uses, computed by block workers.

Each call is one training step. The coordinator writes the parameters and the batch to the step Redis
(`StepData`: a server of its own, or the main one) under per-step keys and pushes one request per group
(`zdl.engine.block_groups`) onto the run's request list, which block loops (worker/fanout/block_loop.py, one
Celery task each, started only when the run has fewer than it wants) pop the moment they arrive. It
then BLPOPs on the step's completion list: a notice, carrying the group's values, arrives the moment a
group is done, so no time is lost to result polling (GroupResult.get() sleeps in 0.5 s steps), to
fetching results, or to a Celery message per block. Every entry is computed by
`zdl.engine.blocks_gradient`, whose bits do not depend on how blocks are grouped, so the weights are
bit-identical to a local run.

Requests that are not back in time are pushed again: at once if the worker process that claimed them has
stopped heartbeating (worker/scheduling/lost_work.py), after `block_timeout_s` if nobody has claimed them;
loops whose worker process died, or whose Celery message never started, are replaced. While it waits, the
coordinator keeps the step's arrays from expiring, writes them again when a block loop found them gone, checks
the job's lease, deadline and cancel flag (`check`), and gives up (JobStopped: the job fails with the reason)
when no group has come back for `stall_timeout_s`.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import redis
from numpy.typing import NDArray

from worker.fanout.block_loop import STOP, LoopStart, encode_request
from worker.fanout.blocks import BlockRequest, all_groups
from worker.scheduling.heartbeat import alive_workers, worker_name
from worker.scheduling.lost_work import live_takers, lost_entries, patience, queued, queued_ages, taken_by_lost
from worker.settings import Settings
from worker.state.cancel import cancel_requested
from worker.state.errors import BlockFailed, JobCancelled, JobStopped
from worker.state.frames import unpack
from worker.state.keys import RunKeys, StepKeys
from worker.state.replies import as_bytes
from worker.state.transfer import StepData
from zdl.engine import assemble
from zdl.engine.blocks import Shapes
from zdl.nets import PARAM_NAMES

log = logging.getLogger(__name__)

StartLoops = Callable[[list[LoopStart]], None]

class FanoutGradient:
    """`(params, x, t) -> {W1, b1, W2, b2}` computed by block loops; one call per training step.

    client: the main Redis (worker heartbeats, the cancel flag); data: where step data goes.
    send: starts block loops (Celery tasks on the blocks queue in production).
    cancel_record: the job's record, whose cancel flag (`worker.state.cancel`) is read while waiting for
        blocks (the job's reporter reads it between steps); raises JobCancelled.
    check: called while waiting for blocks; raises to end the wait (the reporter's lease and deadline check).
    After each call, `last_wall_s` is the call's wall time, `last_block_seconds` each group's compute
    time as its worker measured it and `last_block_max_s` the slowest; wall time minus the slowest
    block is the fan-out overhead.
    """

    def __init__(self, client: redis.Redis, data: StepData, settings: Settings, job_id: str, shapes: Shapes,
                 method: str, n_groups: int, send: StartLoops, cancel_record: str | None = None,
                 owner: str = "") -> None:
        self.client, self.data, self.settings, self.job_id, self.method = client, data, settings, job_id, method
        self.owner = owner
        self.shapes = dict(shapes)
        self.n_groups = n_groups
        self.send, self.cancel_record = send, cancel_record
        self.check: Callable[[], object] = lambda: None
        self._arrays: tuple[Mapping[str, NDArray[Any]], NDArray[Any], NDArray[Any]] | None = None
        self.step = 0
        self.run = 1  # the job's run (attempt): a resumed job's step keys never collide with its earlier run's
        self.last_wall_s = self.last_block_max_s = 0.0
        self.last_block_seconds: list[float] = []
        self.loops_started = 0
        self._wanted_loops = 0  # one per live block worker, at most one per group; 0 until first counted
        self._counted_at = -math.inf  # when live block workers were last counted (monotonic)
        self._stale: list[str] = []  # the previous step's keys, deleted with the next step's writes
        self.n_tasks, self._sizes, self._gather = gather_layout(self.shapes, n_groups)

    @property
    def last_overhead_s(self) -> float:
        return max(self.last_wall_s - self.last_block_max_s, 0.0)

    def __call__(self, params: Mapping[str, NDArray[Any]], x: NDArray[Any], t: NDArray[Any]) -> dict[str, NDArray[Any]]:
        began = time.perf_counter()
        keys = StepKeys.of(self.settings, self.job_id, self.step, self.run)
        run_keys = RunKeys.of(self.settings, self.job_id, self.run)
        self._arrays = (params, x, t)
        requests, loops = self._publish(keys, run_keys, params, x, t)
        if time.monotonic() - self._counted_at >= self.settings.heartbeat_interval_s:  # workers come and go
            self._note_live_workers(alive_workers(self.client, self.settings, self.settings.blocks_queue))
        if loops < self._wanted_loops:
            self._start_loops(run_keys, self._wanted_loops - loops)
        results = self._wait(keys, run_keys, requests)
        for group, (_, values) in results.items():
            if values.shape != (self._sizes[group],):
                raise BlockFailed(f"step {self.step}: group {group} sent {values.shape[0]} values, "
                                  f"expected {self._sizes[group]}")
        values = np.concatenate([results[group][1] for group in range(self.n_tasks)])
        grads = {name: values[index] for name, index in self._gather.items()}
        self.step += 1
        self.last_block_seconds = [seconds for seconds, _ in results.values()]
        self.last_block_max_s = max(self.last_block_seconds)
        self.last_wall_s = time.perf_counter() - began
        return grads

    def close(self) -> None:
        """Delete the last step's keys (earlier steps' go with the next step's writes) and end the run's
        loops: their hash goes, and a STOP per loop wakes them at once."""
        run_keys = RunKeys.of(self.settings, self.job_id, self.run)
        with self.data.client.pipeline(transaction=False) as pipe:
            if self._stale:
                pipe.delete(*self._stale)
            pipe.delete(run_keys.loops, run_keys.requests)
            pipe.rpush(run_keys.requests, *[STOP] * max(self._wanted_loops, 1))
            pipe.expire(run_keys.requests, 60)
            pipe.execute()
        self._stale = []

    def _publish(self, keys: StepKeys, run_keys: RunKeys, params: Mapping[str, NDArray[Any]], x: NDArray[Any],
                 t: NDArray[Any]) -> tuple[list[BlockRequest], int]:
        """Write the step's arrays, push its requests, drop the previous step's keys and count the run's
        loops: one round trip. Returns the requests and the loop count."""
        ttl = self.settings.step_key_ttl_s
        data = self.data
        with data.client.pipeline(transaction=False) as pipe:
            refs = {name: data.put_array(pipe, keys.array(name), params[name], ttl) for name in PARAM_NAMES}
            x_ref = data.put_array(pipe, keys.array("x"), x, ttl, pixels=True)
            t_ref = data.put_array(pipe, keys.array("t"), t, ttl)
            requests = [BlockRequest(self.job_id, self.step, k, self.n_groups, self.method, refs, x_ref, t_ref,
                                     keys.prefix) for k in range(self.n_tasks)]
            if self._stale:
                pipe.unlink(*self._stale)  # freed by Redis in the background, not while we wait
            pipe.expire(run_keys.loops, ttl)
            pipe.rpush(run_keys.requests, *map(encode_request, requests))  # after the arrays they point at
            loops_at = len(pipe)
            pipe.hlen(run_keys.loops)  # read after the push: a loop leaving later pops what was pushed
            pipe.expire(run_keys.requests, ttl)
            replies = pipe.execute()
        self._stale = [*(ref.key for ref in refs.values()), x_ref.key, t_ref.key, keys.done, keys.claims]
        return requests, int(replies[loops_at])

    def _note_live_workers(self, alive: set[str]) -> None:
        """Want one loop per live block worker (`alive`: their names), at most one per group, at least one (a
        worker may come later)."""
        self._wanted_loops, self._counted_at = max(1, min(self.n_tasks, len(alive))), time.monotonic()

    def _start_loops(self, run_keys: RunKeys, count: int) -> None:
        """List `count` new loops as queued (so they are counted from now on), then send their Celery tasks."""
        starts = [LoopStart(self.job_id, run_keys.prefix, uuid.uuid4().hex[:12], self.owner) for _ in range(count)]
        listed = queued(time.time())
        with self.data.client.pipeline(transaction=False) as pipe:
            pipe.hset(run_keys.loops, mapping={start.loop_id: listed for start in starts})
            pipe.expire(run_keys.loops, self.settings.step_key_ttl_s)
            pipe.execute()
        self.loops_started += count
        self.send(starts)

    def _wait(self, keys: StepKeys, run_keys: RunKeys,
              requests: list[BlockRequest]) -> dict[int, tuple[float, NDArray[np.float64]]]:
        """Block on the completion list until every group is back: {group: (compute seconds, values)}."""
        pending = {r.group: time.monotonic() for r in requests}  # group -> when it was (re)sent
        results: dict[int, tuple[float, NDArray[np.float64]]] = {}
        last_back = time.monotonic()
        while pending:
            item = self.data.client.blpop([keys.done], timeout=self.settings.block_poll_s)
            if item is None:
                self._while_waiting(run_keys, last_back)
                self._resend_lost(keys, run_keys, requests, pending)
                continue
            notice, values = unpack(as_bytes(item[1]))  # the group's values ride in its notice
            if "error" in notice:
                raise BlockFailed(notice["error"])
            group = int(notice["group"])
            if notice.get("gone"):  # a loop found the arrays expired: write them again, and the request
                if group in pending:
                    self._republish(keys, run_keys, [r for r in requests if r.group == group])
                    pending[group] = time.monotonic()
                continue
            last_back = time.monotonic()
            if pending.pop(group, None) is not None:  # a re-sent group's second notice is ignored
                results[group] = (float(notice["seconds"]), values)
        return results

    def _while_waiting(self, run_keys: RunKeys, last_back: float) -> None:
        """Between polls: the cancel flag, the lease and the deadline; the stall limit; keep the step's arrays
        and the run's requests and loops from expiring (their TTL is for a coordinator that died)."""
        if self.cancel_record is not None and cancel_requested(self.client, self.cancel_record):
            raise JobCancelled(self.job_id)
        self.check()
        stalled = time.monotonic() - last_back
        if stalled > self.settings.stall_timeout_s:
            raise JobStopped(f"stalled at iteration {self.step}: no block group came back for {stalled:.0f} s "
                             f"(ZDL_STALL_TIMEOUT_S={self.settings.stall_timeout_s:g}); the block workers are "
                             "stopped or gone")
        with self.data.client.pipeline(transaction=False) as pipe:
            for key in (*self._stale, run_keys.requests, run_keys.loops):  # _stale: this step's keys by now
                pipe.expire(key, self.settings.step_key_ttl_s)
            pipe.execute()

    def _republish(self, keys: StepKeys, run_keys: RunKeys, requests: list[BlockRequest]) -> None:
        """Write this step's arrays again (same keys, same bytes) and push `requests` after them."""
        if self._arrays is None or not requests:
            return
        params, x, t = self._arrays
        ttl = self.settings.step_key_ttl_s
        log.warning("job %s step %d: arrays had expired; writing them again for groups %s", self.job_id, self.step,
                    [r.group for r in requests])
        with self.data.client.pipeline(transaction=False) as pipe:
            for name in PARAM_NAMES:
                self.data.put_array(pipe, keys.array(name), params[name], ttl)
            self.data.put_array(pipe, keys.array("x"), x, ttl, pixels=True)
            self.data.put_array(pipe, keys.array("t"), t, ttl)
            pipe.rpush(run_keys.requests, *map(encode_request, requests))
            pipe.expire(run_keys.requests, ttl)
            pipe.execute()

    def _resend_lost(self, keys: StepKeys, run_keys: RunKeys, requests: list[BlockRequest],
                     pending: dict[int, float]) -> None:
        """Push again the groups whose worker died, and unclaimed ones that may have died with a worker;
        replace loops whose worker died or whose task never started; start loops for new workers.

        A worker killed after popping a request but before claiming it leaves the group unclaimed; so when
        a block worker has recently died, unclaimed groups (and queued loops) older than a heartbeat TTL
        count as lost too (a duplicate is harmless: the first notice wins and the values are the same).
        """
        with self.data.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.claims)
            pipe.hgetall(run_keys.loops)
            claimed, listed = pipe.execute()
        claims = {int(g): w.decode() for g, w in claimed.items()}
        loops = {loop.decode(): value.decode() for loop, value in listed.items()}
        alive = live_takers(self.client, self.settings)
        now, wall = time.monotonic(), time.time()
        queued_for = queued_ages(loops, wall)
        unclaimed_for = {g: now - sent for g, sent in pending.items() if g not in claims}
        limit = patience(self.client, self.settings, [*unclaimed_for.values(), *queued_for.values()])
        lost = [g for g in pending if (g in claims and taken_by_lost(claims[g], alive)) or
                unclaimed_for.get(g, 0.0) > limit]
        lost_loops = lost_entries(loops, queued_for, alive, limit)
        if lost or lost_loops:
            log.warning("job %s step %d: pushing block groups %s again (claimed by %s; alive: %s); replacing "
                        "loops %s", self.job_id, self.step, lost, {g: claims.get(g) for g in lost}, sorted(alive),
                        {loop: loops[loop] for loop in lost_loops})
        with self.data.client.pipeline(transaction=False) as pipe:
            if any(g in claims for g in lost):
                pipe.hdel(keys.claims, *(str(g) for g in lost if g in claims))
            if lost:
                pipe.rpush(run_keys.requests, *(encode_request(r) for r in requests if r.group in lost))
            if lost_loops:
                pipe.hdel(run_keys.loops, *lost_loops)
            pipe.execute()
        for g in lost:
            pending[g] = now
        self._note_live_workers({worker_name(taker) for taker in alive})
        missing = self._wanted_loops - (len(loops) - len(lost_loops))
        if missing > 0:
            self._start_loops(run_keys, missing)


def gather_layout(shapes: Shapes, n_groups: int) -> tuple[int, list[int], dict[str, NDArray[np.intp]]]:
    """The number of block groups per step; per group, how many values its notice carries; per parameter,
    where its entries are in the notices laid end to end.

    Built once per job with `zdl.engine.assemble`, which also checks that the groups cover every entry
    exactly once; each step is then one gather per parameter instead of ~1,600 block slices.
    """
    groups = all_groups(tuple((name, tuple(shape)) for name, shape in shapes.items()), n_groups)
    pieces, sizes, position = [], [], 0
    for blocks in groups:
        sizes.append(sum(b.size for b in blocks))
        for block in blocks:
            pieces.append((block, np.arange(position, position + block.size, dtype=np.float64)))
            position += block.size
    layout = assemble(shapes, pieces)
    return len(groups), sizes, {name: layout[name].astype(np.intp) for name in PARAM_NAMES}
