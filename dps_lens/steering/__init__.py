"""Steered decoding: Differential Preference Steering and the baselines, one ``generate``."""

from dps_lens.steering.generate import Generation, generate
from dps_lens.steering.layer_contrast import LayerContrast
from dps_lens.steering.methods import (
    MethodConfig,
    Steering,
    SteeringContext,
    amplify,
    attention_emphasis,
    cad,
    decore,
    dola,
    dps,
    get_method,
    head_shift,
    method_config,
    method_names,
    no_profile,
    plain,
    random_heads,
    reference,
    register_method,
)
from dps_lens.steering.rules import ContrastRule
from dps_lens.steering.sampling import Sampling

__all__ = [
    "ContrastRule",
    "Generation",
    "LayerContrast",
    "MethodConfig",
    "Sampling",
    "Steering",
    "SteeringContext",
    "amplify",
    "attention_emphasis",
    "cad",
    "decore",
    "dola",
    "dps",
    "generate",
    "get_method",
    "head_shift",
    "method_config",
    "method_names",
    "no_profile",
    "plain",
    "random_heads",
    "reference",
    "register_method",
]
