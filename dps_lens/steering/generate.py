"""``generate``: KV-cached, batched decoding with DPS or a baseline, one entry point for all.

A contrastive method runs its two forwards as one batch: rows ``[0, B)`` are the full model
(the profile prompt, for CAD) and rows ``[B, 2B)`` the model it is contrasted with. For DPS the
batch is forked at the first masked layer (``fork_at``), so the layers below it are computed once.
DoLa reads its premature layers from the same forward: the last position of each candidate's
residual stream goes through the final norm and the unembedding (rows ``[B (1 + j), B (2 + j))``
for candidate ``j``). An editing method (attention emphasis, head shift, amplification) runs one
forward with its heads edited; those that read the profile get every prompt's profile span and
decoded positions (``PromptLayout``). Prompts are left-padded; positions and attention follow the
padding mask. With ``forced`` the tokens are not picked but taken from another generation
(teacher forcing), so two methods' scores can be compared step by step on the same output.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from dps_lens.data.encoding import (
    EncodedExample,
    check_profile_spans,
    encoder_for,
    pad,
    pad_id_of,
)
from dps_lens.data.example import PreferenceExample
from dps_lens.data.prompts import PromptTemplate, get_template
from dps_lens.errors import DpsLensError
from dps_lens.fork import duplicate_cache_rows, fork_at
from dps_lens.interventions import HeadMask, PromptLayout, ablate_heads
from dps_lens.steering.methods import Steering, plain
from dps_lens.steering.sampling import Sampling

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import Cache


@dataclass
class Generation:
    """Outputs in input order. ``token_ids`` exclude the stop token; ``scores[i]`` (when asked
    for) holds the scores the next token was picked from at every step, ``[steps, vocab]``."""

    prompt_ids: list[list[int]]
    token_ids: list[list[int]]
    texts: list[str]
    stopped: list[bool]
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    scores: list[Tensor] | None = field(default=None, repr=False)

    @property
    def n_generated(self) -> int:
        return sum(len(ids) for ids in self.token_ids)

    @property
    def seconds_per_token(self) -> float:
        """Wall time per generated token, prefill included."""
        return (self.prefill_seconds + self.decode_seconds) / max(self.n_generated, 1)


def stop_token_ids(model: TransformerBridge, extra: Sequence[int] = ()) -> set[int]:
    """EOS ids of the tokenizer and the generation config, plus ``extra``."""
    ids = set(extra)
    if model.tokenizer.eos_token_id is not None:
        ids.add(int(model.tokenizer.eos_token_id))
    config = getattr(getattr(model, "original_model", None), "generation_config", None)
    configured = getattr(config, "eos_token_id", None)
    if configured is not None:
        ids.update(int(i) for i in ([configured] if isinstance(configured, int) else configured))
    return ids


def _prompts(
    model: TransformerBridge,
    inputs: Sequence[str] | Sequence[PreferenceExample],
    template: PromptTemplate,
    max_new_tokens: int,
    without_profile: bool,
    max_length: int | None = None,
) -> list[EncodedExample]:
    """Every input's prompt (no target), with its profile span."""
    n_ctx = int(model.cfg.n_ctx)
    if max_length is not None and max_length > n_ctx:
        raise DpsLensError(
            f"max_length {max_length} exceeds the model's context of {n_ctx}; use at most {n_ctx}"
        )
    limit = max_length or n_ctx
    budget = limit - max_new_tokens
    if budget < 1:
        raise DpsLensError(
            f"max_new_tokens={max_new_tokens} leaves no room for a prompt within {limit} tokens"
        )
    examples = [x for x in inputs if isinstance(x, PreferenceExample)]
    if len(examples) == len(inputs):
        chosen = template.without_profile() if without_profile else template
        encoder = encoder_for(model, chosen, max_length=budget)
        return encoder.encode_many(examples, with_target=False)
    if without_profile:
        raise DpsLensError(
            "this method removes the profile from each prompt: pass PreferenceExamples "
            "(--data FILE), not prompt strings"
        )
    texts = [x for x in inputs if isinstance(x, str)]
    if len(texts) != len(inputs):
        raise DpsLensError("inputs must be all strings or all PreferenceExamples")
    bos = model.tokenizer.bos_token_id
    prepend = bool(getattr(model.cfg, "default_prepend_bos", True)) and bos is not None
    prompts = []
    for text in texts:
        ids = list(model.tokenizer(text, add_special_tokens=False)["input_ids"])
        ids = [bos, *ids] if prepend and (not ids or ids[0] != bos) else ids
        if not ids:
            raise DpsLensError("an empty prompt cannot be continued; give some text")
        if len(ids) > budget:
            raise DpsLensError(
                f"prompt of {len(ids)} tokens plus max_new_tokens={max_new_tokens} exceeds the "
                f"limit of {limit} tokens (the model's context is {n_ctx}); shorten the prompt "
                "or lower max_new_tokens"
            )
        prompts.append(EncodedExample(ids, len(ids), 0))
    return prompts


