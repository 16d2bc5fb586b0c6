"""Pruning in four parts: importance (layer -> scores), selection (scores, target -> mask),
application (mask -> smaller model / real formats: `compiled`) and schedule (step -> target sparsity).
Dynamic sparse training (SET, RigL: `sparse_train`) trains sparse from scratch instead.

`compile` (the old name of `compiled`, which shadows the builtin) is deprecated."""

from .api import PruneResult, compile, compiled, prune, prune_step  # noqa: F401 (compile: deprecated, not in __all__)
from .dynamic import DISTRIBUTIONS, METHODS, DynamicSparsity, SparseTrainingResult, layer_densities, sparse_train
from .granularity import NM, Block, Granularity, Unstructured, Units, make_granularity
from .importance import (CRITERIA, OBD, SNIP, ActivationAware, BNScale, Frequency, Importance, Magnitude, Movement,
                         RandomScore, SynFlow, Taylor, make_importance, slimming_penalty)
from .lottery import lottery_ticket, reinitialize
from .masks import apply_masks, layer_mask, prunable_layers
from .schedule import iterative_targets, polynomial_sparsity
from .selection import select_masks
from .sensitivity import allocate, sensitivity_scan
from .trace import trace_shapes

__all__ = [
    "prune", "prune_step", "compiled", "PruneResult", "lottery_ticket", "reinitialize",
    "sparse_train", "DynamicSparsity", "SparseTrainingResult", "layer_densities", "METHODS", "DISTRIBUTIONS",
    "Importance", "Magnitude", "RandomScore", "Taylor", "SNIP", "SynFlow", "Movement", "OBD", "BNScale",
    "ActivationAware", "Frequency", "CRITERIA", "make_importance", "slimming_penalty",
    "Granularity", "Unstructured", "Block", "NM", "Units", "make_granularity",
    "select_masks", "apply_masks", "layer_mask", "prunable_layers",
    "iterative_targets", "polynomial_sparsity", "trace_shapes", "sensitivity_scan", "allocate",
]
