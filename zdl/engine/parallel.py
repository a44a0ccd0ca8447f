"""Local parallel executor: gradient blocks computed in N worker processes.

Parameters, batch and gradient live in one shared-memory segment; each iteration only a few bytes (the
batch size) cross the pipes, never the arrays. Each worker computes its fixed group of blocks, so the
result is bit-identical to the single-process engine.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

import numpy as np
from numpy.typing import ArrayLike

from zdl.engine.blocks import PARAM_NAMES, Block, block_groups
from zdl.engine.compute import BlockGroup, check_method
from zdl.engine.inputs import Params, check_batch, check_params
from zdl.engine.warmup import warm_up

#: Each worker is single-threaded: N processes on N cores, no BLAS oversubscription.
_SINGLE_THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


class SharedArrays:
    """Named views into one shared-memory segment: params, gradient (float64), batch x and labels."""

    def __init__(self, shm: SharedMemory, sizes: tuple[int, int, int], max_batch: int) -> None:
        input_size, hidden, output = sizes
        shapes = {"W1": (input_size, hidden), "b1": (hidden,), "W2": (hidden, output), "b2": (output,)}
        self.shapes = shapes
        self.shm = shm
        offset = 0
        self.params: Params = {}
        self.grad: Params = {}
        for target in (self.params, self.grad):
            for name in PARAM_NAMES:
                count = math.prod(shapes[name])
                target[name] = np.ndarray(shapes[name], np.float64, shm.buf, offset)
                offset += 8 * count
        self.x = np.ndarray((max_batch, input_size), np.float64, shm.buf, offset)
        offset += 8 * max_batch * input_size
        self.labels = np.ndarray((max_batch,), np.intp, shm.buf, offset)

    @staticmethod
    def nbytes(sizes: tuple[int, int, int], max_batch: int) -> int:
        input_size, hidden, output = sizes
        n_params = input_size * hidden + hidden + hidden * output + output
        return 8 * (2 * n_params + max_batch * input_size + max_batch)


def worker_main(shm_name: str, sizes: tuple[int, int, int], max_batch: int) -> None:
    """Worker loop over stdin/stdout JSON lines: {method, n, blocks} in, {"ok": seconds} or {"error": ...} out."""
    shm = SharedMemory(name=shm_name)
    # Python < 3.13 would unlink the parent's segment when this process exits; the parent owns it.
    resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    arrays = SharedArrays(shm, sizes, max_batch)
    group: BlockGroup | None = None
    warm_up()  # compile or load the kernels now, not inside the first timed step
    try:
        for line in sys.stdin:
            request = json.loads(line)
            began = time.perf_counter()
            try:
                if "blocks" in request:  # sent once; later requests reuse them
                    group = BlockGroup([Block.from_dict(b) for b in request["blocks"]], arrays.shapes)
                if group is None:
                    raise ValueError("no blocks were sent before the first request")
                _compute(arrays, request["method"], int(request["n"]), group)
                reply: dict[str, object] = {"ok": time.perf_counter() - began}
            except Exception as exc:  # reported to the parent, which raises it with context
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    finally:
        del arrays
        shm.close()


def _compute(arrays: SharedArrays, method: str, n: int, group: BlockGroup) -> None:
    values = group.layout.split(group.gradient(arrays.params, arrays.x[:n], arrays.labels[:n], method))
    for block, block_values in zip(group.blocks, values, strict=True):
        arrays.grad[block.param].reshape(-1)[block.start : block.stop] = block_values


class ProcessPoolGradient:
    """A gradient function `(params, x, t) -> grads` backed by `workers` local processes.

    Use as a context manager (or call `close()`): it owns processes and a shared-memory segment.
    `method` is "numerical" or "numerical-reference"; `block_seconds` holds each worker's last compute time.
    """

    def __init__(self, sizes: tuple[int, int, int], workers: int, method: str = "numerical", max_batch: int = 100):
        if check_method(method) == "backprop":
            raise ValueError("ProcessPoolGradient: backprop is not split into blocks; use it in process")
        if int(workers) != workers or workers < 1:
            raise ValueError(f"ProcessPoolGradient: workers must be a positive integer, got {workers!r}")
        self.method, self.max_batch = method, max_batch
        self.shm = SharedMemory(create=True, size=SharedArrays.nbytes(sizes, max_batch))
        self.arrays = SharedArrays(self.shm, sizes, max_batch)
        self.groups = [[b.to_dict() for b in group] for group in block_groups(self.arrays.shapes, workers)]
        self.block_seconds = [0.0] * workers
        self._sent_blocks = False
        env = {**os.environ, **_SINGLE_THREAD_ENV}
        args = [sys.executable, "-m", "zdl.engine.parallel", self.shm.name, json.dumps([*sizes, max_batch])]
        self.procs = [
            subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
            for _ in range(workers)
        ]

    def __call__(self, params: Mapping[str, ArrayLike], x: ArrayLike, t: ArrayLike) -> Params:
        checked = check_params(params)
        x_arr, labels = check_batch(checked, x, t)
        n = x_arr.shape[0]
        if n > self.max_batch:
            raise ValueError(f"ProcessPoolGradient: batch of {n} exceeds max_batch={self.max_batch}")
        for name in PARAM_NAMES:
            if checked[name].shape != self.arrays.shapes[name]:
                raise ValueError(
                    f"ProcessPoolGradient: {name} has shape {checked[name].shape}, expected {self.arrays.shapes[name]}"
                )
            self.arrays.params[name][...] = checked[name]
        self.arrays.x[:n] = x_arr
        self.arrays.labels[:n] = labels
        for proc, group in zip(self.procs, self.groups, strict=True):
            assert proc.stdin is not None
            request: dict[str, object] = {"method": self.method, "n": n}
            if not self._sent_blocks:
                request["blocks"] = group
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
        self._sent_blocks = True
        errors = []
        for k, proc in enumerate(self.procs):
            assert proc.stdout is not None
            line = proc.stdout.readline()
            reply = json.loads(line) if line else {"error": f"worker exited with code {proc.poll()}"}
            if "ok" in reply:
                self.block_seconds[k] = float(reply["ok"])
            else:
                errors.append(reply["error"])
        if errors:
            raise RuntimeError(f"ProcessPoolGradient: a worker failed: {errors[0]}")
        return {name: self.arrays.grad[name].copy() for name in PARAM_NAMES}

    def close(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self.procs = []
        del self.arrays
        self.shm.close()
        self.shm.unlink()

    def __enter__(self) -> ProcessPoolGradient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    _sizes_and_batch = json.loads(sys.argv[2])
    worker_main(sys.argv[1], tuple(_sizes_and_batch[:3]), int(_sizes_and_batch[3]))
