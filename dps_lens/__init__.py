"""dps_lens: find the attention heads that carry a user's preferences, and steer generation with them.

The public API is re-exported here lazily, so ``import dps_lens`` (and the CLI's start-up) stays
fast; torch and TransformerLens load on first use of a name that needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the lazily exported names, for type checkers and IDEs
    from dps_lens.data import PreferenceExample, load_examples, split_by_user
    from dps_lens.errors import DpsLensError
    from dps_lens.interventions import HeadMask, ablate_heads
    from dps_lens.models import load_model, model_info
    from dps_lens.scoring import HeadScores, ScanConfig, score_heads

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "dps_lens.models",
    "model_info": "dps_lens.models",
    "PreferenceExample": "dps_lens.data",
    "load_examples": "dps_lens.data",
    "split_by_user": "dps_lens.data",
    "HeadMask": "dps_lens.interventions",
    "ablate_heads": "dps_lens.interventions",
    "HeadScores": "dps_lens.scoring",
    "ScanConfig": "dps_lens.scoring",
    "score_heads": "dps_lens.scoring",
    "DpsLensError": "dps_lens.errors",
}

__all__ = [  # noqa: RUF022 (the order of _EXPORTS)
    "__version__",
    "load_model",
    "model_info",
    "PreferenceExample",
    "load_examples",
    "split_by_user",
    "HeadMask",
    "ablate_heads",
    "HeadScores",
    "ScanConfig",
    "score_heads",
    "DpsLensError",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dps_lens' has no attribute {name!r}")
