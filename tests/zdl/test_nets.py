"""zdl.nets against an independent autograd implementation of the same loss, and the book's gradient check.

The loss has the book's 1e-7 inside the log. `TwoLayerNet.gradient` (backprop) is its exact gradient: it keeps
the factor y_t / (y_t + 1e-7) that the book's backprop drops, so it agrees with autograd of the loss *with*
the 1e-7 to rounding (about 1e-15 relative) and differs from the book's version, the gradient of the loss
without it, by about 1e-6 relative when the target probability is ~0.1. `numerical_gradient` approximates
the same loss by central differences (h = 1e-4), to about 1e-9 relative here.
"""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

from zdl import nets
from zdl.nets import SimpleNet, TwoLayerNet

KEYS = ("W1", "b1", "W2", "b2")
DELTA = 1e-7
#: backprop against autograd, max-norm relative error: at most 9.3e-16 measured over CASES and the book's
#: setup (rounding only: autograd's tanh-form sigmoid and its softmax differ from ours in the last bits).
#: Dropping the 1e-7 from the log, as the book's backprop does, moves it by at least 1.5e-7.
EXACT = 5e-15
#: numerical_gradient against autograd, max-norm relative error: at most 2.0e-9 measured (the central
#: difference's h^2 term, h = 1e-4, and rounding of L(w+h) - L(w-h)); below the 1e-7's effect, ~1e-6.
CENTRAL_DIFFERENCE = 1e-8

# The book's SimpleNet example (section 4.4.2): W as printed, x = [0.6, 0.9], t = [0, 0, 1].
BOOK_W = [[0.47355232, 0.9977393, 0.84668094], [0.85557411, 0.03563661, 0.69422093]]
BOOK_X = [0.6, 0.9]
BOOK_T = [0, 0, 1]


# --- an independent implementation: autograd over a loss written here ------------------------------------

def anp_loss(params, x, onehot, delta):
    """Mean cross-entropy of input -> affine -> sigmoid -> affine -> softmax, written with autograd.numpy."""
    W1, b1, W2, b2 = params
    h = 0.5 * (anp.tanh(0.5 * (anp.dot(x, W1) + b1)) + 1.0)  # sigmoid, in its tanh form
    a = anp.dot(h, W2) + b2
    p_target = anp.sum(onehot * anp.exp(a), axis=1) / anp.sum(anp.exp(a), axis=1)
    return -anp.mean(anp.log(p_target + delta))


def autograd_gradient(net: TwoLayerNet, x, labels, delta: float) -> dict[str, np.ndarray]:
    onehot = np.eye(net.sizes[2])[np.asarray(labels)]
    grads = autograd.grad(anp_loss)([net.params[k] for k in KEYS], np.asarray(x, dtype=np.float64), onehot, delta)
    return dict(zip(KEYS, grads, strict=True))


def simple_net_autograd(W, x, t):
    def loss(w):
        a = anp.dot(np.asarray(x, dtype=np.float64), w)
        return -anp.log(anp.exp(a[t]) / anp.sum(anp.exp(a)) + DELTA)

    return autograd.grad(loss)(np.asarray(W, dtype=np.float64))


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / max |expected| (the max-norm relative error)."""
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def small_case(sizes=(6, 5, 3), batch=4, seed=0, weight_init_std=0.5):
    """A net and a batch of continuous inputs with labels; weights large enough that nothing is near zero."""
    rng = np.random.default_rng(seed)
    net = TwoLayerNet(*sizes, weight_init_std, seed=seed)
    net.params["b1"] = rng.normal(scale=0.1, size=sizes[1])
    net.params["b2"] = rng.normal(scale=0.1, size=sizes[2])
    return net, rng.random((batch, sizes[0])), rng.integers(0, sizes[2], batch)


@pytest.fixture(scope="module", params=["synthetic", "mnist"])
def book_check(request, dataset_factory):
    """The book's gradient-check setup: 784-50-10, weight_init_std 0.01, 3 MNIST-like samples; gradients once."""
    if request.param == "synthetic":
        (x, t), _ = dataset_factory(n_train=3, n_test=1, side=28, seed=7)
    else:
        (x, t), _ = request.getfixturevalue("mnist_data")
        first = [int(np.flatnonzero(t == digit)[0]) for digit in (0, 1, 2)]  # three different digits
        x, t = x[first], t[first]
    net = TwoLayerNet(784, 50, 10, seed=0)
    x = x.astype(np.float64)
    return {
        "net": net,
        "x": x,
        "t": t,
        "numerical": net.numerical_gradient(x, t),
        "backprop": net.gradient(x, t),
        "autograd": autograd_gradient(net, x, t, DELTA),
        "autograd_without_delta": autograd_gradient(net, x, t, 0.0),  # the gradient the book's backprop computes
    }


