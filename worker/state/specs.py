"""A job's spec (as the API stores it) in zdl's terms: the coordinator and a gang's replicas read it alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zdl.train import TrainConfig


def train_config(spec: Mapping[str, Any]) -> TrainConfig:
    """The zdl TrainConfig a job spec asks for (a ValueError or KeyError if it is malformed)."""
    model, training = spec["model"], spec["training"]
    return TrainConfig(
        hidden_size=model["hidden_size"], weight_init_std=model["weight_init_std"], iters=training["iters"],
        batch_size=training["batch_size"], learning_rate=training["learning_rate"], seed=training["seed"],
        gradient=spec["gradient"]["method"],
    )
