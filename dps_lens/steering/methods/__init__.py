"""Decoding methods, registered by name: ``plain``, ``dps``, ``dps_shared_prefill``, ``cad``,
``dola``, ``random_heads``, ``decore``, ``reference`` (and plugins such as the cluster-routed DPS).

Each is a config dataclass (``method_config(name, **params)``) whose ``build(context)`` gives the
``Steering`` that ``generate`` runs; ``plain()``, ``dps(model, heads, ...)`` and the other
functions build one directly.
"""

from dps_lens.steering.methods.base import (
    MASKED_RUNS,
    STEERING_METHODS,
    HeadsOrWeights,
    MethodConfig,
    Steering,
    SteeringContext,
    get_method,
    method_config,
    method_names,
    register_method,
)
from dps_lens.steering.methods.cad import CADConfig, cad
from dps_lens.steering.methods.decore import DecoreConfig, decore
from dps_lens.steering.methods.dola import DoLaConfig, dola
from dps_lens.steering.methods.dps import DPSConfig, DPSSharedPrefillConfig, dps
from dps_lens.steering.methods.plain import PlainConfig, plain
from dps_lens.steering.methods.random_heads import RandomHeadsConfig, random_heads
from dps_lens.steering.methods.reference import ReferenceConfig, reference

__all__ = [
    "MASKED_RUNS",
    "STEERING_METHODS",
    "CADConfig",
    "DPSConfig",
    "DPSSharedPrefillConfig",
    "DecoreConfig",
    "DoLaConfig",
    "HeadsOrWeights",
    "MethodConfig",
    "PlainConfig",
    "RandomHeadsConfig",
    "ReferenceConfig",
    "Steering",
    "SteeringContext",
    "cad",
    "decore",
    "dola",
    "dps",
    "get_method",
    "method_config",
    "method_names",
    "plain",
    "random_heads",
    "reference",
    "register_method",
]