# --- SimpleNet ------------------------------------------------------------------------------------------

def test_simple_net_book_example():
    net = SimpleNet(seed=0)
    assert net.W.shape == (2, 3)
    net.W = np.array(BOOK_W)
    np.testing.assert_allclose(net.predict(BOOK_X), [1.05414809, 0.63071653, 1.1328074], atol=5e-9)
    a = np.array(BOOK_X) @ np.array(BOOK_W)
    expected_loss = -np.log(np.exp(a[2]) / np.exp(a).sum() + DELTA)
    assert net.loss(BOOK_X, BOOK_T) == pytest.approx(expected_loss, rel=1e-12)
    assert net.loss(BOOK_X, 2) == net.loss(BOOK_X, BOOK_T)
    # The book prints 0.92806853663411326 and the dW below; it left out the 1e-7 (a ~3e-7 difference here).
    assert net.loss(BOOK_X, BOOK_T) == pytest.approx(0.92806853663411326, abs=3e-7)
    dW = net.numerical_gradient(BOOK_X, BOOK_T)
    np.testing.assert_allclose(dW, [[0.21924763, 0.14356247, -0.36281009], [0.32887144, 0.2153437, -0.54421514]],
                               atol=2e-7)
    # Central differences against autograd: 5.3e-10 relative measured (h^2 term and rounding).
    np.testing.assert_allclose(dW, simple_net_autograd(BOOK_W, BOOK_X, 2), rtol=2e-9, atol=0)


def test_the_books_simplenet_code_runs_as_printed():
    """ch04/gradient_simplenet.py: `simpleNet()`, then `numerical_gradient(f, net.W)` with f closing over net."""
    from zdl import numerical_gradient, simpleNet

    net = simpleNet()
    net.W = np.array(BOOK_W)

    def f(W):
        return net.loss(BOOK_X, BOOK_T)

    dW = numerical_gradient(f, net.W)
    np.testing.assert_allclose(dW, simple_net_autograd(BOOK_W, BOOK_X, 2), rtol=2e-9, atol=0)
    np.testing.assert_array_equal(net.W, BOOK_W)  # every entry put back exactly


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_simple_net_gradient_matches_autograd(seed):
    rng = np.random.default_rng(seed)
    net, x, t = SimpleNet(seed=seed), rng.normal(size=2), int(rng.integers(0, 3))
    # At most 9.1e-11 measured over these seeds (central differences, h = 1e-4).
    assert relative_error(net.numerical_gradient(x, t), simple_net_autograd(net.W, x, t)) <= 5e-10


# --- TwoLayerNet basics ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sizes", [(784, 100, 10), (784, 50, 10), (6, 5, 3), (1, 1, 1)])
def test_param_shapes(sizes):
    i, h, o = sizes
    net = TwoLayerNet(*sizes)
    assert {k: v.shape for k, v in net.params.items()} == {"W1": (i, h), "b1": (h,), "W2": (h, o), "b2": (o,)}
    assert all(net.params[k].dtype == np.float64 for k in KEYS)
    assert not net.params["b1"].any() and not net.params["b2"].any()
    assert net.sizes == sizes


def test_weight_init_std():
    net = TwoLayerNet(784, 100, 10, weight_init_std=0.01, seed=0)
    assert np.std(net.params["W1"]) == pytest.approx(0.01, rel=0.02)  # 78,400 draws
    assert abs(np.mean(net.params["W1"])) < 1e-4


@pytest.mark.parametrize("sizes", [(0, 5, 3), (6, -1, 3), (6, 5, 0), (6, 2.5, 3)])
def test_bad_sizes_rejected(sizes):
    with pytest.raises(ValueError, match="positive integer"):
        TwoLayerNet(*sizes)


