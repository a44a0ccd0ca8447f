"""Job specs (`zdl.spec.JobSpec`) from Python settings: `TrainConfig`'s names (as `zdl train`'s flags), plus
`dataset` and `blocks`.

`client.submit(learning_rate=0.5, hidden_size=100)` and `client.submit(TrainConfig(...))` both become the
body `POST /v1/jobs` takes; a sweep varies settings by the same names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from zdl.spec import JobSpec
from zdl.train import TrainConfig

#: Where each setting goes in a job body (`{"model": {...}, "dataset": ..., "training": {...}, "gradient": {...}}`).
#: The sweeps API names the settings it varies the same way (api/sweep_models.py imports this).
SETTING_PATHS: dict[str, tuple[str, ...]] = {
    "hidden_size": ("model", "hidden_size"), "weight_init_std": ("model", "weight_init_std"),
    "iters": ("training", "iters"), "batch_size": ("training", "batch_size"),
    "learning_rate": ("training", "learning_rate"), "seed": ("training", "seed"),
    "gradient": ("gradient", "method"), "blocks": ("gradient", "blocks"), "dataset": ("dataset",),
}
#: The settings a sweep may vary (not the length of a run, not how its gradient is split).
SWEEP_SETTINGS = ("learning_rate", "hidden_size", "batch_size", "weight_init_std", "seed", "gradient", "dataset")
_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))


def check_names(settings: Mapping[str, Any], allowed: tuple[str, ...] | None = None, what: str = "setting") -> None:
    """TypeError naming an unknown setting and the known ones (a typo must not silently train the default)."""
    known = allowed if allowed is not None else tuple(SETTING_PATHS)
    unknown = [name for name in settings if name not in known]
    if unknown:
        raise TypeError(f"unknown {what} {unknown[0]!r}; the known ones are {', '.join(known)}")


def job_spec(config: TrainConfig | None = None, **settings: Any) -> JobSpec:
    """The job spec of `config` (default: the book's run) with `settings` on top; `dataset` defaults to mnist
    and `blocks` to "auto". Values are checked by TrainConfig and JobSpec here, limits by the service."""
    check_names(settings)
    plain_settings = {name: plain(value) for name, value in settings.items()}
    config = dataclasses.replace(config or TrainConfig(),
                                 **{k: v for k, v in plain_settings.items() if k in _CONFIG_FIELDS})
    return JobSpec.of(config, plain_settings.get("dataset", "mnist"), plain_settings.get("blocks", "auto"))


def job_body(config: TrainConfig | None = None, **settings: Any) -> dict[str, Any]:
    """The body `POST /v1/jobs` takes for `job_spec(config, **settings)` (the sizes the data set sets left out)."""
    return job_spec(config, **settings).model_dump(mode="json", exclude_none=True)


def put(body: dict[str, Any], name: str, value: Any) -> None:
    """Set the setting `name` in a job body (its sections must exist)."""
    *parents, leaf = SETTING_PATHS[name]
    target = body
    for part in parents:
        target = target[part]
    target[leaf] = value


def plain(value: Any) -> Any:
    """A NumPy scalar (np.float64, np.int64 from np.logspace, np.arange) as the Python number JSON can carry."""
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "shape", None) == () else value


def describe(params: Mapping[str, Any]) -> str:
    """A run's varied settings as a short label: "learning_rate=0.1, seed=1" (distinct runs, distinct labels)."""
    return ", ".join(f"{name}={value}" for name, value in params.items())
