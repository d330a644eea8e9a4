"""Head weight maps: which heads an intervention removes, and how strongly."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

from dps_lens.errors import DpsLensError
from dps_lens.heads import Head, check_head

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


def model_shape(model: TransformerBridge) -> tuple[int, int]:
    """``(n_layers, n_heads)`` of ``model``."""
    return int(model.cfg.n_layers), int(model.cfg.n_heads)


@dataclass(frozen=True)
class HeadMask:
    """A validated weight map ``[n_layers, n_heads]`` (or ``[batch, n_layers, n_heads]``) in [0, 1].

    ``w[l, h] = 1`` removes head ``h`` of layer ``l`` entirely, ``0`` leaves it untouched.
    """

    weights: Float[Tensor, "*batch n_layers n_heads"]

    def __post_init__(self) -> None:
        w = self.weights
        if w.dim() not in (2, 3):
            raise DpsLensError(
                f"a head weight map must be [n_layers, n_heads] or [batch, n_layers, n_heads], got {tuple(w.shape)}"
            )
        if not torch.isfinite(w).all() or (w < 0).any() or (w > 1).any():
            raise DpsLensError("head weights must be finite and within [0, 1]")

    @classmethod
    def from_heads(cls, heads: Iterable[Sequence[int]], n_layers: int, n_heads: int) -> HeadMask:
        """A hard mask removing ``heads``, given as (layer, head) pairs."""
        weights = torch.zeros(n_layers, n_heads)
        for head in heads:
            layer, index = (int(v) for v in head)
            check_head(layer, index, n_layers, n_heads)
            weights[layer, index] = 1.0
        return cls(weights)

    @classmethod
    def for_model(cls, model: TransformerBridge, heads: Iterable[Sequence[int]]) -> HeadMask:
        return cls.from_heads(heads, *model_shape(model))

    @property
    def layers(self) -> list[int]:
        """Layers where some row masks some head."""
        touched = self.weights.reshape(-1, *self.weights.shape[-2:]).amax(dim=(0, 2)) > 0
        return [int(layer) for layer in torch.nonzero(touched).flatten()]

    @property
    def heads(self) -> list[Head]:
        """(layer, head) pairs with non-zero weight in some row."""
        touched = self.weights.reshape(-1, *self.weights.shape[-2:]).amax(dim=0) > 0
        return [(int(layer), int(head)) for layer, head in torch.nonzero(touched)]


def as_mask(
    model: TransformerBridge, mask: HeadMask | Tensor | Iterable[Sequence[int]]
) -> HeadMask:
    """Coerce a ``HeadMask``, a weight tensor or a list of (layer, head) pairs; check the shape."""
    if isinstance(mask, HeadMask):
        result = mask
    elif isinstance(mask, Tensor):
        result = HeadMask(mask.detach().float())
    else:
        return HeadMask.for_model(model, mask)
    if tuple(result.weights.shape[-2:]) != model_shape(model):
        raise DpsLensError(
            f"head weight map has shape {tuple(result.weights.shape[-2:])}, but the model has "
            f"{model_shape(model)} (n_layers, n_heads)"
        )
    return result
