"""Attribution patching: a first-order estimate of every head's PCS from one backward pass.

``PCS(h) ≈ Σ_pos (z̃_h − z_h) · ∂L/∂z_h`` at ``blocks.{l}.attn.hook_z``, with ``z̃`` the ablated
value (0 for ``zero``, the reference mean for ``mean``). The gradient of the summed per-example
losses gives each example its own gradient, so one forward and one backward pass score every
head on a whole batch. With ``ig_steps = n > 0`` the product is instead averaged over ``n``
runs in which every head is moved a fraction ``α = (k + ½)/n`` of the way to its ablated value
(integrated gradients along the path from the clean to the all-ablated model, midpoint rule):
the scores of all heads then add up to ``L(all heads ablated) − L(clean)``.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from dps_lens.data.encoding import TargetBatch
from dps_lens.errors import DpsLensError
from dps_lens.interventions import ABLATIONS, Ablation, AblationInputs, get_ablation
from dps_lens.scoring.loss import label_positions, target_nll


def attribution_ablation(mode: str) -> Ablation:
    """The registered ablation ``mode``, if attribution can estimate it (it acts on ``hook_z``)."""
    ablation = get_ablation(mode)
    if not ablation.attribution:
        supported = ", ".join(a.name for a in ABLATIONS.values() if a.attribution)
        raise DpsLensError(
            f"attribution scores support modes {supported} (ablations of hook_z), not {mode!r}; "
            "use --method exact"
        )
    return ablation


def _step(
    model: Any,
    batch: TargetBatch,
    real: Tensor,
    alpha: float,
    ablation: Ablation,
    inputs: AblationInputs,
) -> Float[Tensor, "batch n_layers n_heads"]:
    """``Σ_pos (z̃ − z) · ∂ Σ_i L_i / ∂z`` per head, in one run with every head moved ``alpha``
    of the way to its ablated value (``z`` is the head's value before the move)."""
    n_layers = int(model.cfg.n_layers)
    seen: list[Tensor | None] = [None] * n_layers
    directions: list[Tensor | None] = [None] * n_layers

    def leaf(x: Tensor, hook: Any) -> Tensor:  # gradients flow even when weights are frozen
        return x if x.requires_grad else x.detach().requires_grad_(True)

    def capture(layer: int):
        def hook(z: Tensor, hook: Any) -> Tensor:
            direction = ablation.target(z, layer, inputs) - z
            moved = z + alpha * direction if alpha > 0 else z
            seen[layer], directions[layer] = moved, direction.detach()
            return moved

        return hook

    hooks = [("hook_embed", leaf)] if "hook_embed" in model.hook_dict else []
    hooks += [(f"blocks.{layer}.attn.hook_z", capture(layer)) for layer in range(n_layers)]
    with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
        positions = label_positions(batch)
        logits = model(
            batch.tokens, return_type="logits", logits_to_keep=positions.to(batch.tokens.device)
        )
        losses = target_nll(logits, batch, positions)
        activations = [z for z in seen if z is not None]
        if len(activations) != n_layers:
            raise DpsLensError("attribution: some layer's hook_z did not run")
        grads = torch.autograd.grad(losses.sum(), activations)
    keep = real.to(grads[0].device)[:, :, None, None].to(grads[0].dtype)
    scores = [
        (direction * g * keep).sum(dim=(1, 3))
        for direction, g in zip(directions, grads, strict=True)
        if direction is not None
    ]
    return torch.stack(scores, dim=1).float().cpu()


def attribution_batch(
    model: Any,
    batch: TargetBatch,
    real: Bool[Tensor, "batch pos"],
    mode: str = "zero",
    means: Float[Tensor, "n_layers n_heads d_head"] | None = None,
    ig_steps: int = 0,
) -> Float[Tensor, "batch n_layers n_heads"]:
    """Estimated PCS of every head for every example of ``batch`` (nats, float32, on the CPU)."""
    if ig_steps < 0:
        raise DpsLensError(f"ig_steps must be >= 0, got {ig_steps}")
    ablation = attribution_ablation(mode)
    inputs = AblationInputs(means=means)
    ablation.check(model, inputs)
    batch = batch.to(model.cfg.device)
    alphas = [(k + 0.5) / ig_steps for k in range(ig_steps)] if ig_steps else [0.0]
    return torch.stack([_step(model, batch, real, a, ablation, inputs) for a in alphas]).mean(0)
