"""Head masks applied through TransformerLens hooks; one object for discovery and steering alike.

A mask is a weight map ``w`` of shape ``[n_layers, n_heads]`` in [0, 1] (1 = head fully removed),
or ``[batch, n_layers, n_heads]`` to give every batch row its own mask in a single forward.
Modes, each interpolating between the clean head (``w = 0``) and the ablated head (``w = 1``):

* ``zero``: ``z ← (1 - w)·z`` at ``blocks.{l}.attn.hook_z``, the per-head vector entering the output
  projection. ``w = 1`` is exactly the model with that head's rows of ``W_O`` removed.
* ``mean``: ``z ← (1 - w)·z + w·z̄`` with ``z̄[l, h]`` the head's mean output over a reference set.
* ``uniform``: ``A ← (1 - w)·A + w·U`` at ``blocks.{l}.attn.hook_pattern``, with ``U`` uniform
  attention over the causally visible, non-padding keys (the authors' decode-time masking, which
  zeroes the head's query).
* ``oproj_slice``: scale dims ``[h·d_head, (h+1)·d_head)`` of the attention output (after the output
  projection, in residual space) by ``1 - w``: the authors' PCS ablation, kept to reproduce their
  rankings. It is not a head ablation: those residual dims mix every head's output.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from dps_lens.errors import DpsLensError

MaskMode = Literal["zero", "mean", "uniform", "oproj_slice"]
MASK_MODES: tuple[str, ...] = ("zero", "mean", "uniform", "oproj_slice")
Head = tuple[int, int]


def head_names(heads: Iterable[Sequence[int]]) -> str:
    """``"L1H3, L2H0"``: (layer, head) pairs as text."""
    return ", ".join(f"L{layer}H{head}" for layer, head in heads)


def _shape(model: Any) -> tuple[int, int]:
    return int(model.cfg.n_layers), int(model.cfg.n_heads)


@dataclass(frozen=True)
class HeadMask:
    """A validated weight map ``[n_layers, n_heads]`` (or ``[batch, n_layers, n_heads]``) in [0, 1]."""

    weights: Float[Tensor, "... n_layers n_heads"]

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
    def for_model(cls, model: Any, heads: Iterable[Sequence[int]]) -> HeadMask:
        return cls.from_heads(heads, *_shape(model))

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


def check_head(layer: int, head: int, n_layers: int, n_heads: int) -> None:
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise DpsLensError(
            f"head ({layer}, {head}) is out of range: this model has layers 0..{n_layers - 1} "
            f"and heads 0..{n_heads - 1}"
        )


def as_mask(model: Any, mask: HeadMask | Tensor | Iterable[Sequence[int]]) -> HeadMask:
    """Coerce a ``HeadMask``, a weight tensor or a list of (layer, head) pairs; check the shape."""
    if isinstance(mask, HeadMask):
        result = mask
    elif isinstance(mask, Tensor):
        result = HeadMask(mask.detach().float())
    else:
        return HeadMask.for_model(model, mask)
    if tuple(result.weights.shape[-2:]) != _shape(model):
        raise DpsLensError(
            f"head weight map has shape {tuple(result.weights.shape[-2:])}, but the model has "
            f"{_shape(model)} (n_layers, n_heads)"
        )
    return result


def uniform_pattern(
    n_queries: int, n_keys: int, key_mask: Bool[Tensor, "batch key"] | None, device: torch.device
) -> Float[Tensor, "batch 1 query key"]:
    """Uniform attention over visible keys; queries are the last ``n_queries`` of ``n_keys``."""
    query_pos = torch.arange(n_keys - n_queries, n_keys, device=device)[:, None]
    visible = (torch.arange(n_keys, device=device)[None, :] <= query_pos)[None, None]
    if key_mask is not None:
        visible = visible & key_mask[:, None, None, :].to(device)
    visible = visible.float()
    return visible / visible.sum(-1, keepdim=True).clamp_min(1.0)


def _row_weights(weights: Tensor, layer: int, batch: int, like: Tensor) -> Tensor:
    """Per-row weights of one layer, ``[batch, n_heads]``, checked against the hooked batch size."""
    w = weights[..., layer, :].to(device=like.device, dtype=like.dtype)
    if w.dim() == 1:
        return w.expand(batch, -1)
    if w.shape[0] != batch:
        raise DpsLensError(
            f"per-row head mask has {w.shape[0]} rows but the forward pass has batch size {batch}"
        )
    return w


@contextlib.contextmanager
def ablate_heads(
    model: Any,
    mask: HeadMask | Tensor | Iterable[Sequence[int]],
    mode: MaskMode = "zero",
    means: Float[Tensor, "n_layers n_heads d_head"] | None = None,
    key_mask: Bool[Tensor, "batch key"] | None = None,
) -> Iterator[Any]:
    """Within the block, every forward of ``model`` runs with ``mask`` applied in ``mode``.

    ``means`` (from ``head_means``) is required for ``mode="mean"``; ``key_mask`` marks the
    non-padding keys for ``mode="uniform"`` (left-padded batches).
    """
    head_mask = as_mask(model, mask)
    if mode not in MASK_MODES:
        raise DpsLensError(f"unknown mask mode {mode!r}; use one of {', '.join(MASK_MODES)}")
    if mode == "mean" and means is None:
        raise DpsLensError(
            "mode='mean' needs the reference means: pass means=head_means(model, ...)"
        )
    weights = head_mask.weights

    def z_hook(layer: int):
        def hook(z: Float[Tensor, "batch pos head d_head"], hook: Any) -> Tensor:
            w = _row_weights(weights, layer, z.shape[0], z)[:, None, :, None]
            out = z * (1 - w)
            if means is not None and mode == "mean":
                out = out + w * means[layer].to(device=z.device, dtype=z.dtype)
            return out

        return hook

    def pattern_hook(layer: int):
        def hook(pattern: Float[Tensor, "batch head query key"], hook: Any) -> Tensor:
            w = _row_weights(weights, layer, pattern.shape[0], pattern)[:, :, None, None]
            rows = key_mask if key_mask is None or key_mask.shape[-1] == pattern.shape[-1] else None
            uniform = uniform_pattern(pattern.shape[-2], pattern.shape[-1], rows, pattern.device)
            return pattern * (1 - w) + w * uniform.to(pattern.dtype)

        return hook

    def slice_hook(layer: int):
        def hook(out: Float[Tensor, "batch pos d_model"], hook: Any) -> Tensor:
            w = _row_weights(weights, layer, out.shape[0], out)
            scale = (1 - w).repeat_interleave(out.shape[-1] // w.shape[-1], dim=-1)
            return out * scale[:, None, :]

        return hook

    if mode == "oproj_slice":
        if int(model.cfg.n_heads) * int(model.cfg.d_head) != int(model.cfg.d_model):
            raise DpsLensError(
                "mode='oproj_slice' needs n_heads * d_head == d_model; use mode='zero'"
            )
        hooks = [(f"blocks.{layer}.attn.hook_out", slice_hook(layer)) for layer in head_mask.layers]
    elif mode == "uniform":
        hooks = [
            (f"blocks.{layer}.attn.hook_pattern", pattern_hook(layer)) for layer in head_mask.layers
        ]
    else:
        hooks = [(f"blocks.{layer}.attn.hook_z", z_hook(layer)) for layer in head_mask.layers]
    with model.hooks(fwd_hooks=hooks):
        yield model


@torch.no_grad()
def head_means(
    model: Any,
    batches: Iterable[tuple[Tensor, Bool[Tensor, "batch pos"]]],
) -> Float[Tensor, "n_layers n_heads d_head"]:
    """Mean ``hook_z`` of every head over the real (non-padding) tokens of ``batches``.

    ``batches`` yields ``(tokens [batch, pos], real_token_mask [batch, pos])``.
    """
    n_layers, n_heads = _shape(model)
    d_head = int(model.cfg.d_head)
    total = torch.zeros(n_layers, n_heads, d_head, dtype=torch.float64)
    count = 0
    current: dict[str, Tensor] = {}

    def accumulate(layer: int):
        def hook(z: Tensor, hook: Any) -> None:
            real = current["mask"].to(z.device)
            total[layer] += z[real].double().sum(0).cpu()

        return hook

    hooks = [(f"blocks.{layer}.attn.hook_z", accumulate(layer)) for layer in range(n_layers)]
    with model.hooks(fwd_hooks=hooks):
        for tokens, real in batches:
            current["mask"] = real
            model(tokens.to(model.cfg.device), return_type=None)
            count += int(real.sum())
    if count == 0:
        raise DpsLensError("head means need at least one reference token")
    return (total / count).float()
