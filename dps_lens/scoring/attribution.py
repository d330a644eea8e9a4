"""Attribution patching: a first-order estimate of every head's PCS from one backward pass.

``PCS(h) ≈ Σ_pos (z̃_h − z_h) · ∂L/∂z_h`` at ``blocks.{l}.attn.hook_z``, with ``z̃`` the ablated
value (0 for ``zero``, the reference mean for ``mean``). The gradient of the summed per-example
losses gives each example its own gradient, so one forward and one backward pass score every
head on a whole batch. With ``ig_steps = n > 0`` the product is instead averaged over ``n``
runs in which every head is moved a fraction ``α = (k + ½)/n`` of the way to its ablated value
(integrated gradients along the path from the clean to the all-ablated model, midpoint rule):
the scores of all heads then add up to ``L(all heads ablated) − L(clean)``.

With ``graddrop`` (AtP*'s GradDrop, Kramár et al. 2024) the one backward pass becomes ``L``:
backward pass ``ℓ`` drops the gradient through layer ``ℓ``'s residual write (its attention and
MLP outputs), and a head's score on an example is ``1/(L−1) · Σ_ℓ |estimate_ℓ|``. Paths whose
contributions cancel in the plain gradient (e.g. through a saturated later layer) then no longer
hide a head. The score is a magnitude (≥ 0): a prefilter ranking, not a signed PCS estimate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from dps_lens.data.encoding import TargetBatch
from dps_lens.errors import DpsLensError
from dps_lens.interventions import ABLATIONS, Ablation, AblationInputs, get_ablation
from dps_lens.scoring.loss import label_positions, target_nll

if TYPE_CHECKING:
    from transformer_lens.hook_points import HookPoint
    from transformer_lens.model_bridge import TransformerBridge


def attribution_ablation(mode: str | Ablation) -> Ablation:
    """The registered ablation ``mode``, if attribution can estimate it (it acts on ``hook_z``)."""
    ablation = get_ablation(mode)
    if not ablation.attribution:
        supported = ", ".join(a.name for a in ABLATIONS.values() if a.attribution)
        raise DpsLensError(
            f"attribution scores support modes {supported} (ablations of hook_z), not "
            f"{ablation.name!r}; use --method exact"
        )
    return ablation


class _GradGate(torch.autograd.Function):
    """Identity forward; the backward pass lets the gradient through unless ``dropped[0]`` is
    ``layer`` (GradDrop's per-layer gradient drop, switched between backward passes)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, layer: int, dropped: list[int | None]) -> Tensor:
        ctx.layer, ctx.dropped = layer, dropped
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor, None, None]:
        grad = grads[0]
        return (torch.zeros_like(grad) if ctx.dropped[0] == ctx.layer else grad), None, None


def _step(
    model: TransformerBridge,
    batch: TargetBatch,
    real: Tensor,
    alpha: float,
    ablation: Ablation,
    inputs: AblationInputs,
    graddrop: bool = False,
) -> Float[Tensor, "batch n_layers n_heads"]:
    """``Σ_pos (z̃ − z) · ∂ Σ_i L_i / ∂z`` per head, in one run with every head moved ``alpha``
    of the way to its ablated value (``z`` is the head's value before the move); with
    ``graddrop``, ``1/(L−1) Σ_ℓ |…|`` over the ``L`` backward passes that drop layer ``ℓ``."""
    n_layers = int(model.cfg.n_layers)
    seen: list[Tensor | None] = [None] * n_layers
    directions: list[Tensor | None] = [None] * n_layers
    dropped: list[int | None] = [None]

    def leaf(x: Tensor, hook: HookPoint) -> Tensor:  # gradients flow even when weights are frozen
        return x if x.requires_grad else x.detach().requires_grad_(True)

    def capture(layer: int) -> Callable[[Tensor, HookPoint], Tensor]:
        def hook(z: Tensor, hook: HookPoint) -> Tensor:
            direction = ablation.target(z, layer, inputs) - z
            moved = z + alpha * direction if alpha > 0 else z
            seen[layer], directions[layer] = moved, direction.detach()
            return moved

        return hook

    def gate(layer: int) -> Callable[[Tensor, HookPoint], Tensor]:
        def hook(out: Tensor, hook: HookPoint) -> Tensor:
            return _GradGate.apply(out, layer, dropped)

        return hook

    hooks: list[tuple[str, Callable[[Tensor, HookPoint], Tensor]]] = (
        [("hook_embed", leaf)] if "hook_embed" in model.hook_dict else []
    )
    hooks += [(f"blocks.{layer}.attn.hook_z", capture(layer)) for layer in range(n_layers)]
    if graddrop:
        for layer in range(n_layers):
            hooks += [
                (f"blocks.{layer}.attn.hook_out", gate(layer)),
                (f"blocks.{layer}.mlp.hook_out", gate(layer)),
            ]
    with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
        positions = label_positions(batch)
        logits = model(
            batch.tokens, return_type="logits", logits_to_keep=positions.to(batch.tokens.device)
        )
        total = target_nll(logits, batch, positions).sum()
        activations = [z for z in seen if z is not None]
        if len(activations) != n_layers:
            raise DpsLensError("attribution: some layer's hook_z did not run")
        keep = real.to(activations[0].device)[:, :, None, None].to(activations[0].dtype)

        def scores(grads: Sequence[Tensor]) -> Tensor:
            per_layer = [
                (d * g * keep).sum(dim=(1, 3))
                for d, g in zip(directions, grads, strict=True)
                if d is not None
            ]
            return torch.stack(per_layer, dim=1)

        if not graddrop:
            return scores(torch.autograd.grad(total, activations)).float().cpu()
        magnitude = torch.zeros(
            batch.tokens.shape[0], n_layers, int(model.cfg.n_heads), device=keep.device
        )
        for layer in range(n_layers):
            dropped[0] = layer
            magnitude += scores(torch.autograd.grad(total, activations, retain_graph=True)).abs()
        return (magnitude / (n_layers - 1)).float().cpu()


def attribution_batch(
    model: TransformerBridge,
    batch: TargetBatch,
    real: Bool[Tensor, "batch pos"],
    mode: str | Ablation = "zero",
    means: Float[Tensor, "n_layers n_heads d_head"] | None = None,
    ig_steps: int = 0,
    graddrop: bool = False,
) -> Float[Tensor, "batch n_layers n_heads"]:
    """Estimated PCS of every head for every example of ``batch`` (nats, float32, on the CPU),
    oriented by the mode's ``score_sign``; with ``graddrop``, AtP*'s GradDrop magnitude instead
    (see the module docstring)."""
    if ig_steps < 0:
        raise DpsLensError(f"ig_steps must be >= 0, got {ig_steps}")
    if graddrop and (ig_steps or int(model.cfg.n_layers) < 2):
        raise DpsLensError(
            "GradDrop needs plain attribution (ig_steps 0) and a model of at least 2 layers"
        )
    ablation = attribution_ablation(mode)
    inputs = AblationInputs(means=means)
    ablation.check(model, inputs)
    batch = batch.to(model.cfg.device)
    alphas = [(k + 0.5) / ig_steps for k in range(ig_steps)] if ig_steps else [0.0]
    estimate = torch.stack(
        [_step(model, batch, real, a, ablation, inputs, graddrop) for a in alphas]
    ).mean(0)
    return estimate if graddrop else ablation.score_sign * estimate
