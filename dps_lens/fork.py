"""Share the layers below a layer between several runs that differ only from that layer on.

``fork_at(model, layer, copies)`` replicates the batch where it enters block ``layer``: a forward
over ``B`` rows computes blocks ``0 .. layer-1`` once and blocks ``layer ..`` over ``copies·B``
rows, copy ``c`` in rows ``[c·B, (c+1)·B)``. Every batch-shaped argument of the blocks (hidden
states, attention mask, rotary cos/sin, position ids) is replicated the same way, and the KV
cache of the forked layers holds ``copies·B`` rows, so cached decoding continues every copy.
DPS uses two copies (full and masked model); the exact PCS scan one copy per ablated head.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from dps_lens.errors import DpsLensError

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import Cache


def _replicate(value: Any, batch: int, copies: int) -> Any:
    """``[x; x; ...]`` along dim 0 for batch-shaped tensors (ndim ≥ 2, first dim ``batch``)."""
    if isinstance(value, Tensor):
        if value.dim() >= 2 and value.shape[0] == batch:
            return torch.cat([value] * copies, dim=0)
        return value
    if isinstance(value, tuple):
        return tuple(_replicate(item, batch, copies) for item in value)
    return value


@contextlib.contextmanager
def fork_at(model: TransformerBridge, layer: int, copies: int = 2) -> Iterator[None]:
    """Within the block, forwards of ``model`` replicate their batch ``copies`` times at ``layer``."""
    n_layers = int(model.cfg.n_layers)
    if not 0 <= layer < n_layers:
        raise DpsLensError(f"fork layer {layer} is out of range 0..{n_layers - 1}")
    if copies < 1:
        raise DpsLensError(f"a fork needs at least one copy, got {copies}")
    batch = {"rows": 0}

    def fork(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        hidden = args[0] if args else kwargs["hidden_states"]
        batch["rows"] = rows = hidden.shape[0]
        return (
            tuple(_replicate(a, rows, copies) for a in args),
            {k: _replicate(v, rows, copies) for k, v in kwargs.items()},
        )

    def follow(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        # Blocks after the fork get the model-level masks and rotary tables again, B rows each.
        rows = batch["rows"]
        kwargs = {
            k: v if k == "hidden_states" else _replicate(v, rows, copies) for k, v in kwargs.items()
        }
        return (args[:1] + tuple(_replicate(a, rows, copies) for a in args[1:]), kwargs)

    handles = [model.blocks[layer].register_forward_pre_hook(fork, with_kwargs=True)]
    handles += [
        model.blocks[later].register_forward_pre_hook(follow, with_kwargs=True)
        for later in range(layer + 1, n_layers)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def duplicate_cache_rows(cache: Cache, from_layer: int) -> None:
    """Give the cached keys/values of layers ``from_layer ..`` a second copy of every row."""
    from transformers.cache_utils import CacheLayerMixin

    for layer in list(cache.layers)[from_layer:]:
        if not isinstance(layer, CacheLayerMixin) or layer.keys is None:
            raise DpsLensError(f"cannot fork a cache layer of type {type(layer).__name__}")
        rows = torch.arange(layer.keys.shape[0]).repeat(2)
        # transformers annotates ``beam_idx`` with the legacy ``torch.LongTensor`` class
        layer.reorder_cache(rows)  # pyright: ignore[reportArgumentType]
