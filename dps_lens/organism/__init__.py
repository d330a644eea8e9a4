"""The embedded default: a synthetic personalization world and small LMs trained on it."""

from dps_lens.organism.planted import PlantedSpec, designated_heads, install_planted_constraint
from dps_lens.organism.rates import masking_curve, personalization_rate, personalization_rates
from dps_lens.organism.train import ORGANISMS, OrganismConfig, train_organism
from dps_lens.organism.world import TOPICS, User, World, WorldConfig, personalized

__all__ = [
    "ORGANISMS",
    "TOPICS",
    "OrganismConfig",
    "PlantedSpec",
    "User",
    "World",
    "WorldConfig",
    "designated_heads",
    "install_planted_constraint",
    "masking_curve",
    "personalization_rate",
    "personalization_rates",
    "personalized",
    "train_organism",
]
