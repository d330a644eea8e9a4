"""Tokenize examples so that exactly the target tokens are marked for the loss.

Prompt and target are tokenized separately and concatenated, so the boundary is exact. When the
whole sequence does not fit the context, profile items are dropped from the front (oldest first)
until it does; the input and the target are never cut.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from dps_lens.data.example import PreferenceExample
from dps_lens.data.prompts import PromptTemplate
from dps_lens.errors import DpsLensError

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class EncodedExample:
    """Token ids of ``prompt + target``; ``input_ids[target_start:]`` are the target tokens."""

    input_ids: list[int]
    target_start: int
    n_profile_items: int  # profile items kept after truncation

    @property
    def n_target(self) -> int:
        return len(self.input_ids) - self.target_start


@dataclass(frozen=True)
class TargetBatch:
    """Right-padded batch. ``target_mask[b, t]`` is True where token t of row b is a target token."""

    tokens: Int[Tensor, "batch pos"]
    target_mask: Bool[Tensor, "batch pos"]

    @property
    def label_mask(self) -> Bool[Tensor, "batch pos_minus_1"]:
        """True at positions whose *next* token is a target token (where the loss is read)."""
        return self.target_mask[:, 1:]

    def to(self, device: torch.device | str | None) -> TargetBatch:
        return TargetBatch(self.tokens.to(device), self.target_mask.to(device))


@dataclass(frozen=True)
class Encoder:
    """Tokenizer + template + context limit: encodes examples for scoring and steering."""

    tokenizer: PreTrainedTokenizerBase
    template: PromptTemplate
    max_length: int
    prepend_bos: bool = True

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, input_text: str, profile: Sequence[str]) -> list[int]:
        ids = self._ids(self.template.render(input_text, profile, self.tokenizer))
        bos = self.tokenizer.bos_token_id
        if self.prepend_bos and not self.template.use_chat_template and bos is not None:
            ids = [bos, *ids]
        return ids

    def encode(self, example: PreferenceExample, with_target: bool = True) -> EncodedExample:
        """Encode one example, dropping the oldest profile items if the context is too short."""
        target = self._ids(example.target) if with_target else []
        if with_target and not target:
            raise DpsLensError(
                f"example of user {example.user_id!r} has an empty target; drop it or give a target"
            )
        profile = list(example.profile) if self.template.include_profile else []
        if self.template.include_profile and not profile:
            warnings.warn(
                f"user {example.user_id!r} has an empty profile: scoring it measures no preference",
                stacklevel=2,
            )
        for start in range(len(profile) + 1):
            prompt = self.prompt_ids(example.input, profile[start:])
            if len(prompt) + len(target) <= self.max_length:
                return EncodedExample(prompt + target, len(prompt), len(profile) - start)
        raise DpsLensError(
            f"example of user {example.user_id!r}: input + target alone take "
            f"{len(prompt) + len(target)} tokens, more than the context limit of {self.max_length}; "
            "shorten the input, raise --max-length up to the model's context, or use a longer-context model"
        )

    def profile_token_mask(self, example: PreferenceExample, encoded: EncodedExample) -> list[bool]:
        """True at the tokens of ``encoded`` that spell the profile items it kept.

        Needs a fast tokenizer (character offsets); profile tokens are those overlapping the
        ``History i:`` lines of the rendered prompt.
        """
        kept = list(example.profile)[len(example.profile) - encoded.n_profile_items :]
        mask = [False] * len(encoded.input_ids)
        if not kept or not self.template.include_profile:
            return mask
        text = self.template.render(example.input, kept, self.tokenizer)
        body = self.template.body(example.input, kept)
        start = text.find(body)
        end = start + len(body) - len(example.input) - 1  # the lines before "\n" + input
        if start < 0 or not getattr(self.tokenizer, "is_fast", False):
            raise DpsLensError(
                "marking profile tokens needs a fast (Rust) tokenizer with character offsets"
            )
        offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        shift = encoded.target_start - len(offsets["input_ids"])  # a prepended BOS
        for i, (first, last) in enumerate(offsets["offset_mapping"]):
            if first < end and last > start:
                mask[i + shift] = True
        return mask

    def encode_many(self, examples: Sequence[PreferenceExample]) -> list[EncodedExample]:
        return [self.encode(example) for example in examples]


def pad(
    rows: Sequence[Sequence[int]], pad_id: int, side: Literal["left", "right"] = "right"
) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
    """Token id rows padded with ``pad_id`` on ``side`` to the longest: ``(tokens, real)``, where
    ``real`` is True at the tokens of ``rows``."""
    if not rows:
        raise DpsLensError("cannot build a batch from zero examples")
    width = max(len(ids) for ids in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    real = torch.zeros((len(rows), width), dtype=torch.bool)
    for row, ids in enumerate(rows):
        span = slice(width - len(ids), width) if side == "left" else slice(0, len(ids))
        tokens[row, span] = torch.tensor(ids, dtype=torch.long)
        real[row, span] = True
    return tokens, real


def collate(encoded: Sequence[EncodedExample], pad_id: int) -> TargetBatch:
    """Right-pad encoded examples into one batch (right padding leaves causal logits unchanged)."""
    tokens, _ = pad([e.input_ids for e in encoded], pad_id)
    target_mask = torch.zeros_like(tokens, dtype=torch.bool)
    for row, example in enumerate(encoded):
        target_mask[row, example.target_start : len(example.input_ids)] = True
    return TargetBatch(tokens, target_mask)


def real_token_mask(encoded: Sequence[EncodedExample]) -> Bool[Tensor, "batch pos"]:
    """True at the real (non-padding) tokens of ``collate(encoded)``."""
    lengths = torch.tensor([len(e.input_ids) for e in encoded])
    return torch.arange(int(lengths.max()))[None, :] < lengths[:, None]


def encoder_for(
    model: TransformerBridge, template: PromptTemplate, max_length: int | None = None
) -> Encoder:
    """An ``Encoder`` for a loaded bridge; ``max_length`` defaults to (and may not exceed) its context."""
    n_ctx = int(model.cfg.n_ctx)
    if max_length is not None and max_length > n_ctx:
        raise DpsLensError(
            f"--max-length {max_length} exceeds the model's context of {n_ctx} tokens; use at most {n_ctx}"
        )
    return Encoder(
        tokenizer=model.tokenizer,
        template=template,
        max_length=max_length or n_ctx,
        prepend_bos=bool(getattr(model.cfg, "default_prepend_bos", True)),
    )


def pad_id_of(tokenizer: PreTrainedTokenizerBase) -> int:
    """The tokenizer's padding id, else its EOS id, else 0."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if isinstance(candidate, int):
            return candidate
    return 0
