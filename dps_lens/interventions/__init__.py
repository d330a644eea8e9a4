"""Head interventions through TransformerLens hooks: one registry for discovery and steering.

A mask is a weight map ``w`` of shape ``[n_layers, n_heads]`` in [0, 1] (1 = the intervention in
full), or ``[batch, n_layers, n_heads]`` to give every batch row its own mask in a single forward.
How a head is intervened on is an ``Ablation`` registered by name (``ablation_names()``):

* ``zero``: ``z ← (1 − w)·z`` at ``blocks.{l}.attn.hook_z``, the per-head vector entering the
  output projection;
* ``mean``: ``z ← (1 − w)·z + w·z̄`` with ``z̄`` the head's mean over reference prompts;
* ``uniform``: the head's attention pattern moved towards uniform attention over visible keys;
* ``oproj_slice``: the authors' slice of the projected output (reproduces their PCS; not a head);
* ``emphasis``: attention on prompt tokens outside the profile scaled by ``α`` (PASTA);
* ``amplify``: ``z ← (1 + α)·z``;
* ``shift``: ``z ← z + α·σ·θ`` on the decoded positions, along the head's profile direction (ITI).
"""

from dps_lens.interventions import (  # noqa: F401  (register)
    amplify,
    emphasis,
    mean,
    oproj_slice,
    shift,
    uniform,
    zero,
)
from dps_lens.interventions.ablate import ablate_heads
from dps_lens.interventions.ablation import (
    ABLATIONS,
    Ablation,
    AblationInputs,
    HookZAblation,
    PatternAblation,
    ablation_names,
    ablation_parameters,
    get_ablation,
    register_ablation,
)
from dps_lens.interventions.directions import DIRECTIONS_FILE, HeadDirections, head_directions
from dps_lens.interventions.layout import PromptLayout
from dps_lens.interventions.mask import HeadMask, as_mask, model_shape
from dps_lens.interventions.means import head_means, reference_means
from dps_lens.interventions.uniform import uniform_pattern

__all__ = [
    "ABLATIONS",
    "DIRECTIONS_FILE",
    "Ablation",
    "AblationInputs",
    "HeadDirections",
    "HeadMask",
    "HookZAblation",
    "PatternAblation",
    "PromptLayout",
    "ablate_heads",
    "ablation_names",
    "ablation_parameters",
    "as_mask",
    "get_ablation",
    "head_directions",
    "head_means",
    "model_shape",
    "reference_means",
    "register_ablation",
    "uniform_pattern",
]
