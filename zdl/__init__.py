"""zdl: chapter 4 of "Deep Learning from Scratch" as a library, with a fast exact numerical-gradient engine."""

from zdl.functions import cross_entropy_error, sigmoid, softmax, sum_squared_error
from zdl.gradient import gradient_descent, numerical_diff, numerical_gradient
from zdl.nets import SimpleNet, TwoLayerNet, simpleNet

__all__ = [
    "SimpleNet",
    "TwoLayerNet",
    "cross_entropy_error",
    "gradient_descent",
    "numerical_diff",
    "numerical_gradient",
    "sigmoid",
    "simpleNet",
    "softmax",
    "sum_squared_error",
]
__version__ = "0.1.0"
