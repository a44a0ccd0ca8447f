"""What a training run records: per-iteration loss, per-epoch accuracies, timings; JSON in and out."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class History:
    """The book's `train_loss_list`, `train_acc_list` and `test_acc_list`, plus when and how long.

    loss[i] is the mini-batch loss after iteration i's update; epoch_iters[k] is the iteration after
    which train_acc[k] and test_acc[k] were measured (the book evaluates when i % iter_per_epoch == 0).
    """

    loss: list[float] = field(default_factory=list)
    epoch_iters: list[int] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    wall_time: float = 0.0
    gradient_time: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    @classmethod
    def from_json(cls, text: str) -> History:
        return cls.from_dict(json.loads(text))
