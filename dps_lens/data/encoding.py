"""Tokenize examples so that exactly the target tokens are marked for the loss.

Prompt and target are tokenized separately and concatenated, so the boundary is exact. When the
whole sequence does not fit the context, profile items are dropped from the front (oldest first)
until it does; the input and the target are never cut. Every encoded prompt records its *profile
span*: the token positions of the history lines it kept (from the tokenizer's character offsets),
which the profile-reading interventions and the audit's attention share act on.
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
    """Token ids of ``prompt + target``; ``input_ids[target_start:]`` are the target tokens.

    ``profile_span = (start, end)``: ``input_ids[start:end]`` spell the kept profile items' lines
    (``(0, 0)`` without a profile; ``None`` when the tokenizer gives no character offsets)."""

    input_ids: list[int]
    target_start: int
    n_profile_items: int  # profile items kept after truncation
    profile_span: tuple[int, int] | None = (0, 0)

    @property
    def n_target(self) -> int:
        return len(self.input_ids) - self.target_start

    def span(self) -> tuple[int, int]:
        """``profile_span``, or a ``DpsLensError`` naming the fix when it is unknown."""
        if self.profile_span is None:
            raise DpsLensError(
                "marking the profile tokens needs a fast (Rust) tokenizer with character "
                "offsets: load the model with its tokenizer.json"
            )
        return self.profile_span

    def profile_mask(self) -> list[bool]:
        """True at the tokens of ``input_ids`` inside the profile span."""
        start, end = self.span()
        return [start <= i < end for i in range(len(self.input_ids))]


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

    def prompt(
        self, input_text: str, profile: Sequence[str]
    ) -> tuple[list[int], tuple[int, int] | None]:
        """The prompt's token ids and its profile span (tokens overlapping the characters of the
        ``History i:`` lines; ``None`` for a tokenizer without character offsets)."""
        text = self.template.render(input_text, profile, self.tokenizer)
        items = list(profile) if self.template.include_profile else []
        fast = bool(getattr(self.tokenizer, "is_fast", False))
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=fast)
        ids = list(encoded["input_ids"])
        bos = self.tokenizer.bos_token_id
        shift = 0
        if self.prepend_bos and not self.template.use_chat_template and bos is not None:
            ids, shift = [bos, *ids], 1
        if not items:
            return ids, (0, 0)
        if not fast:
            return ids, None
        history = self.template.history(items)
        first = text.find(self.template.body(input_text, items))
        if first < 0:
            raise DpsLensError(
                f"template {self.template.name!r} rendered a prompt that does not contain its "
                "profile lines verbatim; the profile span cannot be marked"
            )
        last = first + len(history)
        inside = [i for i, (a, b) in enumerate(encoded["offset_mapping"]) if a < last and b > first]
        return ids, (inside[0] + shift, inside[-1] + 1 + shift)

    def prompt_ids(self, input_text: str, profile: Sequence[str]) -> list[int]:
        return self.prompt(input_text, profile)[0]

    def encode(self, example: PreferenceExample, with_target: bool = True) -> EncodedExample:
        """Encode one example, dropping the oldest profile items if the context is too short
        (a warning when the template includes a profile and the example has none)."""
        encoded = self._encode(example, with_target)
        warn_empty_profiles([example] if self.reads_profile(example) else [])
        return encoded

    def reads_profile(self, example: PreferenceExample) -> bool:
        """Whether the template asks for a profile that ``example`` lacks."""
        return self.template.include_profile and not example.profile

    def _encode(self, example: PreferenceExample, with_target: bool) -> EncodedExample:
        target = self._ids(example.target) if with_target else []
        if with_target and not target:
            raise DpsLensError(
                f"example of user {example.user_id!r} has an empty target; drop it or give a target"
            )
        profile = list(example.profile) if self.template.include_profile else []
        for start in range(len(profile) + 1):
            prompt, span = self.prompt(example.input, profile[start:])
            if len(prompt) + len(target) <= self.max_length:
                return EncodedExample(prompt + target, len(prompt), len(profile) - start, span)
        raise DpsLensError(
            f"example of user {example.user_id!r}: input + target alone take "
            f"{len(prompt) + len(target)} tokens, more than the context limit of {self.max_length}; "
            "shorten the input, raise --max-length up to the model's context, or use a longer-context model"
        )

    def encode_many(
        self, examples: Sequence[PreferenceExample], with_target: bool = True
    ) -> list[EncodedExample]:
        """``encode`` of every example, with one warning for all those without a profile."""
        encoded = [self._encode(example, with_target) for example in examples]
        warn_empty_profiles([e for e in examples if self.reads_profile(e)])
        return encoded


def warn_empty_profiles(examples: Sequence[PreferenceExample]) -> None:
    """One warning naming the users of ``examples`` (examples without a profile), if any."""
    users = list(dict.fromkeys(e.user_id for e in examples))
    if not users:
        return
    shown = ", ".join(repr(u) for u in users[:5]) + (
        f" and {len(users) - 5} more" if len(users) > 5 else ""
    )
    if len(users) == 1:
        text = f"user {shown} has an empty profile: scoring it measures no preference"
    else:
        text = f"{len(users)} users have an empty profile ({shown}): scoring them measures no preference"
    warnings.warn(text, stacklevel=3)


def check_profile_spans(encoded: Sequence[EncodedExample], reader: str) -> None:
    """Refuse data on which ``reader`` (a profile-reading intervention or method) acts on nothing:
    spans that cannot be marked, or no prompt with a profile at all."""
    spans = [e.span() for e in encoded]
    if not any(end > start for start, end in spans):
        raise DpsLensError(
            f"{reader} acts on the profile, but no prompt has one: give data whose examples "
            "have profiles, and a template that includes them (history or chat)"
        )


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
