"""Exact Preference Contribution Scores: ``PCS(h) = E[L(M \\ h) - L(M)]`` by ablating every head.

The work is every (example, head) cell. One forward pass scores several heads of one layer on
several examples (at most ``batch_size`` cells): the examples run the blocks below that layer
once, then the batch is forked into one copy per head, each with its head ablated (``fork_at``);
logits are computed at the target positions only. The partial result is checkpointed after every
forward (atomic write), so a killed scan resumes without recomputing finished cells.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from simple_parsing import field
from torch import Tensor
from tqdm.auto import tqdm

from dps_lens._io import atomic_write, atomic_write_json
from dps_lens.data.encoding import (
    EncodedExample,
    Encoder,
    collate,
    encoder_for,
    pad_id_of,
    real_token_mask,
)
from dps_lens.data.example import PreferenceExample, data_hash
from dps_lens.data.prompts import PromptTemplate
from dps_lens.errors import DpsLensError, NonFiniteLossError
from dps_lens.fork import fork_at
from dps_lens.heads import Head, all_heads, check_head
from dps_lens.interventions import ablate_heads, get_ablation, head_means
from dps_lens.scoring.attribution import attribution_batch
from dps_lens.scoring.head_scores import HeadScores
from dps_lens.scoring.loss import forward_nll

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

from dps_lens.scoring.patching import DIRECTIONS, patched_losses, source_activations

CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_META = "checkpoint.json"


COMPOSITE_METHODS = ("hybrid",)


def scan_method_names() -> tuple[str, ...]:
    """Every scan method: the registered planners and the composite ones."""
    return (*SCAN_METHODS, *COMPOSITE_METHODS)


def parse_batch_size(text: str) -> int:
    """``auto`` (0: from free memory) or a positive integer."""
    return 0 if text == "auto" else int(text)


@dataclass(frozen=True)
class ScanConfig:
    """Settings of a head scan.

    ``method``: ``exact`` (ablation, the definition of PCS), ``attribution`` (first-order
    estimate, ``ig_steps`` > 0 for integrated gradients), ``hybrid`` (attribution ranks every
    head, the top ``hybrid_top`` are scored exactly) or ``activation-patching`` (profile vs
    no-profile run, ``direction`` noising or denoising).
    ``batch_size`` is the number of (example × head) rows per forward pass (examples per batch
    for attribution); 0 picks it from free memory, and a larger size than fits in free memory
    is lowered (``auto_batch_size``). ``heads`` restricts the scan to some heads (default: all).
    """

    mode: str = "zero"  # how a head is removed: a registered ablation (zero, mean, uniform, oproj_slice, ...)
    batch_size: int = field(
        default=16, type=parse_batch_size
    )  # ablation rows per forward pass, or auto (from free memory)
    seed: int = 0  # bootstrap seed
    n_bootstrap: int = 1000  # bootstrap resamples of every interval
    template: str = "history"  # prompt template: history, chat or no-profile
    max_length: int | None = None  # token limit per example (default: the model's context)
    heads: tuple[Head, ...] | None = field(
        default=None, cmd=False
    )  # only these heads (default all)
    method: str = "exact"  # exact, attribution, hybrid or activation-patching
    ig_steps: int = 0  # attribution: integrated-gradient steps (0: plain attribution patching)
    hybrid_top: int = 20  # hybrid: heads rescored exactly after attribution
    direction: str = "noising"  # activation patching: noising or denoising

    def __post_init__(self) -> None:
        get_ablation(self.mode)  # raises, naming the registered modes
        if self.method not in scan_method_names():
            raise DpsLensError(
                f"unknown method {self.method!r}; use one of {', '.join(scan_method_names())}"
            )
        if self.direction not in DIRECTIONS:
            raise DpsLensError(
                f"unknown direction {self.direction!r}; use {' or '.join(DIRECTIONS)}"
            )
        if self.batch_size < 0 or self.hybrid_top < 1 or self.ig_steps < 0:
            raise DpsLensError(
                "batch_size must be >= 0 (0: auto), hybrid_top >= 1 and ig_steps >= 0"
            )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["heads"] = None if self.heads is None else [list(h) for h in self.heads]
        return out


def auto_batch_size(
    model: TransformerBridge,
    n_tokens: int,
    backward: bool = False,
    fraction: float = 0.4,
    cap: int = 64,
) -> int:
    """Rows per forward whose activations fit in ``fraction`` of the free memory (GPU or RAM).

    A forward row of ``n_tokens`` needs about 4 bytes × (residual and MLP streams ``n_tokens·(6·
    d_model + 3·d_mlp)`` + attention scores ``3·n_heads·n_tokens²`` + logits ``n_tokens·d_vocab``);
    with ``backward`` (attribution) every layer's activations are kept for the gradient:
    ``n_layers·n_tokens·(4·d_model + 4·d_mlp + 3·n_heads·n_tokens)`` plus 3 copies of the logits.
    Logits are counted at every position, an upper bound (scans keep only target positions).
    """
    cfg = model.cfg
    d_model, n_heads, n_layers = int(cfg.d_model), int(cfg.n_heads), int(cfg.n_layers)
    d_mlp = int(getattr(cfg, "d_mlp", 0) or 4 * d_model)
    logits = n_tokens * int(cfg.d_vocab)
    if backward:
        per_layer = n_tokens * (4 * d_model + 4 * d_mlp + 3 * n_heads * n_tokens)
        per_row = 4 * (n_layers * per_layer + 3 * logits)
    else:
        per_row = 4 * (n_tokens * (6 * d_model + 3 * d_mlp) + 3 * n_heads * n_tokens**2 + logits)
    device = torch.device(str(cfg.device or "cpu"))
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return max(1, min(cap, int(fraction * free // per_row)))


def _example_ids(examples: Sequence[PreferenceExample]) -> list[str]:
    return [f"{i}:{e.user_id}" for i, e in enumerate(examples)]


class _Checkpoint:
    """The partial per-example scores of one scan, stored in ``directory``."""

    def __init__(self, directory: Path | None, key: str, shape: tuple[int, int, int]):
        self.directory, self.key = directory, key
        self.per_example = torch.full(shape, float("nan"))
        self.clean_loss = torch.full((shape[0],), float("nan"))
        self.done = torch.zeros(shape, dtype=torch.bool)
        self.seconds = 0.0  # compute time of this scan, earlier interrupted runs included
        self._earlier, self._started = 0.0, time.perf_counter()
        if directory is not None and (directory / CHECKPOINT_META).exists():
            self._restore(directory)

    def _restore(self, directory: Path) -> None:
        try:
            meta = json.loads((directory / CHECKPOINT_META).read_text(encoding="utf-8"))
            key = meta.get("key") if isinstance(meta, dict) else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._set_aside(directory, f"unreadable {CHECKPOINT_META} ({exc})")
            return
        if key != self.key:
            raise DpsLensError(
                f"{directory} holds a checkpoint of a different scan (other model, data or settings); "
                "delete it or choose another --out directory"
            )
        try:
            tensors = load_file(directory / CHECKPOINT_TENSORS)
            per_example, clean_loss = tensors["per_example"], tensors["clean_loss"]
            done = tensors["done"].bool()
        except (OSError, SafetensorError, KeyError) as exc:
            self._set_aside(directory, f"unreadable {CHECKPOINT_TENSORS} ({exc})")
            return
        if (
            per_example.shape != self.per_example.shape
            or done.shape != self.done.shape
            or (clean_loss.shape != self.clean_loss.shape)
        ):
            self._set_aside(directory, "tensors of the wrong shape")
            return
        self.per_example, self.clean_loss, self.done = per_example, clean_loss, done
        self._earlier = float(meta.get("seconds", 0.0))

    def _set_aside(self, directory: Path, why: str) -> None:
        """Move a damaged checkpoint out of the way (kept for inspection) and start afresh."""
        aside = directory.with_name(f"{directory.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        directory.rename(aside)
        warnings.warn(
            f"checkpoint in {directory} is damaged ({why}); moved to {aside}, starting afresh",
            stacklevel=3,
        )

    def save(self) -> None:
        self.seconds = self._earlier + time.perf_counter() - self._started
        if self.directory is None:
            return
        tensors = {
            "per_example": self.per_example,
            "clean_loss": self.clean_loss,
            "done": self.done.to(torch.uint8),
        }
        atomic_write(self.directory / CHECKPOINT_TENSORS, lambda tmp: save_file(tensors, tmp))
        atomic_write_json(
            self.directory / CHECKPOINT_META, {"key": self.key, "seconds": self.seconds}
        )


def _check_finite(losses: Tensor, what: Callable[[int], str], checkpoint: _Checkpoint) -> None:
    bad = torch.nonzero(~torch.isfinite(losses)).flatten()
    if len(bad):
        checkpoint.save()
        kept = (
            f"; partial results are kept in {checkpoint.directory}" if checkpoint.directory else ""
        )
        raise NonFiniteLossError(
            f"non-finite loss ({float(losses[bad[0]])}) for {what(int(bad[0]))}: load the model "
            f"with dtype float32 (--dtype float32) or check the example's text{kept}"
        )


@dataclass(frozen=True)
class _Unit:
    """One forward pass of the scan: ``heads`` of ``layer`` ablated, one copy of the examples each."""

    layer: int
    heads: tuple[int, ...]
    examples: tuple[int, ...]

    def cells(self) -> list[tuple[int, Head]]:
        return [(i, (self.layer, h)) for h in self.heads for i in self.examples]


def _units(heads: Sequence[Head], order: Sequence[int], batch_size: int) -> list[_Unit]:
    """Group the work: per layer, ``c`` heads × ``e`` examples per forward (``c·e ≤ batch_size``)."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    units = []
    for layer, layer_heads in sorted(by_layer.items()):
        n_copies = min(len(layer_heads), batch_size)
        n_examples = max(1, batch_size // n_copies)
        for h in range(0, len(layer_heads), n_copies):
            for e in range(0, len(order), n_examples):
                units.append(
                    _Unit(
                        layer,
                        tuple(layer_heads[h : h + n_copies]),
                        tuple(order[e : e + n_examples]),
                    )
                )
    return units


def _forward_unit(
    model: TransformerBridge,
    encoded: Sequence[EncodedExample],
    unit: _Unit,
    pad_id: int,
    mode: str,
    means: Tensor | None,
) -> Tensor:
    """Target NLL of every cell of ``unit``, copy-major (``[heads × examples]``).

    The examples run blocks below ``unit.layer`` once; the batch is then forked into one copy
    per head (``fork_at``), each with its own head ablated.
    """
    batch = collate([encoded[i] for i in unit.examples], pad_id)
    copies, n_rows = len(unit.heads), len(unit.examples)
    weights = torch.zeros(copies * n_rows, int(model.cfg.n_layers), int(model.cfg.n_heads))
    for copy, head in enumerate(unit.heads):
        weights[copy * n_rows : (copy + 1) * n_rows, unit.layer, head] = 1.0
    key_mask = real_token_mask([encoded[i] for i in unit.examples]).repeat(copies, 1)
    with fork_at(model, unit.layer, copies), ablate_heads(model, weights, mode, means, key_mask):
        return forward_nll(model, batch, copies)


def _reference_batches(
    encoded: Sequence[EncodedExample], batch_size: int, pad_id: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """(tokens, real-token mask) batches over the scored examples: the reference set of ``mean``."""
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        yield collate(chunk, pad_id).tokens, real_token_mask(chunk)


@dataclass
class _Work:
    """One forward pass's worth of cells and how to score them."""

    cells: list[tuple[int, Head]]
    compute: Callable[[], Tensor]


@dataclass(frozen=True)
class ScanState:
    """What a scan method plans its forward passes from: examples (encoded, in length ``order``),
    the heads to score, the settings, reference means and the checkpoint (clean losses)."""

    model: TransformerBridge
    examples: Sequence[PreferenceExample]
    encoder: Encoder
    encoded: list[EncodedExample]
    heads: list[Head]
    order: list[int]
    config: ScanConfig
    pad_id: int
    means: Tensor | None
    checkpoint: _Checkpoint


def _exact_work(state: ScanState) -> list[_Work]:
    model, encoded, config, pad_id, checkpoint = (
        state.model, state.encoded, state.config, state.pad_id, state.checkpoint
    )  # fmt: skip

    def unit_work(unit: _Unit) -> _Work:
        def compute() -> Tensor:
            losses = _forward_unit(model, encoded, unit, pad_id, config.mode, state.means)
            clean = checkpoint.clean_loss[list(unit.examples)].repeat(len(unit.heads))
            return losses - clean

        return _Work(unit.cells(), compute)

    return [unit_work(u) for u in _units(state.heads, state.order, config.batch_size)]


def _attribution_work(state: ScanState) -> list[_Work]:
    model, encoded, heads, config, pad_id = (
        state.model, state.encoded, state.heads, state.config, state.pad_id
    )  # fmt: skip

    def batch_work(index: list[int]) -> _Work:
        def compute() -> Tensor:
            chunk = [encoded[i] for i in index]
            batch, real = collate(chunk, pad_id), real_token_mask(chunk)
            scores = attribution_batch(
                model, batch, real, config.mode, state.means, config.ig_steps
            )
            return torch.stack([scores[:, l, h] for l, h in heads]).flatten()

        return _Work([(i, head) for head in heads for i in index], compute)

    size, order = config.batch_size, state.order
    return [batch_work(order[s : s + size]) for s in range(0, len(order), size)]


def _patching_work(state: ScanState) -> list[_Work]:
    model, examples, encoder, encoded, order, config, pad_id = (
        state.model, state.examples, state.encoder, state.encoded, state.order, state.config,
        state.pad_id,
    )  # fmt: skip
    bare = replace(encoder, template=encoder.template.without_profile())
    no_profile = [bare.encode(e) for e in examples]
    noising = config.direction == "noising"
    base, source = (encoded, no_profile) if noising else (no_profile, encoded)
    batches = [order[s : s + config.batch_size] for s in range(0, len(order), config.batch_size)]
    base_loss = state.checkpoint.clean_loss.clone()
    if not noising:
        for index in batches:
            base_loss[index] = forward_nll(model, collate([no_profile[i] for i in index], pad_id))
    sources: dict[int, Tensor] = {}  # every layer's source activations, one run per example

    def sources_of(picked: list[int]) -> list[Tensor]:
        missing = [i for i in picked if i not in sources]
        if missing:
            found = source_activations(model, [source[i] for i in missing], pad_id)
            sources.update(zip(missing, found, strict=True))
        return [sources[i] for i in picked]

    def unit_work(unit: _Unit) -> _Work:
        def compute() -> Tensor:
            picked = list(unit.examples)
            losses = patched_losses(
                model, [base[i] for i in picked], sources_of(picked), unit.layer, unit.heads,
                pad_id,
            )  # fmt: skip
            clean = base_loss[picked].repeat(len(unit.heads))
            return losses - clean if noising else clean - losses

        return _Work(unit.cells(), compute)

    return [unit_work(u) for u in _units(state.heads, order, config.batch_size)]


ScanPlanner = Callable[[ScanState], list[_Work]]
SCAN_METHODS: dict[str, ScanPlanner] = {
    "exact": _exact_work,
    "attribution": _attribution_work,
    "activation-patching": _patching_work,
}
"""Scan methods by name: each plans the forward passes (cells and how to score them) of a scan.
``hybrid`` composes two of them (see ``score_heads``)."""


def _hybrid(model, examples, config, template, checkpoint_dir, progress) -> HeadScores:
    """Attribution over ``config.heads`` (default all), then exact PCS of the top ``hybrid_top``."""
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
    estimate = score_heads(
        model, examples, replace(config, method="attribution"), template,
        directory / "attribution" if directory else None, progress,
    )  # fmt: skip
    top = estimate.top_k(min(config.hybrid_top, len(estimate.ranked())))
    exact = score_heads(
        model, examples, replace(config, method="exact", heads=tuple(top)), template,
        directory / "exact" if directory else None, progress,
    )  # fmt: skip
    exact.config.update(
        method="hybrid",
        hybrid_top=config.hybrid_top,
        attribution_ranking=[[l, h] for l, h in estimate.top_k(len(estimate.ranked()))],
        seconds=estimate.config["seconds"] + exact.config["seconds"],
    )
    return exact


def score_heads(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    config: ScanConfig | None = None,
    template: PromptTemplate | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> HeadScores:
    """Score every head (or ``config.heads``) over ``examples`` with ``config.method``.

    With ``checkpoint_dir`` the scan saves after every forward pass and resumes from there.
    """
    from dps_lens.data.prompts import get_template

    config = config or ScanConfig()
    if not examples:
        raise DpsLensError("no examples to score: the profile set is empty")
    if config.method == "hybrid":
        return _hybrid(model, examples, config, template, checkpoint_dir, progress)
    template = template or get_template(config.template)
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    heads = list(config.heads) if config.heads is not None else all_heads(n_layers, n_heads)
    for layer, head in heads:
        check_head(layer, head, n_layers, n_heads)
    encoder = encoder_for(model, template, config.max_length)
    encoded = encoder.encode_many(examples)
    pad_id = pad_id_of(model.tokenizer)
    digest = data_hash(examples)
    key = hashlib.sha256(
        json.dumps(
            [str(model.cfg.model_name), digest, config.as_dict(), template.name], sort_keys=True
        ).encode()
    ).hexdigest()
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
    checkpoint = _Checkpoint(directory, key, (len(examples), n_layers, n_heads))
    # After the key: the memory bound may differ on resume. An explicit size is only lowered.
    longest = max(len(e.input_ids) for e in encoded)
    fits = auto_batch_size(model, longest, backward=config.method == "attribution")
    config = replace(config, batch_size=min(config.batch_size or fits, fits))

    means = (
        head_means(model, _reference_batches(encoded, config.batch_size, pad_id))
        if get_ablation(config.mode).needs_means
        else None
    )

    # Clean losses, then the method's work; examples sorted by length to limit padding.
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    todo_clean = [i for i in order if torch.isnan(checkpoint.clean_loss[i])]
    for start in range(0, len(todo_clean), config.batch_size):
        index = todo_clean[start : start + config.batch_size]
        losses = forward_nll(model, collate([encoded[i] for i in index], pad_id))
        _check_finite(losses, lambda r, index=index: f"example {index[r]} (clean run)", checkpoint)
        checkpoint.clean_loss[index] = losses
        checkpoint.save()
    state = ScanState(
        model, examples, encoder, encoded, heads, order, config, pad_id, means, checkpoint
    )
    work = SCAN_METHODS[config.method](state)
    remaining = [w for w in work if not all(checkpoint.done[i, l, h] for i, (l, h) in w.cells)]
    n_cells = len(order) * len(heads)
    bar = tqdm(
        total=n_cells,
        initial=n_cells - sum(len(w.cells) for w in remaining),
        disable=not progress,
        unit="cell",
        desc=f"PCS {config.method} ({config.mode})",
        smoothing=0.1,
    )
    for item in remaining:
        values = item.compute()
        _check_finite(
            values,
            lambda r, cells=item.cells: f"example {cells[r][0]} with head {cells[r][1]} masked",
            checkpoint,
        )
        for (i, (layer, head)), value in zip(item.cells, values.tolist(), strict=True):
            checkpoint.per_example[i, layer, head] = value
            checkpoint.done[i, layer, head] = True
        checkpoint.save()
        bar.update(len(item.cells))
    bar.close()
    checkpoint.save()
    return HeadScores(
        per_example=checkpoint.per_example.clone(),
        clean_loss=checkpoint.clean_loss.clone(),
        model_id=str(model.cfg.model_name),
        data_hash=digest,
        example_ids=_example_ids(examples),
        config={
            **config.as_dict(),
            "template": template.name,
            "seconds": round(checkpoint.seconds, 3),
        },
    )
