"""Decoding methods, registered by name: ``plain``, ``no_profile``, ``dps``, ``dps_shared_prefill``,
``cad``, ``dola``, ``random_heads``, ``decore``, ``reference``, ``attention_emphasis``,
``head_shift``, ``amplify`` (and plugins such as the cluster-routed DPS).

Each is a config dataclass (``method_config(name, **params)``) whose ``build(context)`` gives the
``Steering`` that ``generate`` runs; ``plain()``, ``dps(model, heads, ...)`` and the other
functions build one directly.
"""

from dps_lens.steering.methods.amplify import AmplifyConfig, amplify
from dps_lens.steering.methods.attention_emphasis import (
    AttentionEmphasisConfig,
    attention_emphasis,
)
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
from dps_lens.steering.methods.edit import HeadEditConfig
from dps_lens.steering.methods.head_shift import HeadShiftConfig, head_shift
from dps_lens.steering.methods.no_profile import NoProfileConfig, no_profile
from dps_lens.steering.methods.plain import PlainConfig, plain
from dps_lens.steering.methods.random_heads import RandomHeadsConfig, random_heads
from dps_lens.steering.methods.reference import ReferenceConfig, reference

__all__ = [
    "MASKED_RUNS",
    "STEERING_METHODS",
    "AmplifyConfig",
    "AttentionEmphasisConfig",
    "CADConfig",
    "DPSConfig",
    "DPSSharedPrefillConfig",
    "DecoreConfig",
    "DoLaConfig",
    "HeadEditConfig",
    "HeadShiftConfig",
    "HeadsOrWeights",
    "MethodConfig",
    "NoProfileConfig",
    "PlainConfig",
    "RandomHeadsConfig",
    "ReferenceConfig",
    "Steering",
    "SteeringContext",
    "amplify",
    "attention_emphasis",
    "cad",
    "decore",
    "dola",
    "dps",
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
