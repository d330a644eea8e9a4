"""Personalization rate: the share of greedy answers whose first word is the user's favourite item.

The first greedy token is the argmax of the next-token logits after the prompt, so one batched
forward per chunk gives the rate exactly, with or without heads masked.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from dps_lens.data.encoding import encoder_for, pad, pad_id_of
from dps_lens.data.example import PreferenceExample
from dps_lens.data.prompts import PromptTemplate, get_template
from dps_lens.errors import DpsLensError
from dps_lens.evaluation.metrics import personalized
from dps_lens.heads import Head, draw_random_heads
from dps_lens.interventions import ablate_heads, reference_means

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


def prompt_batches(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    template: PromptTemplate | None = None,
    batch_size: int = 64,
) -> Iterator[tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]]:
    """Right-padded prompt batches (no target): ``(tokens, real_token_mask)``."""
    encoder = encoder_for(model, template or get_template("history"))
    prompts = [e.input_ids for e in encoder.encode_many(examples, with_target=False)]
    pad_id = pad_id_of(model.tokenizer)
    for start in range(0, len(prompts), batch_size):
        yield pad(prompts[start : start + batch_size], pad_id)


@torch.no_grad()
def next_token_logits(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    template: PromptTemplate | None = None,
    heads: Sequence[Head] = (),
    mode: str = "zero",
    means: Tensor | None = None,
    batch_size: int = 64,
) -> Float[Tensor, "n_examples vocab"]:
    """Logits of the first answer token for every example, with ``heads`` masked in ``mode``."""
    out = []
    for tokens, key_mask in prompt_batches(model, examples, template, batch_size):
        lengths = key_mask.sum(-1)
        masked = (
            ablate_heads(model, heads, mode=mode, means=means, key_mask=key_mask)
            if heads
            else contextlib.nullcontext()
        )
        with masked:
            logits = model(tokens.to(model.cfg.device), return_type="logits")
        out.append(logits[torch.arange(len(tokens)), lengths.to(logits.device) - 1].float().cpu())
    return torch.cat(out)


def personalization_rate(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    template: PromptTemplate | None = None,
    heads: Sequence[Head] = (),
    mode: str = "zero",
    means: Tensor | None = None,
) -> float:
    """Share of ``examples`` whose greedy first answer token is ``meta["preferred"]``
    (``evaluation.metrics.personalized``)."""
    if not examples:
        raise DpsLensError("personalization rate of zero examples is undefined")
    if any("preferred" not in e.meta for e in examples):
        raise DpsLensError("personalization rate needs organism examples (meta['preferred'])")
    tokens = next_token_logits(model, examples, template, heads, mode, means).argmax(-1)
    answers = [model.tokenizer.decode([int(token)]) for token in tokens]
    return sum(map(personalized, answers, examples)) / len(examples)


def personalization_rates(
    model: TransformerBridge, examples: Sequence[PreferenceExample]
) -> dict[str, float]:
    """Rates with the profile (``full``) and with the no-profile prompt (``no_profile``)."""
    return {
        "full": personalization_rate(model, examples),
        "no_profile": personalization_rate(model, examples, get_template("no-profile")),
    }


def masking_curve(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    ranking: Sequence[Head],
    ks: Sequence[int],
    mode: str = "zero",
    n_random: int = 10,
    seed: int = 0,
    means: Tensor | None = None,
) -> list[dict[str, Any]]:
    """Rate with the top-K heads of ``ranking`` masked, and with K random heads masked.

    Random heads are drawn (seeded, ``n_random`` draws per K) from the model's heads *outside*
    the top-K set, the paper's control: the same number of heads that are not preference heads.
    When fewer than K heads lie outside the set the random entry is None.
    """
    if mode == "mean" and means is None:
        means = reference_means(model, examples)
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    rng = random.Random(seed)
    rows = []
    for k in ks:
        top = list(ranking[:k])
        row: dict[str, Any] = {
            "k": k,
            "top_k": personalization_rate(model, examples, None, top, mode, means),
        }
        if n_layers * n_heads - len(set(top)) >= k:
            draws = [
                personalization_rate(
                    model,
                    examples,
                    None,
                    draw_random_heads(top, n_layers, n_heads, rng.getrandbits(32), k),
                    mode,
                    means,
                )
                for _ in range(n_random)
            ]
            row.update(
                random_mean=sum(draws) / len(draws),
                random_std=float(torch.tensor(draws).std()) if n_random > 1 else 0.0,
                random_min=min(draws),
                random_max=max(draws),
            )
        else:
            row.update(random_mean=None, random_std=None, random_min=None, random_max=None)
        rows.append(row)
    return rows
