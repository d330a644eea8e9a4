"""Where each row's prompt, profile span and answer sit in a padded batch.

Row ``i``'s prompt occupies positions ``[offset_i, offset_i + length_i)``; its profile span
``[offset_i + start_i, offset_i + end_i)``; every later position is its answer (the gold target
in a scan, generated tokens in ``generate``). Left-padded batches (decoding) have ``offset_i =
width − length_i``, right-padded ones (scans) ``offset_i = 0``. The *decoded positions* are the
last prompt token and every later one: the positions whose output picks an answer token.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool
from torch import Tensor

from dps_lens.errors import DpsLensError


@dataclass(frozen=True)
class PromptLayout:
    offsets: tuple[int, ...]
    lengths: tuple[int, ...]
    spans: tuple[tuple[int, int] | None, ...]  # None: unknown (no character offsets)

    def __post_init__(self) -> None:
        if not len(self.offsets) == len(self.lengths) == len(self.spans):
            raise DpsLensError("a prompt layout needs one offset, length and span per row")

    @classmethod
    def left_padded(
        cls, lengths: Sequence[int], spans: Sequence[tuple[int, int] | None]
    ) -> PromptLayout:
        """Prompts of ``lengths`` left-padded to the longest (``generate``'s batches)."""
        width = max(lengths)
        return cls(tuple(width - n for n in lengths), tuple(lengths), tuple(spans))

    @classmethod
    def right_padded(
        cls, lengths: Sequence[int], spans: Sequence[tuple[int, int] | None]
    ) -> PromptLayout:
        """Prompts of ``lengths`` starting at position 0, answers after them (scans)."""
        return cls((0,) * len(lengths), tuple(lengths), tuple(spans))

    def repeat(self, copies: int) -> PromptLayout:
        """The layout of the batch repeated ``copies`` times along the rows."""
        return PromptLayout(self.offsets * copies, self.lengths * copies, self.spans * copies)

    def __len__(self) -> int:
        return len(self.offsets)

    @functools.cache  # noqa: B019  (a frozen, hashable layout: one entry per width seen)
    def profile_keys(
        self, width: int
    ) -> tuple[Bool[Tensor, "rows width"], Bool[Tensor, "rows width"]]:
        """``(profile, other_prompt)``: True at each row's profile tokens, and at its prompt tokens
        outside the profile span (answer positions and padding are in neither)."""
        positions = torch.arange(width)[None, :]
        offsets = torch.tensor(self.offsets)[:, None]
        lengths = torch.tensor(self.lengths)[:, None]
        if any(span is None for span in self.spans):
            raise DpsLensError(
                "marking the profile tokens needs a fast (Rust) tokenizer with character "
                "offsets: load the model with its tokenizer.json"
            )
        starts = torch.tensor([span[0] for span in self.spans if span is not None])[:, None]
        ends = torch.tensor([span[1] for span in self.spans if span is not None])[:, None]
        prompt = (positions >= offsets) & (positions < offsets + lengths)
        profile = (positions >= offsets + starts) & (positions < offsets + ends)
        return profile, prompt & ~profile

    @functools.cache  # noqa: B019
    def decoded_positions(self, width: int) -> Bool[Tensor, "rows width"]:
        """True from each row's last prompt token on."""
        last = torch.tensor(self.offsets)[:, None] + torch.tensor(self.lengths)[:, None] - 1
        return torch.arange(width)[None, :] >= last

    @property
    def has_profile(self) -> bool:
        """Whether some row has a non-empty profile span."""
        return any(span is None or span[1] > span[0] for span in self.spans)
