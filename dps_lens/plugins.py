"""Plugins: modules that register models, ablations or steering methods when loaded.

A package (this one included) lists such modules under the entry-point group ``dps_lens.plugins``
in its ``pyproject.toml``; the registries load them the first time they are consulted::

    [project.entry-points."dps_lens.plugins"]
    my_ablation = "my_package.my_ablation"
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points

GROUP = "dps_lens.plugins"


@functools.cache
def load_plugins() -> tuple[str, ...]:
    """Import every module registered under ``dps_lens.plugins`` (once); their names."""
    loaded = []
    for entry in entry_points(group=GROUP):
        importlib.import_module(entry.value.split(":")[0])
        loaded.append(entry.name)
    return tuple(loaded)
