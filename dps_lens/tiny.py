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
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

SPECIAL_TOKENS = ("<|pad|>", "<|bos|>", "<|eos|>")


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of a tiny random model. ``n_kv_heads < n_heads`` gives grouped-query attention."""

    architecture: str = "gpt2"  # "gpt2" or "llama"
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 4
    d_model: int = 64
    d_mlp: int | None = None  # default: 4 d_model (gpt2), 2 d_model (llama)
    n_ctx: int = 1024
    tie_embeddings: bool = False
    seed: int = 0


TINY_MODELS: dict[str, TinyModelConfig] = {
    "tiny-gpt2": TinyModelConfig(architecture="gpt2"),
    "tiny-llama": TinyModelConfig(architecture="llama", n_layers=3, n_kv_heads=2),
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


def hf_model(cfg: TinyModelConfig, vocab_size: int) -> PreTrainedModel:
    """A randomly initialised HF causal LM of shape ``cfg`` (pad 0, bos 1, eos 2)."""
    hf_cfg: PretrainedConfig
    if cfg.architecture == "gpt2":
        hf_cfg = GPT2Config(
            vocab_size=vocab_size,
            n_positions=cfg.n_ctx,
            n_embd=cfg.d_model,
            n_layer=cfg.n_layers,
            n_head=cfg.n_heads,
            n_inner=cfg.d_mlp,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
        return GPT2LMHeadModel(hf_cfg)
    if cfg.architecture == "llama":
        hf_cfg = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=cfg.d_model,
            intermediate_size=cfg.d_mlp or 2 * cfg.d_model,
            num_hidden_layers=cfg.n_layers,
            num_attention_heads=cfg.n_heads,
            num_key_value_heads=cfg.n_kv_heads,
            max_position_embeddings=cfg.n_ctx,
            tie_word_embeddings=cfg.tie_embeddings,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
        return LlamaForCausalLM(hf_cfg)
    raise ValueError(f"unknown tiny architecture {cfg.architecture!r}; use 'gpt2' or 'llama'")


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
    model.config.save_pretrained(out_dir)
    save_model(model, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
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
