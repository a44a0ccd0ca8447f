"""The numerical-gradient engine: parameter blocks, three gradient methods, local parallel execution."""

from zdl.engine.blocks import PARAM_NAMES, Block, assemble, block_groups, param_shapes, partition
from zdl.engine.compute import METHODS, BlockGroup, block_gradient, blocks_gradient, gradient
from zdl.engine.cost import IterationCost, iteration_cost
from zdl.engine.kernel import kernel_name
from zdl.engine.warmup import warm_up

__all__ = [
    "METHODS",
    "IterationCost",
    "PARAM_NAMES",
    "Block",
    "BlockGroup",
    "assemble",
    "block_gradient",
    "block_groups",
    "blocks_gradient",
    "gradient",
    "iteration_cost",
    "kernel_name",
    "param_shapes",
    "partition",
    "warm_up",
]
