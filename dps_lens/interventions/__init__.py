"""Head interventions through TransformerLens hooks: one registry for discovery and steering.

A mask is a weight map ``w`` of shape ``[n_layers, n_heads]`` in [0, 1] (1 = head fully removed),
or ``[batch, n_layers, n_heads]`` to give every batch row its own mask in a single forward.
How a head is removed is an ``Ablation`` registered by name (``ablation_names()``):

* ``zero``: ``z ← (1 − w)·z`` at ``blocks.{l}.attn.hook_z``, the per-head vector entering the
  output projection;
* ``mean``: ``z ← (1 − w)·z + w·z̄`` with ``z̄`` the head's mean over reference prompts;
* ``uniform``: the head's attention pattern moved towards uniform attention over visible keys;
* ``oproj_slice``: the authors' slice of the projected output (reproduces their PCS; not a head).
"""

from dps_lens.interventions import mean, oproj_slice, uniform, zero  # noqa: F401  (register)
from dps_lens.interventions.ablate import ablate_heads
from dps_lens.interventions.ablation import (
    ABLATIONS,
    Ablation,
    AblationInputs,
    HookZAblation,
    ablation_names,
    get_ablation,
    register_ablation,
)
from dps_lens.interventions.mask import HeadMask, as_mask, model_shape
from dps_lens.interventions.means import head_means, reference_means
from dps_lens.interventions.uniform import uniform_pattern

__all__ = [
    "ABLATIONS",
    "Ablation",
    "AblationInputs",
    "HeadMask",
    "HookZAblation",
    "ablate_heads",
    "ablation_names",
    "as_mask",
    "get_ablation",
    "head_means",
    "model_shape",
    "reference_means",
    "register_ablation",
    "uniform_pattern",
]