@dataclass
class _Batch:
    """One chunk of prompts being decoded together (``layout``: where each prompt and its
    profile sit in the left-padded batch, for methods that read them)."""

    model: TransformerBridge
    steering: Steering
    weights: Float[Tensor, "batch n_layers n_heads"] | None
    layout: PromptLayout | None = None

    @property
    def forks(self) -> bool:
        return self.steering.contrast == "heads"

    @functools.cached_property
    def fork_layer(self) -> int:
        layers = HeadMask(self.weights).layers if self.weights is not None else []
        return min(layers) if layers else 0

    @functools.cached_property
    def row_weights(self) -> Float[Tensor, "rows2 n_layers n_heads"]:
        """No mask on the full-model copy, the chunk's weights on the masked copy."""
        assert self.weights is not None
        return torch.cat([torch.zeros_like(self.weights), self.weights])

    def forward(
        self,
        tokens: Int[Tensor, "rows new"],
        attention: Int[Tensor, "rows pos"],
        cache: Cache | None,
        fork: bool,
    ) -> tuple[Float[Tensor, "out_rows vocab"], Cache]:
        """Last-position logits (float32) and the extended cache."""
        model, device, steering = self.model, self.model.cfg.device, self.steering
        stack = contextlib.ExitStack()
        with stack:
            if fork:
                stack.enter_context(fork_at(model, self.fork_layer))
                key_mask: Bool[Tensor, "rows2 pos"] = attention.bool().repeat(2, 1)
                layout = self.layout.repeat(2) if self.layout is not None else None
                stack.enter_context(
                    ablate_heads(
                        model, self.row_weights, steering.mode, steering.means, key_mask, layout
                    )
                )
            elif steering.contrast == "edit":
                assert self.weights is not None
                stack.enter_context(
                    ablate_heads(
                        model, self.weights, steering.mode, steering.means, attention.bool(),
                        self.layout,
                    )
                )  # fmt: skip
            early: list[Tensor] = []
            if self.steering.layers is not None:
                names = self.steering.layers.hook_names()
                keep = [(name, lambda act, hook: early.append(act[:, -1:])) for name in names]
                stack.enter_context(model.hooks(fwd_hooks=keep))
            logits, extended = model(
                tokens.to(device),
                attention_mask=attention.to(device),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
                return_type="logits_and_cache",
            )
            if early:  # candidates' early exits after the final rows
                early_logits = model.unembed(model.ln_final(torch.cat(early)))
                logits = torch.cat([logits[:, -1:], early_logits])
        _check_cache_filled(extended, attention.shape[1])
        return logits[:, -1].float(), extended

    def prefill(
        self, tokens: Int[Tensor, "rows pos"], attention: Int[Tensor, "rows pos"]
    ) -> tuple[Float[Tensor, "out_rows vocab"], Cache]:
        if self.forks and self.steering.masked_run == "shared_prefill" and tokens.shape[1] > 1:
            _, cache = self.forward(tokens[:, :-1], attention[:, :-1], None, fork=False)
            duplicate_cache_rows(cache, self.fork_layer)
            return self.forward(tokens[:, -1:], attention, cache, fork=True)
        return self.forward(tokens, attention, None, fork=self.forks)

    def scores(
        self, logits: Float[Tensor, "rows vocab"], batch: int
    ) -> Float[Tensor, "batch vocab"]:
        if self.steering.contrast in ("none", "edit"):
            return logits.log_softmax(-1)
        if self.steering.layers is not None:
            early = logits[batch:].reshape(-1, batch, logits.shape[-1])
            return self.steering.layers.combine(logits[:batch], early)
        return self.steering.rule.combine(logits[:batch], logits[batch:])


def _check_cache_filled(cache: Cache, positions: int) -> None:
    """The cache must hold every position seen so far: a bridge and a transformers release that
    disagree on how the cache reaches attention leave it empty, and decoding would go on silently
    from the newest token alone."""
    import transformers

    held = cache.get_seq_length() if cache is not None else 0
    if held != positions:
        raise DpsLensError(
            f"the KV cache holds {held} of {positions} positions: transformers "
            f"{transformers.__version__} does not fill the cache of this TransformerLens "
            "release; install a release dps-lens supports (pip install -e . picks one)"
        )


