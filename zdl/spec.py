"""A training job's spec: the one typed description of a run that the client builds, the service's API
validates, its planner estimates from and its workers run. Defaults are the book's run (section 4.5).

As JSON it is the body `POST /v1/jobs` takes: `{"model": {...}, "dataset": ..., "training": {...},
"gradient": {...}}`, every field but `dataset` optional. Unknown fields are errors: a typo such as
`hiden_size` must not silently train the default.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from zdl.train import TrainConfig

DatasetName = Literal["mnist", "fashion-mnist"]  # zdl.datasets.DATASETS (a test keeps them equal)
MethodName = Literal["numerical", "numerical-reference", "backprop"]  # zdl.engine.METHODS


class Strict(BaseModel):
    """Unknown fields are errors: a typo such as `hiden_size` must not silently train the default."""

    model_config = ConfigDict(extra="forbid")


# The net's sizes (TwoLayerNet's arguments); input and output sizes come from the data set.
class ModelSpec(Strict):
    hidden_size: int = Field(default=50, ge=1, description="hidden units")
    weight_init_std: float = Field(default=0.01, ge=0, allow_inf_nan=False,
                                   description="scale of the initial weights")
    input_size: int | None = Field(default=None, ge=1, description="optional; must match the dataset (784)")
    output_size: int | None = Field(default=None, ge=1, description="optional; must match the dataset (10)")


# The training loop's settings (`zdl train`'s flags of the same names).
class TrainingSpec(Strict):
    iters: int = Field(default=10000, ge=1, description="iterations (mini-batches)")
    batch_size: int = Field(default=100, ge=1)
    learning_rate: float = Field(default=0.1, gt=0, allow_inf_nan=False)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)


# How each step's gradient is computed, and into how many block groups the service cuts it.
class GradientSpec(Strict):
    method: MethodName = Field(default="numerical", description="numerical (fast exact), numerical-reference "
                                                                "(the book's procedure) or backprop")
    blocks: int | Literal["auto"] = Field(default="auto",
                                          description="block groups per step; auto: one per live block worker")

    @field_validator("blocks", mode="before")
    @classmethod
    def _positive_or_auto(cls, value: Any) -> Any:
        """One clear message instead of one per member of the union."""
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError(f'must be a positive integer or "auto", got {value!r}')


class JobSpec(Strict):
    """The book's run is `{"dataset": "mnist"}`: every other field has the book's default."""

    model: ModelSpec = Field(default_factory=ModelSpec)
    dataset: DatasetName
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    gradient: GradientSpec = Field(default_factory=GradientSpec)

    def train_config(self) -> TrainConfig:
        """The run in `zdl.train`'s terms: the same loop `zdl train` runs, with these settings."""
        model, training = self.model, self.training
        return TrainConfig(hidden_size=model.hidden_size, weight_init_std=model.weight_init_std,
                           iters=training.iters, batch_size=training.batch_size,
                           learning_rate=training.learning_rate, seed=training.seed, gradient=self.gradient.method)

    @classmethod
    def of(cls, config: TrainConfig, dataset: str = "mnist", blocks: int | str = "auto") -> JobSpec:
        """The spec of `zdl train`'s run `config` on `dataset`, its gradient cut into `blocks` groups."""
        return cls.model_validate({
            "model": {"hidden_size": config.hidden_size, "weight_init_std": config.weight_init_std},
            "dataset": dataset,
            "training": {"iters": config.iters, "batch_size": config.batch_size,
                         "learning_rate": config.learning_rate, "seed": config.seed},
            "gradient": {"method": config.gradient, "blocks": blocks},
        })
