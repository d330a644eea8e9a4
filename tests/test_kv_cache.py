"""The bridge's KV cache across transformers releases: the cache argument's name is detected from
the model, and a bridge on a release that says ``cache=`` is adapted (once). Cached decoding is
checked against recomputation on every family in ``test_model_families.py``, which CI runs under
the newest and the lowest supported transformers."""

from __future__ import annotations

import torch
import transformers

from dps_lens.kv_cache import ADAPTED, adapt_cache_argument, passes_cache_as


class _OldModel(torch.nn.Module):
    def forward(self, input_ids=None, past_key_values=None, use_cache=None):
        return input_ids


class _NewModel(torch.nn.Module):
    def forward(self, input_ids=None, cache=None, use_cache=None):
        return input_ids


def test_the_cache_argument_is_read_from_the_models_signature():
    assert passes_cache_as(_OldModel()) == "past_key_values"
    assert passes_cache_as(_NewModel()) == "cache"


def test_a_loaded_bridge_is_adapted_exactly_when_its_transformers_needs_it(tiny_llama):
    needs = passes_cache_as(tiny_llama.original_model) == "cache"
    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    assert needs == ((major, minor) >= (5, 24))
    assert getattr(tiny_llama, ADAPTED, False) == needs
    hooks = len(tiny_llama.original_model._forward_pre_hooks)
    assert adapt_cache_argument(tiny_llama) == needs  # a second call adds no hooks
    assert len(tiny_llama.original_model._forward_pre_hooks) == hooks