def _sync(model: TransformerBridge) -> None:
    if str(model.cfg.device).startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def _generate_chunk(
    chunk: _Batch,
    prompts: list[list[int]],
    alt_prompts: list[list[int]] | None,
    sampling: Sampling,
    generator: torch.Generator | None,
    max_new_tokens: int,
    stop_ids: set[int],
    record_scores: bool,
    forced: list[tuple[list[int], int]] | None = None,
) -> tuple[list[list[int]], list[bool], list[Tensor] | None, float, float]:
    """Decode one chunk; with ``forced`` (per row: the tokens to feed, and the number of steps to
    score), the tokens come from there instead of being picked."""
    model = chunk.model
    pad_id = pad_id_of(model.tokenizer)
    batch = len(prompts)
    if forced is not None:
        max_new_tokens = max(1, *(steps for _, steps in forced))
        fed = torch.tensor([ids + [pad_id] * (max_new_tokens - len(ids)) for ids, _ in forced])
        last_step = torch.tensor([steps for _, steps in forced]) - 1
    tokens, real = pad(prompts + (alt_prompts or []), pad_id, side="left")
    attention = real.long()
    stops = torch.tensor(sorted(stop_ids), dtype=torch.long)
    _sync(model)
    start = time.perf_counter()
    logits, cache = chunk.prefill(tokens, attention)
    _sync(model)
    prefill_seconds = time.perf_counter() - start
    start = time.perf_counter()
    picked: list[Tensor] = []
    recorded: list[Tensor] = []
    finished = torch.zeros(batch, dtype=torch.bool)
    for step in range(max_new_tokens):
        scores = chunk.scores(logits, batch)
        if record_scores:
            recorded.append(scores.cpu())
        if forced is not None:
            token = fed[:, step].masked_fill(finished, pad_id)
            finished |= last_step <= step
        else:
            token = sampling.pick(scores, generator).cpu().masked_fill(finished, pad_id)
            finished |= torch.isin(token, stops)
        picked.append(token)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        step_tokens = token[:, None].repeat(tokens.shape[0] // batch, 1)
        attention = torch.cat([attention, torch.ones(len(attention), 1, dtype=torch.long)], 1)
        logits, cache = chunk.forward(step_tokens, attention, cache, fork=chunk.forks)
    _sync(model)
    decode_seconds = time.perf_counter() - start
    steps = torch.stack(picked, 1)
    outputs, stopped, n_scored = [], [], []
    for i, row in enumerate(steps.tolist()):
        if forced is not None:
            ids, n_steps = forced[i]
            outputs.append(list(ids))
            stopped.append(n_steps > len(ids))
            n_scored.append(n_steps)
            continue
        cut = next((i for i, t in enumerate(row) if t in stop_ids), None)
        outputs.append(row if cut is None else row[:cut])
        stopped.append(cut is not None)
        n_scored.append(len(outputs[-1]) + int(stopped[-1]))
    scores_out = None
    if record_scores:
        stacked = torch.stack(recorded, 1)  # [batch, steps, vocab]
        scores_out = [stacked[i, : n_scored[i]] for i in range(batch)]
    return outputs, stopped, scores_out, prefill_seconds, decode_seconds


def forced_row(forced: Generation, index: int) -> tuple[list[int], int]:
    """Output ``index`` of ``forced`` as teacher forcing feeds it: its tokens, and the steps to
    score (one more than its tokens when it stopped: the step that picked the stop token)."""
    ids = forced.token_ids[index]
    return ids, len(ids) + int(forced.stopped[index])


def _template_of(steering: Steering, template: PromptTemplate | str | None) -> PromptTemplate:
    return steering.template or (
        get_template(template) if isinstance(template, str) else template or get_template("history")
    )


def batch_plan(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Input indices in the batches ``generate`` decodes: sorted by prompt length (ties in input
    order), ``batch_size`` at a time. Decoding a batch's inputs alone, in this order and with
    ``batch_size=len(batch)``, reproduces the same batch."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def prompt_token_ids(
    model: TransformerBridge,
    inputs: Sequence[str] | Sequence[PreferenceExample],
    steering: Steering | None = None,
    max_new_tokens: int = 32,
    template: PromptTemplate | str | None = None,
    max_length: int | None = None,
) -> list[list[int]]:
    """Every input's prompt tokens exactly as ``generate`` encodes them (for ``batch_plan``)."""
    steering = steering or plain()
    chosen = _template_of(steering, template)
    prompts = _prompts(model, inputs, chosen, max_new_tokens, not steering.profile, max_length)
    return [p.input_ids for p in prompts]


def generate(
    model: TransformerBridge,
    inputs: str | PreferenceExample | Sequence[str] | Sequence[PreferenceExample],
    steering: Steering | None = None,
    sampling: Sampling | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 8,
    template: PromptTemplate | str | None = None,
    extra_stop_ids: Sequence[int] = (),
    stop_at_eos: bool = True,
    max_length: int | None = None,
    return_scores: bool = False,
    progress: bool = False,
    forced: Generation | None = None,
) -> Generation:
    """Decode a continuation of every input with ``steering`` (default: plain greedy).

    ``inputs`` are prompt strings or ``PreferenceExample``s; a single string (or example) is one
    prompt, giving a ``Generation`` of one output. Examples are rendered with ``template`` (default
    ``history``; the oldest profile items are dropped if the prompt plus ``max_new_tokens`` would
    exceed ``max_length``, by default the model's context). Decoding stops at an EOS id (of the
    tokenizer and generation config; unless ``stop_at_eos`` is False), at ``extra_stop_ids``, or
    after ``max_new_tokens``. Inputs are batched by similar length.

    ``forced``: a generation of the same inputs whose tokens are fed instead of picked (teacher
    forcing); ``scores`` then hold this method's scores at each of ``forced``'s steps (its
    tokens, plus the step that picked its stop token when it stopped).
    """
    steering = steering or plain()
    sampling = sampling or Sampling()
    prompts_in: Sequence[str] | Sequence[PreferenceExample]
    if isinstance(inputs, str):
        prompts_in = [inputs]  # one prompt, not a sequence of characters
    elif isinstance(inputs, PreferenceExample):
        prompts_in = [inputs]
    else:
        prompts_in = inputs
    if not prompts_in:
        raise DpsLensError("generate needs at least one input")
    if max_new_tokens < 1 or batch_size < 1:
        raise DpsLensError("max_new_tokens and batch_size must be at least 1")
    chosen = _template_of(steering, template)
    encoded = _prompts(model, prompts_in, chosen, max_new_tokens, not steering.profile, max_length)
    if steering.reads_profile_span:
        if not all(isinstance(x, PreferenceExample) for x in prompts_in):
            raise DpsLensError(
                f"method {steering.name!r} acts on each prompt's profile: pass PreferenceExamples "
                "(--data FILE), not prompt strings"
            )
        check_profile_spans(encoded, f"method {steering.name!r}")
    prompts = [e.input_ids for e in encoded]
    alt = (
        [e.input_ids for e in _prompts(model, prompts_in, chosen, max_new_tokens, True, max_length)]
        if steering.contrast == "profile"
        else None
    )
    if forced is not None and len(forced.token_ids) != len(prompts):
        raise DpsLensError(
            f"the forced generation has {len(forced.token_ids)} outputs for {len(prompts)} inputs"
        )
    weights = steering.weights
    if weights is not None:
        weights = weights.float().to(model.cfg.device)
        if weights.dim() == 3 and weights.shape[0] != len(prompts_in):
            raise DpsLensError(
                f"per-input head weights have {weights.shape[0]} maps for {len(prompts_in)} inputs"
            )
    stop_ids = stop_token_ids(model, extra_stop_ids) if stop_at_eos else set(extra_stop_ids)
    generator = sampling.generator(model.cfg.device)
    n = len(prompts)
    token_ids: list[list[int]] = [[] for _ in range(n)]
    stopped = [False] * n
    scores: list[Tensor] = [torch.empty(0)] * n
    prefill = decode = 0.0
    bar = tqdm(total=n, desc=f"generate ({steering.name})", unit="input", disable=not progress)
    for rows in batch_plan([len(p) for p in prompts], batch_size):
        chunk_weights = None
        if weights is not None:
            chunk_weights = (
                weights[rows] if weights.dim() == 3 else weights.expand(len(rows), -1, -1)
            )
        layout = (
            PromptLayout.left_padded(
                [len(prompts[i]) for i in rows], [encoded[i].profile_span for i in rows]
            )
            if steering.reads_profile_span
            else None
        )
        out, stop, chunk_scores, seconds_in, seconds_out = _generate_chunk(
            _Batch(model, steering, chunk_weights, layout),
            [prompts[i] for i in rows],
            [alt[i] for i in rows] if alt is not None else None,
            sampling,
            generator,
            max_new_tokens,
            stop_ids,
            return_scores,
            None if forced is None else [forced_row(forced, i) for i in rows],
        )
        prefill += seconds_in
        decode += seconds_out
        for j, i in enumerate(rows):
            token_ids[i], stopped[i] = out[j], stop[j]
            if chunk_scores is not None:
                scores[i] = chunk_scores[j]
        bar.update(len(rows))
    bar.close()
    texts = [model.tokenizer.decode(ids, skip_special_tokens=True) for ids in token_ids]
    return Generation(
        prompts, token_ids, texts, stopped, prefill, decode, scores if return_scores else None
    )
