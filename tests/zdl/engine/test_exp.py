"""The engine's exp for tiny exponents: as close to exp as np.exp is, and element by element."""

from __future__ import annotations

import numpy as np

from zdl.engine.incremental import SMALL_EXPONENT, exp_near_zero


def ulps_apart(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b) / np.spacing(np.maximum(np.abs(a), np.abs(b)))


def test_within_one_ulp_of_exp_on_both_sides_of_the_threshold() -> None:
    rng = np.random.default_rng(0)
    u = np.concatenate([
        rng.uniform(-SMALL_EXPONENT, SMALL_EXPONENT, 100_000),         # the polynomial
        rng.normal(scale=1e-6, size=10_000),                            # typical dz * W2
        np.geomspace(1e-300, SMALL_EXPONENT, 1_000) * rng.choice([-1, 1], 1_000),
        rng.uniform(-5, 5, 10_000),                                     # np.exp
        [0.0, -0.0, SMALL_EXPONENT, -SMALL_EXPONENT, np.nextafter(SMALL_EXPONENT, 0)],
    ])
    got = u.copy()
    exp_near_zero(got)
    # np.exp is itself within an ulp of exp; the polynomial is within about half an ulp of it
    assert ulps_apart(got, np.exp(u)).max() <= 1.0
    large = np.abs(u) >= SMALL_EXPONENT
    assert np.array_equal(got[large], np.exp(u[large]))


def test_special_values_are_those_of_exp() -> None:
    u = np.array([np.nan, np.inf, -np.inf, 800.0, -800.0])
    got = u.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        exp_near_zero(got)
        assert np.array_equal(got, np.exp(u), equal_nan=True)


def test_each_result_depends_on_its_own_element_alone() -> None:
    rng = np.random.default_rng(1)
    u = rng.normal(scale=3e-4, size=(10, 64, 50))
    u[0, 0, 0] = 2.0  # one large exponent in the array must not change anyone else's bits
    whole = u.copy()
    exp_near_zero(whole)
    for index in (np.s_[:, :7], np.s_[3:, 20:, 11:], np.s_[0, 0, 1:]):
        alone = u[index].copy()
        exp_near_zero(alone)
        assert alone.tobytes() == whole[index].tobytes()
