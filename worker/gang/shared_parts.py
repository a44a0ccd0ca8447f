"""A gang's gradient parts through shared memory, when all its replicas run on one machine.

Through the step Redis a part is copied five times (out of the replica, into Redis, out of it, into the
other replica, and parsed), which costs a replica of the book's config about a millisecond a step, a
quarter of its compute. Replicas on one machine instead share one segment: every replica has two
buffers (for even and odd steps) of [sequence, last, compute seconds, values...] float64s; it writes its
part into the buffer of the step's parity and then the step's sequence number, and reads the others'
parts once their sequence numbers say the step. Two buffers are enough: a replica writes step s + 2 only
after every other replica has sent step s + 1, which each does after it has read step s.

Whether the replicas share a machine is found by trying: replica 0 creates the segment and names it, with
a random token written into it, in the turn's `:shm` hash; every other replica opens it, checks the token
and answers there whether it could. The parts go through shared memory only when every replica could,
through the step Redis otherwise (replicas in containers of their own, or on other machines). Replica 0
unlinks the segment's name once everyone has answered; the memory goes away with the last replica's
mapping, and the name with replica 0 if it dies first (Python's resource tracker).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from worker.gang.protocol import GangKeys
from worker.state.replies import maybe_bytes
from worker.state.transfer import StepData

_TOKEN_BYTES = 16
_HEADER = 3  # float64s before a buffer's values: sequence (step + 1), last (0 or 1), compute seconds

#: While waiting for a part: spin this long (a part usually arrives within a few hundred microseconds),
#: then sleep this long between looks, so that a waiting replica does not slow one still computing; after
#: _LONG_WAIT_S (the others are queued behind other work, or slow) nap _LONG_NAP_S, so that a replica
#: waiting for seconds costs its worker's core almost nothing.
_SPIN_S = 0.0002
_NAP_S = 0.00005
_LONG_WAIT_S = 0.05
_LONG_NAP_S = 0.002
_HANDSHAKE_NAP_S = 0.002  # between looks at the :shm hash

T = TypeVar("T")


class SharedParts:
    """The parts of one turn's replicas in one shared segment (see the module doc)."""

    def __init__(self, shm: SharedMemory, sizes: Sequence[int], replica: int, owner: bool) -> None:
        self.shm, self.replica, self.owner = shm, replica, owner
        floats = np.ndarray((self.floats(sizes),), np.float64, _buffer(shm), _TOKEN_BYTES)
        self.buffers: list[list[NDArray[np.float64]]] = []  # [replica][parity]
        at = 0
        for size in sizes:
            one = _HEADER + size
            self.buffers.append([floats[at : at + one], floats[at + one : at + 2 * one]])
            at += 2 * one

    @staticmethod
    def floats(sizes: Sequence[int]) -> int:
        return sum(2 * (_HEADER + size) for size in sizes)

    @classmethod
    def connect(cls, data: StepData, keys: GangKeys, sizes: Sequence[int], replica: int, ttl_s: int,
                waiting: Callable[[], None]) -> SharedParts | None:
        """This replica's view of the turn's segment, or None if the gang exchanges through the step Redis.

        Blocks until every replica has answered; `waiting()` is called about every 10 ms meanwhile and may
        raise to give up (the turn abandoned, the worker stopping).
        """
        client = data.client
        nbytes = _TOKEN_BYTES + 8 * cls.floats(sizes)
        parts: SharedParts | None = None
        try:  # whatever goes wrong (Redis, the turn abandoned), a segment made or mapped here goes
            if replica == 0:
                shm = SharedMemory(create=True, size=nbytes)
                token = secrets.token_bytes(_TOKEN_BYTES)
                _buffer(shm)[:_TOKEN_BYTES] = token
                parts = cls(shm, sizes, 0, owner=True)
                with client.pipeline(transaction=False) as pipe:
                    pipe.hset(keys.shm, mapping={"name": shm.name, "token": token.hex()})
                    pipe.expire(keys.shm, ttl_s)
                    pipe.execute()
            else:
                name, token = _wait_for(lambda: _all_or_none(client.hmget(keys.shm, ["name", "token"])), waiting,
                                        _HANDSHAKE_NAP_S)
                parts = cls._attach(name, token, nbytes, sizes, replica)
                client.hset(keys.shm, f"r{replica}", "1" if parts is not None else "0")
            others = [f"r{r}" for r in range(1, len(sizes))]
            answers = _wait_for(lambda: _all_or_none(client.hmget(keys.shm, others)), waiting, _HANDSHAKE_NAP_S)
        except BaseException:
            if parts is not None:
                parts.close()
            raise
        if replica == 0 and parts is not None:
            parts.shm.unlink()  # everyone who will map it has: the name is no longer needed
        if all(a == b"1" for a in answers):
            return parts
        if parts is not None:
            parts.close()
        return None

    @classmethod
    def _attach(cls, name: bytes, token: bytes, nbytes: int, sizes: Sequence[int], replica: int) -> SharedParts | None:
        try:
            shm = SharedMemory(name=name.decode())
        except (FileNotFoundError, OSError, ValueError):
            return None  # another machine's (or container's) segment
        # Python < 3.13 registers an opened segment too, and would unlink it when this process exits.
        resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
        if shm.size < nbytes or bytes(_buffer(shm)[:_TOKEN_BYTES]) != bytes.fromhex(token.decode()):
            shm.close()
            return None
        return cls(shm, sizes, replica, owner=False)

    def send(self, step: int, values: NDArray[np.float64], computed: float, last: bool) -> None:
        buffer = self.buffers[self.replica][step % 2]
        buffer[_HEADER:] = values
        buffer[2] = computed
        buffer[1] = 1.0 if last else 0.0
        buffer[0] = step + 1  # written last: the part is there once this is

    def receive(self, step: int, parts: dict[int, tuple[float, NDArray[np.float64]]],
                waiting: Callable[[], None]) -> bool:
        """Every other replica's part of `step` into `parts` (copies); True if one ends the turn with it."""
        last = False
        for replica, buffers in enumerate(self.buffers):
            if replica == self.replica:
                continue
            buffer = buffers[step % 2]
            _wait_for(lambda b=buffer: True if b[0] == step + 1 else None, waiting)  # type: ignore[misc]
            parts[replica] = (float(buffer[2]), buffer[_HEADER:].copy())
            last = last or bool(buffer[1] == 1.0)
        return last

    def close(self) -> None:
        self.buffers = []
        try:
            self.shm.close()
        except BufferError:
            pass  # a view is still alive somewhere; the mapping goes with the process
        if self.owner:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass  # unlinked after the handshake, as it should be


def _buffer(shm: SharedMemory) -> memoryview:
    if shm.buf is None:
        raise ValueError(f"shared memory {shm.name} is closed")
    return shm.buf


def _all_or_none(values: Sequence[object]) -> list[bytes] | None:
    replies = [maybe_bytes(v) for v in values]
    return None if any(r is None for r in replies) else [r for r in replies if r is not None]


def _wait_for(look: Callable[[], T | None], waiting: Callable[[], None], nap_s: float = _NAP_S) -> T:
    """look() until it gives something other than None: spinning at first, then napping `nap_s` between
    looks (at least _LONG_NAP_S once the wait is long); `waiting()` about every 10 ms."""
    began = time.perf_counter()
    next_call = began + 0.01
    while True:
        seen = look()
        if seen is not None:
            return seen
        now = time.perf_counter()
        if now >= next_call:
            waiting()
            next_call = now + 0.01
        waited = now - began
        if waited > _LONG_WAIT_S:
            time.sleep(max(nap_s, _LONG_NAP_S))
        elif waited > _SPIN_S:
            time.sleep(nap_s)
