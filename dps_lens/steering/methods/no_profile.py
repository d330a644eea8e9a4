"""``no_profile``: the model alone on the prompt without its profile (CAD's "without context"
prompt): the floor against which the profile's benefit, ``plain − no_profile``, is measured."""

from __future__ import annotations

from dataclasses import dataclass

from dps_lens.steering.methods.base import MethodConfig, Steering, SteeringContext, register_method


@register_method
@dataclass(frozen=True)
class NoProfileConfig(MethodConfig):
    name = "no_profile"
    description = "the model alone on the prompt without its profile"

    def build(self, context: SteeringContext) -> Steering:
        return no_profile()


def no_profile() -> Steering:
    """Plain decoding of every input with its profile removed from the prompt."""
    return Steering(name="no_profile", profile=False)
