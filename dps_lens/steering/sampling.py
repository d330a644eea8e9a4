"""Picking the next token from (combined) scores: greedy, temperature and nucleus sampling."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from dps_lens.errors import DpsLensError


@dataclass(frozen=True)
class Sampling:
    """``temperature = 0`` is greedy decoding; otherwise sample from ``softmax(scores / T)``
    restricted to the smallest token set with probability ≥ ``top_p``; ``seed`` makes it repeatable."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise DpsLensError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise DpsLensError(f"top_p must be within (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def generator(self, device: torch.device | str | None) -> torch.Generator | None:
        if self.greedy or self.seed is None:
            return None
        return torch.Generator(device=device).manual_seed(self.seed)

    def pick(
        self, scores: Float[Tensor, "batch vocab"], generator: torch.Generator | None = None
    ) -> Int[Tensor, " batch"]:
        """The next token of every row (scores may hold ``-inf`` for forbidden tokens)."""
        if self.greedy:
            return scores.argmax(-1)
        probs = (scores.float() / self.temperature).softmax(-1)
        if self.top_p < 1.0:
            sorted_probs, order = probs.sort(-1, descending=True)
            before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the tokens ranked above
            sorted_probs = sorted_probs.masked_fill(before >= self.top_p, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
