"""Steered decoding: Differential Preference Steering and the baselines, one ``generate``."""

from dps_lens.steering.generate import Generation, generate
from dps_lens.steering.methods import Steering, cad, decore, dps, plain, random_heads, reference
from dps_lens.steering.rules import ContrastRule
from dps_lens.steering.sampling import Sampling

__all__ = [
    "ContrastRule",
    "Generation",
    "Sampling",
    "Steering",
    "cad",
    "decore",
    "dps",
    "generate",
    "plain",
    "random_heads",
    "reference",
]
