"""``ablate_heads``: run a model with a head weight map applied by a registered ablation."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from jaxtyping import Bool, Float
from torch import Tensor

from dps_lens.errors import DpsLensError
from dps_lens.interventions.ablation import Ablation, AblationInputs, get_ablation
from dps_lens.interventions.layout import PromptLayout
from dps_lens.interventions.mask import HeadMask, as_mask

if TYPE_CHECKING:
    from transformer_lens.hook_points import HookPoint
    from transformer_lens.model_bridge import TransformerBridge


def _row_weights(weights: Tensor, layer: int, batch: int) -> Float[Tensor, "batch n_heads"]:
    """Per-row weights of one layer, checked against the hooked batch size."""
    w = weights[..., layer, :]
    if w.dim() == 1:
        return w.expand(batch, -1)
    if w.shape[0] != batch:
        raise DpsLensError(
            f"per-row head mask has {w.shape[0]} rows but the forward pass has batch size {batch}"
        )
    return w


@contextlib.contextmanager
def ablate_heads(
    model: TransformerBridge,
    mask: HeadMask | Tensor | Iterable[Sequence[int]],
    mode: str | Ablation = "zero",
    means: Float[Tensor, "n_layers n_heads d_head"] | None = None,
    key_mask: Bool[Tensor, "batch key"] | None = None,
    layout: PromptLayout | None = None,
) -> Iterator[TransformerBridge]:
    """Within the block, every forward of ``model`` runs with ``mask`` applied by the ablation
    registered as ``mode`` (see ``ablation_names()``), or by a configured ``Ablation``.

    ``mask`` is a ``HeadMask``, a weight map ``[n_layers, n_heads]`` or ``[batch, n_layers,
    n_heads]`` in [0, 1], or (layer, head) pairs. ``means`` (from ``head_means``) serves modes that
    need reference means; ``key_mask`` marks the non-padding keys (left-padded batches), over the
    whole sequence (cache included); ``layout`` places each row's prompt and profile span, for
    modes that read them (``emphasis``, ``shift``).
    """
    head_mask = as_mask(model, mask)
    ablation = get_ablation(mode)
    inputs = AblationInputs(means=means, key_mask=key_mask, layout=layout)
    ablation.check(model, inputs)
    weights = head_mask.weights

    def hook_for(layer: int) -> Callable[[Tensor, HookPoint], Tensor]:
        def hook(value: Tensor, hook: HookPoint) -> Tensor:
            return ablation.apply(
                value, _row_weights(weights, layer, value.shape[0]), layer, inputs
            )

        return hook

    hooks = [(ablation.hook_name(layer), hook_for(layer)) for layer in head_mask.layers]
    with model.hooks(fwd_hooks=hooks):
        yield model
