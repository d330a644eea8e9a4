"""Steered decoding: Differential Preference Steering and its contrast rule."""

from dps_lens.steering.rules import ContrastRule

__all__ = ["ContrastRule"]
