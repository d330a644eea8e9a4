"""Tiny random models with a byte-level tokenizer, built offline and deterministically.

They are the test fixture and the quick default: every text tokenizes (no unknown words), and the
same seed always gives the same weights. Built once into the cache directory, then loaded through
the ordinary local-directory path like any HF checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from dps_lens._io import save_weights

SPECIAL_TOKENS = ("<|pad|>", "<|bos|>", "<|eos|>")


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of a tiny random model. ``n_kv_heads < n_heads`` gives grouped-query attention."""

    architecture: str = "gpt2"  # a key of TINY_FAMILIES: "gpt2", "llama", "gemma3" or "qwen2"
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 4
    d_model: int = 64
    d_mlp: int | None = None  # default: 4 d_model (gpt2), 2 d_model (the others)
    n_ctx: int = 1024
    tie_embeddings: bool = False
    seed: int = 0
    sliding_window: int = 8  # gemma3: tokens a local (sliding-window) layer sees
    global_every: int = 2  # gemma3: every global_every-th layer attends globally, the rest locally


TINY_MODELS: dict[str, TinyModelConfig] = {
    "tiny-gpt2": TinyModelConfig(architecture="gpt2"),
    "tiny-llama": TinyModelConfig(architecture="llama", n_layers=3, n_kv_heads=2),
    # layers: local, global, local, global; one KV head shared by the four query heads; QK-norm
    "tiny-gemma3": TinyModelConfig(
        architecture="gemma3", n_layers=4, n_kv_heads=1, tie_embeddings=True
    ),
    "tiny-qwen2": TinyModelConfig(architecture="qwen2", n_layers=3, n_kv_heads=2),
}


def cache_root() -> Path:
    """Where dps_lens keeps built models: ``$DPS_LENS_HOME`` or ``~/.cache/dps_lens``."""
    return Path(os.environ.get("DPS_LENS_HOME", Path.home() / ".cache" / "dps_lens"))


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """A 259-token byte-level tokenizer: 3 special tokens, then the 256 byte symbols, no merges."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *sorted(alphabet)])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<|pad|>", bos_token="<|bos|>", eos_token="<|eos|>"
    )


_IDS: dict[str, Any] = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


def _gpt2_config(cfg: TinyModelConfig, vocab_size: int) -> PretrainedConfig:
    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=cfg.n_ctx,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layers,
        n_head=cfg.n_heads,
        n_inner=cfg.d_mlp,
        **_IDS,
    )


def _decoder_arguments(cfg: TinyModelConfig, vocab_size: int) -> dict[str, Any]:
    """The configuration fields Llama-style decoders share."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_mlp or 2 * cfg.d_model,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "max_position_embeddings": cfg.n_ctx,
        "tie_word_embeddings": cfg.tie_embeddings,
        **_IDS,
    }


def _llama_config(cfg: TinyModelConfig, vocab_size: int) -> PretrainedConfig:
    return LlamaConfig(**_decoder_arguments(cfg, vocab_size))


def _qwen2_config(cfg: TinyModelConfig, vocab_size: int) -> PretrainedConfig:
    return Qwen2Config(**_decoder_arguments(cfg, vocab_size))


def _gemma3_config(cfg: TinyModelConfig, vocab_size: int) -> PretrainedConfig:
    head_dim = cfg.d_model // cfg.n_heads
    return Gemma3TextConfig(
        **_decoder_arguments(cfg, vocab_size),
        head_dim=head_dim,
        query_pre_attn_scalar=head_dim,
        sliding_window=cfg.sliding_window,
        layer_types=[
            "full_attention" if (i + 1) % cfg.global_every == 0 else "sliding_attention"
            for i in range(cfg.n_layers)
        ],
    )


@dataclass(frozen=True)
class TinyFamily:
    """How to build one architecture: its HF configuration from a ``TinyModelConfig`` and vocab
    size, and the causal-LM class that takes it."""

    config: Callable[[TinyModelConfig, int], PretrainedConfig]
    model_class: type[PreTrainedModel]


TINY_FAMILIES: dict[str, TinyFamily] = {
    "gpt2": TinyFamily(_gpt2_config, GPT2LMHeadModel),
    "llama": TinyFamily(_llama_config, LlamaForCausalLM),
    "gemma3": TinyFamily(_gemma3_config, Gemma3ForCausalLM),
    "qwen2": TinyFamily(_qwen2_config, Qwen2ForCausalLM),
}


def hf_model(cfg: TinyModelConfig, vocab_size: int) -> PreTrainedModel:
    """A randomly initialised HF causal LM of shape ``cfg`` (pad 0, bos 1, eos 2)."""
    family = TINY_FAMILIES.get(cfg.architecture)
    if family is None:
        raise ValueError(
            f"unknown tiny architecture {cfg.architecture!r}; use one of {', '.join(TINY_FAMILIES)}"
        )
    return family.model_class(family.config(cfg, vocab_size))


def build_tiny_model(cfg: TinyModelConfig, out_dir: str | Path) -> Path:
    """Write a seeded random HF checkpoint (config, safetensors, tokenizer.json) to ``out_dir``."""
    out_dir = Path(out_dir)
    tokenizer = byte_level_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = hf_model(cfg, vocab_size=len(tokenizer))
    # Written directly, not by save_pretrained: under torchrun, transformers writes weights on
    # rank 0 only, and every rank builds its own copy before the first one is moved into place.
    out_dir.mkdir(parents=True, exist_ok=True)
    model.config.architectures = [type(model).__name__]  # what TransformerLens picks its adapter by
    model.config.save_pretrained(out_dir)
    save_weights(model, out_dir / "model.safetensors")
    tokenizer.save_pretrained(out_dir)
    return out_dir


def tiny_model_dir(name: str) -> Path:
    """Directory of the named tiny model, built on first use (atomically, safe across processes)."""
    cfg = TINY_MODELS[name]
    target = cache_root() / "models" / f"{name}-seed{cfg.seed}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        build_tiny_model(cfg, staging)
        with contextlib.suppress(OSError):  # another process finished first
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
