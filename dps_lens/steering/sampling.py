"""Picking the next token from (combined) scores: greedy, temperature and nucleus sampling."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from dps_lens.checks import check_float
from dps_lens.errors import DpsLensError


@dataclass(frozen=True)
class Sampling:
    """``temperature = 0`` is greedy decoding; otherwise sample from ``softmax(scores / T)``
    restricted to the smallest token set with probability ≥ ``top_p``; ``seed`` makes it repeatable."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        check_float("temperature", self.temperature, low=0.0)
        check_float("top_p", self.top_p, low=0.0, high=1.0, low_open=True)
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise DpsLensError(f"seed must be an integer or None, got {self.seed!r}")

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
