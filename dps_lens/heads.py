"""Attention heads as ``(layer, head)`` pairs: names, range checks and seeded random draws."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from dps_lens.errors import DpsLensError

Head = tuple[int, int]


def head_name(head: Sequence[int]) -> str:
    """``"L1H3"`` for layer 1, head 3."""
    layer, index = head
    return f"L{int(layer)}H{int(index)}"


def format_heads(heads: Iterable[Sequence[int]]) -> str:
    """``"L1H3, L2H0"``: (layer, head) pairs as text."""
    return ", ".join(head_name(head) for head in heads)


def check_head(layer: int, head: int, n_layers: int, n_heads: int) -> None:
    """Raise a ``DpsLensError`` naming the valid range when ``(layer, head)`` is not in the model."""
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise DpsLensError(
            f"head ({layer}, {head}) is out of range: this model has layers 0..{n_layers - 1} "
            f"and heads 0..{n_heads - 1}"
        )


def all_heads(n_layers: int, n_heads: int) -> list[Head]:
    """Every head of an ``n_layers × n_heads`` model, layer-major."""
    return [(layer, head) for layer in range(n_layers) for head in range(n_heads)]


def draw_random_heads(
    heads: Iterable[Sequence[int]], n_layers: int, n_heads: int, seed: int = 0, k: int | None = None
) -> list[Head]:
    """``k`` heads (default ``len(heads)``) drawn, seeded, from those not in ``heads``."""
    chosen = {(int(layer), int(head)) for layer, head in heads}
    k = len(chosen) if k is None else k
    others = [head for head in all_heads(n_layers, n_heads) if head not in chosen]
    if len(others) < k:
        raise DpsLensError(
            f"cannot draw {k} random heads outside a set of {len(chosen)}: the model has only "
            f"{n_layers * n_heads} heads"
        )
    return random.Random(seed).sample(others, k)
