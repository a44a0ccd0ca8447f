"""The work of one block request: read a step's arrays from Redis, compute a group of gradient blocks, write back.

A request is a `BlockRequest` (keys, dtypes, shapes, which group of blocks), never arrays. The work is
idempotent: computing a group twice writes the same bytes to the same key, and the coordinator takes
the first completion notice of each group.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from worker.settings import Settings
from worker.state.errors import GroupCancelled, GroupHandedBack
from worker.state.keys import StepKeys
from worker.state.transfer import ArrayRef, StepData
from zdl.engine import Block, BlockGroup, block_groups
from zdl.nets import PARAM_NAMES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlockRequest:
    """Group `group` of `block_groups(shapes, n_groups)` of one step: what a block loop pops (as JSON).

    The group's blocks are not listed (with `block_groups` that is one block per W1 row, ~800 of them);
    they are `group_blocks(shapes, n_groups, group)`, a pure function both sides evaluate.
    """

    job_id: str
    step: int
    group: int
    n_groups: int
    method: str
    params: Mapping[str, ArrayRef]
    x: ArrayRef
    t: ArrayRef
    step_prefix: str

    @property
    def keys(self) -> StepKeys:
        return StepKeys(self.step_prefix)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: self.params[name].shape for name in PARAM_NAMES}

    @property
    def blocks(self) -> tuple[Block, ...]:
        return group_blocks(tuple(self.shapes.items()), self.n_groups, self.group)

    @property
    def prepared(self) -> BlockGroup:
        return prepared_group(tuple(self.shapes.items()), self.n_groups, self.group)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "step": self.step, "group": self.group, "n_groups": self.n_groups,
            "method": self.method, "params": {name: ref.to_dict() for name, ref in self.params.items()},
            "x": self.x.to_dict(), "t": self.t.to_dict(), "step_prefix": self.step_prefix,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BlockRequest:
        return cls(
            str(data["job_id"]), int(data["step"]), int(data["group"]), int(data["n_groups"]), str(data["method"]),
            {name: ArrayRef.from_dict(data["params"][name]) for name in PARAM_NAMES},
            ArrayRef.from_dict(data["x"]), ArrayRef.from_dict(data["t"]), str(data["step_prefix"]),
        )


ShapeItems = tuple[tuple[str, tuple[int, ...]], ...]


@lru_cache(maxsize=64)
def all_groups(shapes: ShapeItems, n_groups: int) -> tuple[tuple[Block, ...], ...]:
    """`zdl.engine.block_groups(shapes, n_groups)`, cached (hashable shapes). With more groups than
    hidden units it returns more lists than asked for; the number of groups per step is the length of this."""
    return tuple(tuple(group) for group in block_groups(dict(shapes), n_groups))


def group_blocks(shapes: ShapeItems, n_groups: int, group: int) -> tuple[Block, ...]:
    """The blocks of one group, in the order their values are concatenated in a notice."""
    groups = all_groups(shapes, n_groups)
    if not 0 <= group < len(groups):
        raise ValueError(f"block group {group} out of range: block_groups(..., {n_groups}) has {len(groups)} groups")
    return groups[group]


@lru_cache(maxsize=64)
def prepared_group(shapes: ShapeItems, n_groups: int, group: int) -> BlockGroup:
    """The group's blocks checked and planned once (`zdl.engine.BlockGroup`): a worker computes the same
    group of a job step after step, and planning its ~800 blocks every time would cost a millisecond."""
    return BlockGroup(group_blocks(shapes, n_groups, group), dict(shapes))


def compute_group(data: StepData, settings: Settings, request: BlockRequest, worker: str,
                  check: Callable[[], object] | None = None) -> float | None:
    """Compute the request's blocks and notify the coordinator; returns compute seconds (None if skipped).

    A step whose arrays are gone (cancelled, finished, or expired) is skipped: nobody waits for it.
    Any failure of the computation (bad shapes, unknown method, out of memory, a bug) is reported in the
    notice at once, so the coordinator ends the job instead of waiting for a group that never comes; it
    is not retried, since it would fail again.
    """
    keys = request.keys
    refs = [*(request.params[name] for name in PARAM_NAMES), request.x, request.t]
    with data.client.pipeline(transaction=False) as pipe:  # claim the group and read the arrays: one round trip
        pipe.hset(keys.claims, str(request.group), worker)
        pipe.expire(keys.claims, settings.step_key_ttl_s)
        pipe.mget([ref.key for ref in refs])
        raws = pipe.execute()[-1]
    try:
        *param_arrays, x, t = [ref.decode(raw) for ref, raw in zip(refs, raws, strict=True)]
    except KeyError as exc:
        log.info("job %s step %d: arrays gone (%s); skipping group %d", request.job_id, request.step, exc,
                 request.group)
        return None
    params = dict(zip(PARAM_NAMES, param_arrays, strict=True))
    notice: dict[str, Any] = {"group": request.group, "worker": worker}
    began = time.perf_counter()
    try:
        values = request.prepared.gradient(params, x, t, request.method, threads=settings.block_threads,
                                           check=check)
    except (GroupCancelled, GroupHandedBack):
        raise  # the caller's check interrupted the group: not a failure of it
    except Exception as exc:
        log.exception("job %s step %d: block group %d failed", request.job_id, request.step, request.group)
        notice["error"] = f"block group {request.group} of step {request.step} failed: {_what_failed(exc)}"
        values = None
    seconds = time.perf_counter() - began
    notice["seconds"] = seconds
    with data.client.pipeline(transaction=False) as pipe:
        data.push(pipe, keys.done, encode_notice(notice, values), settings.step_key_ttl_s)
        pipe.execute()
    return seconds


def _what_failed(exc: Exception) -> str:
    """The part of a block failure its job's owner may read (the rest is in the worker's log)."""
    if isinstance(exc, MemoryError):
        return "out of memory (ZDL_WORKER_MEMORY_MB)"
    if isinstance(exc, (ValueError, KeyError)):
        return str(exc)
    return f"internal error ({type(exc).__name__})"


def encode_notice(header: Mapping[str, Any], values: NDArray[np.float64] | None) -> bytes:
    """A completion notice: one JSON line, then the group's gradient values as raw float64 bytes.

    The values ride in the notice itself, so the coordinator has them the moment its BLPOP returns,
    without a second round trip to fetch a result key.
    """
    payload = b"" if values is None else np.ascontiguousarray(values, dtype=np.float64).tobytes()
    return json.dumps(dict(header)).encode() + b"\n" + payload


def decode_notice(raw: bytes) -> tuple[dict[str, Any], NDArray[np.float64]]:
    header, _, payload = raw.partition(b"\n")
    return json.loads(header), np.frombuffer(payload, dtype=np.float64)
