"""The numerical-gradient engine: parameter blocks, three gradient methods, local parallel execution, and the
numerical gradient taken apart into the analytic one and its truncation terms (`quotient_terms`)."""

from zdl.engine.blocks import PARAM_NAMES, Block, assemble, block_groups, param_shapes, partition
from zdl.engine.closed_form import QuotientTerms, past_bound, quotient_terms, terms_table
from zdl.engine.compute import METHODS, BlockGroup, block_gradient, blocks_gradient, gradient
from zdl.engine.cost import IterationCost, iteration_cost
from zdl.engine.kernel import kernel_name
from zdl.engine.warmup import warm_up

__all__ = [
    "METHODS",
    "IterationCost",
    "PARAM_NAMES",
    "QuotientTerms",
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
    "past_bound",
    "quotient_terms",
    "terms_table",
    "warm_up",
]
