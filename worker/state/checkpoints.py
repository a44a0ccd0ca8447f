"""A trainer's state (`zdl.train.TrainerState`) in Redis: one codec for a job's checkpoint and for the state a
gang's turn starts from, and `resume`, the one way a run goes back to its last checkpoint.

The state is a frame (`worker.state.frames`): a header with the step, the random generator's state and the
parameters' shapes, then the parameters laid end to end as float64. A checkpoint is one HSET of that frame
and the history, so a reader sees the old checkpoint or the new one, never half of each. Iterations after
the checkpoint are recomputed from its state, and their losses dropped first (`rewind_progress`), so none
is applied twice; the result is bit-identical to an undisturbed run.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import redis
from numpy.typing import NDArray

from worker.settings import Settings
from worker.state import job_log
from worker.state.frames import pack, unpack
from worker.state.keys import JobKeys
from worker.state.replies import as_bytes, hash_reply
from zdl.history import History
from zdl.nets import PARAM_NAMES
from zdl.train import TrainerState

log = logging.getLogger(__name__)


def state_fields(state: TrainerState) -> tuple[dict[str, Any], NDArray[np.float64]]:
    """A trainer state (without its history) as a JSON-able header and its parameters laid end to end."""
    header = {"step": state.step, "rng": state.rng_state,
              "shapes": {name: list(state.params[name].shape) for name in PARAM_NAMES}}
    return header, np.concatenate([np.ravel(state.params[name]) for name in PARAM_NAMES])


def read_state(header: Mapping[str, Any], values: NDArray[np.float64], history: History) -> TrainerState:
    """The inverse of `state_fields`, with `history` as the state's history."""
    params, at = {}, 0
    for name in PARAM_NAMES:
        shape = tuple(header["shapes"][name])
        size = math.prod(shape)
        params[name] = values[at : at + size].reshape(shape).copy()
        at += size
    return TrainerState(int(header["step"]), params, header["rng"], history)


def encode_state(state: TrainerState) -> bytes:
    """The state (without its history) as one frame."""
    return pack(*state_fields(state))


def decode_state(raw: bytes, history: History) -> TrainerState:
    """The inverse of `encode_state`, with `history` as the state's history."""
    header, values = unpack(raw)
    return read_state(header, values, history)


def queue_checkpoint(pipe: redis.client.Pipeline, settings: Settings, job_id: str, state: TrainerState) -> None:
    """Queue the writing of `state` on `pipe` (one HSET: a reader sees the old checkpoint or the new one)."""
    pipe.hset(JobKeys.of(settings, job_id).checkpoint,
              mapping={"state": encode_state(state), "history": state.history.to_json()})
    job_log.append(pipe, settings, job_id, "checkpoint", iteration=state.step)


def checkpoint_step(client: redis.Redis, settings: Settings, job_id: str) -> int:
    """The iteration of the job's last checkpoint (0 if it has none), read from the frame's header only."""
    raw = client.hget(JobKeys.of(settings, job_id).checkpoint, "state")
    return int(json.loads(as_bytes(raw).partition(b"\n")[0])["step"]) if raw else 0


def load_checkpoint(client: redis.Redis, settings: Settings, job_id: str) -> TrainerState | None:
    """The job's last checkpoint; None if it has none yet."""
    raw = hash_reply(client.hgetall(JobKeys.of(settings, job_id).checkpoint))
    if not raw:
        return None
    return decode_state(raw[b"state"], History.from_json(raw[b"history"].decode()))


def rewind_progress(client: redis.Redis, settings: Settings, job_id: str, step: int) -> None:
    """Drop the losses and evaluations recorded after `step` (they will be recorded again)."""
    k = JobKeys.of(settings, job_id)

    def rewind(pipe: redis.client.Pipeline) -> None:
        epochs = [e for e in pipe.lrange(k.epochs, 0, -1) if json.loads(e)["iteration"] < step]
        pipe.multi()
        if step > 0:
            pipe.ltrim(k.loss, 0, step - 1)
        else:
            pipe.delete(k.loss)
        pipe.delete(k.epochs)
        if epochs:
            pipe.rpush(k.epochs, *epochs)
        pipe.hset(k.record, "iteration", step)

    client.transaction(rewind, k.epochs)


def resume(client: redis.Redis, settings: Settings, job_id: str) -> TrainerState | None:
    """The job's last checkpoint (None: start again), with what was recorded after it forgotten and the
    record saying where the run resumed from."""
    state = load_checkpoint(client, settings, job_id)
    step = 0 if state is None else state.step
    rewind_progress(client, settings, job_id, step)
    client.hset(JobKeys.of(settings, job_id).record, "resumed_from", step)
    log.warning("job %s: resuming from iteration %d", job_id, step)
    return state