def test_predict_matches_independent_forward_and_rows_sum_to_one():
    net, x, _ = small_case(batch=7)
    y = net.predict(x)
    h = 1 / (1 + np.exp(-(x @ net.params["W1"] + net.params["b1"])))
    a = h @ net.params["W2"] + net.params["b2"]
    np.testing.assert_allclose(y, np.exp(a) / np.exp(a).sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-12)
    assert net.predict(x[0]).shape == (1, 3)


def test_loss_and_accuracy_match_independent_formulas():
    net, x, t = small_case(batch=50, seed=3)
    onehot = np.eye(3)[t]
    assert net.loss(x, t) == pytest.approx(float(anp_loss([net.params[k] for k in KEYS], x, onehot, DELTA)), rel=1e-12)
    y = net.predict(x)
    assert net.accuracy(x, t) == sum(int(np.argmax(row) == label) for row, label in zip(y, t, strict=True)) / 50


@pytest.mark.parametrize("chunk", [1, 7, 1000, 5000])
def test_accuracy_in_chunks_counts_every_sample_once(monkeypatch, dataset_factory, chunk):
    """accuracy() predicts ACCURACY_CHUNK rows at a time: the count over 2,347 float32 images (a partial last
    chunk for every size here) is the one a single prediction of all of them gives."""
    (x, t), _ = dataset_factory(n_train=2347, n_test=1, side=28, seed=5)
    net = TwoLayerNet(784, 30, 10, weight_init_std=0.1, seed=1)
    predicted = np.argmax(net.predict(x), axis=1)
    t = np.where(np.random.default_rng(2).random(len(t)) < 0.5, predicted, t)  # ~55% right: a shifted chunk shows
    expected = np.count_nonzero(predicted == t) / len(t)
    monkeypatch.setattr(nets, "ACCURACY_CHUNK", chunk)
    assert net.accuracy(x, t) == expected and 0.5 < expected < 0.6


def test_seed_reproducibility():
    a, b, c = TwoLayerNet(20, 7, 4, seed=5), TwoLayerNet(20, 7, 4, seed=5), TwoLayerNet(20, 7, 4, seed=6)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in KEYS)
    assert not np.array_equal(a.params["W1"], c.params["W1"]) and not np.array_equal(a.params["W2"], c.params["W2"])


def test_from_params_round_trip_copies():
    net, x, _ = small_case()
    copy = TwoLayerNet.from_params(net.params)
    assert copy.sizes == net.sizes
    assert all(np.array_equal(copy.params[k], net.params[k]) for k in KEYS)
    np.testing.assert_array_equal(copy.predict(x), net.predict(x))
    copy.params["W1"][0, 0] += 1.0
    assert copy.params["W1"][0, 0] != net.params["W1"][0, 0]


def good_params():
    return {"W1": np.zeros((3, 5)), "b1": np.zeros(5), "W2": np.zeros((5, 2)), "b2": np.zeros(2)}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"b2": None}, r"missing.*b2"),
        ({"b1": np.zeros(4)}, r"b1.*\(4,\).*\(5,\)"),
        ({"W2": np.zeros((4, 2))}, r"W2.*\(4, 2\).*\(5, 2\)"),
        ({"b2": np.zeros(3)}, r"b2.*\(3,\).*\(2,\)"),
        ({"W2": np.zeros(5)}, r"W2.*\(5,\)"),
        ({"W1": np.zeros(5)}, r"W1.*\(5,\)"),
    ],
)
def test_from_params_rejects_bad_params(change, match):
    params = good_params()
    for key, value in change.items():
        if value is None:
            del params[key]
        else:
            params[key] = value
    with pytest.raises(ValueError, match=match):
        TwoLayerNet.from_params(params)


# --- bad input: the classic notebook bugs -----------------------------------------------------------------

METHODS = ["predict", "loss", "accuracy", "gradient", "numerical_gradient"]


def call(net: TwoLayerNet, method: str, x, t):
    return net.predict(x) if method == "predict" else getattr(net, method)(x, t)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("shape", "match"),
    [((2, 784), r"\(N, 10\).*\(2, 784\)"), ((784,), r"\(N, 10\).*\(784,\)"),
     ((2, 1, 28, 28), r"\(N, 10\).*\(2, 1, 28, 28\)")],  # unflattened images: load_mnist(flatten=False)
)
def test_input_width_mismatch_names_both_shapes(method, shape, match):
    net = TwoLayerNet(input_size=10, hidden_size=5, output_size=10)
    with pytest.raises(ValueError, match=match):
        call(net, method, np.zeros(shape), np.zeros(shape[0] if len(shape) > 1 else 1, dtype=int))


