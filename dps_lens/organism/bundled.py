"""The organisms shipped inside the package, registered with the model loader as a plugin.

Registers the names ``organism-free``, ``organism-planted`` and ``organism-groups`` and a load hook
that applies what a dps_lens model card requires (the planted organisms' attention constraint).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from transformer_lens.model_bridge import TransformerBridge

from dps_lens.errors import ModelLoadError
from dps_lens.models import register_load_hook, register_model
from dps_lens.organism.planted import install_planted_constraint, planted_spec_from_card
from dps_lens.organism.train import read_card

BUNDLED_ORGANISMS = ("organism-free", "organism-planted", "organism-groups", "organism-generic")


def organism_weights_dir(name: str) -> Path:
    """Where a bundled organism lives inside the package (whether or not it is built)."""
    return Path(__file__).parent / "weights" / name


def organism_dir(name: str) -> Path:
    """Directory of a bundled organism inside the installed package."""
    path = organism_weights_dir(name)
    if not (path / "config.json").exists():
        raise ModelLoadError(
            f"bundled model {name!r} is missing from this installation ({path}); reinstall dps_lens "
            f"or rebuild it with: dps-lens organism train --name {name}"
        )
    return path


def install_card_constraints(bridge: TransformerBridge, directory: Path | None) -> None:
    """Apply what a dps_lens model card in ``directory`` requires (the planted organism's hooks)."""
    if directory is None or not (directory / "model_card.json").exists():
        return
    spec = planted_spec_from_card(read_card(directory), bridge.tokenizer)
    if spec is not None:
        install_planted_constraint(bridge, spec)


for _name in BUNDLED_ORGANISMS:
    register_model(_name, partial(organism_dir, _name))
register_load_hook(install_card_constraints)
