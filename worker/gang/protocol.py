"""Gangs: a job's steps computed by replicas on the block workers, which exchange gradient parts directly.

When one iteration's compute is small (the book's is about 2 ms), the fan-out (worker/fanout/gradient.py) spends
more time moving parameters and batches through the coordinator than computing. A gang instead runs G
replicas of the job's own training loop (`zdl.train.Trainer`), one per block worker, for a turn: every
replica draws the same batch from the same seed, computes its block group `zdl.engine.block_groups(shapes,
G)[r]`, sends that part of the gradient to the others and takes theirs, assembles the whole gradient and
applies the same update. Parameters stay in the replicas; a step costs one exchange of parts, nothing
else. The replicas' weights are bit-identical to a local run's, since each entry is computed by the same
engine whatever the grouping, and the loop is the same loop.

Replica 0 speaks for the gang: it decides when the turn ends (the job's turn on the workers is over and
other work waits, the job was cancelled, or it is done) and says so in its part of that step, so that all
replicas stop after the same step; and it reports each step's loss (and, at checkpoint steps, the state)
to the coordinator, which keeps the job's record exactly as it does for a fan-out job. A turn that loses a
replica is abandoned, and the coordinator starts again from the last checkpoint.

Keys of one turn (step Redis, expiring), under `<p>:gang:<job>:<run>.<turn>`:
    :state      string  the state the turn starts from (absent: the job's first step)
    :in:<r>     list    replica r's inbox: the other replicas' parts, step after step
    :progress   list    replica 0's reports to the coordinator: steps, checkpoint states, the end
    :loops      hash    replica -> "queued:<unix time>" until it starts, then its worker; replica 0's is "ended"
                        once its task returns (after its last report: a turn not ended by then never will be)
    :abort      string  set by the coordinator when it abandons the turn
    :shm        hash    the replicas' handshake for parts through shared memory (worker/gang/shared_parts.py)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.settings import Settings
from zdl.spec import JobSpec


@dataclass(frozen=True)
class GangKeys:
    prefix: str

    @classmethod
    def of(cls, settings: Settings, job_id: str, run: int, turn: int) -> GangKeys:
        return cls(settings.key("gang", job_id, f"{run}.{turn}"))

    @property
    def state(self) -> str:
        return f"{self.prefix}:state"

    def inbox(self, replica: int) -> str:
        return f"{self.prefix}:in:{replica}"

    @property
    def progress(self) -> str:
        return f"{self.prefix}:progress"

    @property
    def loops(self) -> str:
        return f"{self.prefix}:loops"

    @property
    def abort(self) -> str:
        return f"{self.prefix}:abort"

    @property
    def shm(self) -> str:
        return f"{self.prefix}:shm"

    def all(self, replicas: int) -> list[str]:
        return [self.state, self.progress, self.loops, self.abort, self.shm, *(self.inbox(r) for r in range(replicas))]


@dataclass(frozen=True)
class ReplicaStart:
    """What a replica's Celery message carries (JSON): the job, its run and turn, which replica of how many."""

    job_id: str
    owner: str
    run: int
    turn: int
    replica: int
    replicas: int
    prefix: str
    spec: JobSpec

    @property
    def keys(self) -> GangKeys:
        return GangKeys(self.prefix)

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "owner": self.owner, "run": self.run, "turn": self.turn,
                "replica": self.replica, "replicas": self.replicas, "prefix": self.prefix,
                "spec": self.spec.model_dump(mode="json")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplicaStart:
        return cls(str(data["job_id"]), str(data["owner"]), int(data["run"]), int(data["turn"]),
                   int(data["replica"]), int(data["replicas"]), str(data["prefix"]),
                   JobSpec.model_validate(data["spec"]))