@pytest.mark.parametrize("method", METHODS[1:])
@pytest.mark.parametrize(
    ("t", "match"),
    [
        ([0, 10], r"\[0, 9\].*10"),
        ([-1, 3], r"\[0, 9\].*-1"),
        ([0, 1, 2], r"\(2,\).*\(3,\)"),
        (np.zeros((2, 1)), r"\(2, 10\).*\(2, 1\)"),  # a column of labels is not one-hot
        (np.eye(10)[:3], r"\(2, 10\).*\(3, 10\)"),
        ([0.5, 1], "integer"),
    ],
)
def test_bad_targets_raise_value_error(method, t, match):
    net = TwoLayerNet(4, 3, 10, seed=0)
    with pytest.raises(ValueError, match=match):
        call(net, method, np.ones((2, 4)), t)


def test_one_hot_and_index_targets_agree():
    net, x, t = small_case(batch=6, seed=4)
    onehot = np.eye(3, dtype=np.uint8)[t]
    assert net.loss(x, onehot) == net.loss(x, t)
    assert net.accuracy(x, onehot) == net.accuracy(x, t)
    for grad in ("gradient", "numerical_gradient"):
        a, b = getattr(net, grad)(x, onehot), getattr(net, grad)(x, t)
        assert all(np.array_equal(a[k], b[k]) for k in KEYS), grad


def test_numerical_gradient_leaves_params_untouched():
    net, x, t = small_case()
    before = {k: v.copy() for k, v in net.params.items()}
    net.numerical_gradient(x, t)
    assert all(net.params[k].tobytes() == before[k].tobytes() for k in KEYS)


# --- gradients against autograd ---------------------------------------------------------------------------

CASES = [dict(), dict(sizes=(6, 5, 3), batch=1, seed=1), dict(sizes=(10, 4, 2), batch=5, seed=2),
         dict(sizes=(12, 8, 10), batch=3, seed=3, weight_init_std=0.01)]


@pytest.mark.parametrize("case", CASES)
def test_numerical_gradient_matches_autograd(case):
    net, x, t = small_case(**case)
    numerical, exact = net.numerical_gradient(x, t), autograd_gradient(net, x, t, DELTA)
    for key in KEYS:
        assert relative_error(numerical[key], exact[key]) <= CENTRAL_DIFFERENCE, key


@pytest.mark.parametrize("case", [*CASES, dict(sizes=(784, 50, 10), batch=100, seed=4, weight_init_std=0.01)])
def test_backprop_is_the_exact_gradient(case):
    net, x, t = small_case(**case)
    backprop, exact = net.gradient(x, t), autograd_gradient(net, x, t, DELTA)
    for key in KEYS:
        assert relative_error(backprop[key], exact[key]) <= EXACT, key


@pytest.mark.parametrize("key", KEYS)
def test_book_setup_numerical_gradient_matches_autograd(book_check, key):
    assert relative_error(book_check["numerical"][key], book_check["autograd"][key]) <= CENTRAL_DIFFERENCE


@pytest.mark.parametrize("key", KEYS)
def test_book_setup_backprop_keeps_the_delta_the_book_drops(book_check, key):
    """Backprop is the gradient of the loss with its 1e-7, not of the loss without it (the book's backprop)."""
    backprop = book_check["backprop"][key]
    assert relative_error(backprop, book_check["autograd"][key]) <= EXACT
    assert relative_error(backprop, book_check["autograd_without_delta"][key]) >= 1e-7  # 9.8e-7 or more measured


@pytest.mark.parametrize("key", KEYS)
def test_book_gradient_check(book_check, key):
    """The book's gradient check (numerical vs backprop), asserted as max |difference| <= 5e-10.

    At most 1.3e-10 measured (b2; central differences). With the book's backprop, which drops the 1e-7 from
    the log, the difference would be 2.6e-7 on b2 and 1.5e-7 on W2.
    """
    diff = np.abs(book_check["numerical"][key] - book_check["backprop"][key]).max()
    assert diff <= 5e-10, f"{key}: max |numerical - backprop| = {diff:.3g}"
