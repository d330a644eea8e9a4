"""The KV cache across transformers releases, for the bridge.

From transformers 5.24 on, a decoder layer hands its cache to attention as ``cache=`` and a
model returns it as ``output.cache``; TransformerLens 4.3's bridge reads ``past_key_values`` in
both places, so its cache would stay empty and cached decoding would go on from the newest token
alone. ``adapt_cache_argument`` (run by ``load_model`` on every bridge) renames the argument for
the bridge's attention components and exposes the returned cache under the old name too, when
the installed transformers needs it; on older releases it does nothing.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

ADAPTED = "_dps_lens_cache_adapted"


def passes_cache_as(hf_model: torch.nn.Module) -> str:
    """``"cache"`` when ``hf_model`` (transformers ≥ 5.24) takes its cache by that name, else
    ``"past_key_values"``."""
    parameters = inspect.signature(type(hf_model).forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def adapt_cache_argument(bridge: TransformerBridge) -> bool:
    """Make ``bridge`` read and return its KV cache under the installed transformers' name;
    whether it had to (False on releases that still say ``past_key_values``)."""
    hf_model = bridge.original_model
    if passes_cache_as(hf_model) == "past_key_values":
        return False
    if getattr(bridge, ADAPTED, False):  # already adapted: hooks are added once
        return True
    setattr(bridge, ADAPTED, True)

    def renamed(old: str, new: str):
        def rename(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]):
            if old in kwargs and new not in kwargs:
                kwargs = dict(kwargs)
                kwargs[new] = kwargs.pop(old)
            return args, kwargs

        return rename

    def expose(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
        cache = getattr(output, "cache", None)
        if cache is not None and getattr(output, "past_key_values", None) is None:
            output["past_key_values"] = cache

    for module in bridge.modules():
        if hasattr(module, "_update_kv_cache"):  # the bridge's attention components
            module.register_forward_pre_hook(renamed("cache", "past_key_values"), with_kwargs=True)
    # the bridge hands the model its cache as past_key_values, and reads it back by that name
    hf_model.register_forward_pre_hook(renamed("past_key_values", "cache"), with_kwargs=True)
    hf_model.register_forward_hook(expose)
    return True
