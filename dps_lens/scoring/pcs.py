"""Exact Preference Contribution Scores: ``PCS(h) = E[L(M \\ h) - L(M)]`` by ablating every head.

Work is a list of (example, head) ablation rows, grouped into forward passes of ``batch_size``
rows that each carry their own one-head mask. The partial result is checkpointed after every
forward (atomic write), so a killed scan resumes without recomputing finished rows.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from dps_lens._io import atomic_write, atomic_write_json
from dps_lens.data.encoding import EncodedExample, collate, encoder_for, pad_id_of
from dps_lens.data.example import PreferenceExample, data_hash
from dps_lens.data.prompts import PromptTemplate
from dps_lens.errors import DpsLensError, NonFiniteLossError
from dps_lens.interventions import MASK_MODES, Head, MaskMode, ablate_heads, check_head, head_means
from dps_lens.scoring.head_scores import HeadScores
from dps_lens.scoring.loss import forward_nll

CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_META = "checkpoint.json"


@dataclass(frozen=True)
class ScanConfig:
    """Settings of an exact PCS scan.

    ``batch_size`` is the number of ablation rows (example × head) per forward pass.
    ``heads`` restricts the scan to some heads (default: every head).
    """

    mode: MaskMode = "zero"
    batch_size: int = 16
    seed: int = 0
    n_bootstrap: int = 1000
    template: str = "history"
    max_length: int | None = None
    heads: tuple[Head, ...] | None = None

    def __post_init__(self) -> None:
        if self.mode not in MASK_MODES:
            raise DpsLensError(
                f"unknown mask mode {self.mode!r}; use one of {', '.join(MASK_MODES)}"
            )
        if self.batch_size < 1:
            raise DpsLensError(f"batch_size must be at least 1, got {self.batch_size}")

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["heads"] = None if self.heads is None else [list(h) for h in self.heads]
        return out


def _example_ids(examples: Sequence[PreferenceExample]) -> list[str]:
    return [f"{i}:{e.user_id}" for i, e in enumerate(examples)]


class _Checkpoint:
    """The partial per-example scores of one scan, stored in ``directory``."""

    def __init__(self, directory: Path | None, key: str, shape: tuple[int, int, int]):
        self.directory, self.key = directory, key
        self.per_example = torch.full(shape, float("nan"))
        self.clean_loss = torch.full((shape[0],), float("nan"))
        self.done = torch.zeros(shape, dtype=torch.bool)
        if directory is not None and (directory / CHECKPOINT_META).exists():
            self._restore(directory)

    def _restore(self, directory: Path) -> None:
        meta = json.loads((directory / CHECKPOINT_META).read_text(encoding="utf-8"))
        if meta.get("key") != self.key:
            raise DpsLensError(
                f"{directory} holds a checkpoint of a different scan (other model, data or settings); "
                "delete it or choose another --out directory"
            )
        tensors = load_file(directory / CHECKPOINT_TENSORS)
        self.per_example, self.clean_loss = tensors["per_example"], tensors["clean_loss"]
        self.done = tensors["done"].bool()

    def save(self) -> None:
        if self.directory is None:
            return
        tensors = {
            "per_example": self.per_example,
            "clean_loss": self.clean_loss,
            "done": self.done.to(torch.uint8),
        }
        atomic_write(self.directory / CHECKPOINT_TENSORS, lambda tmp: save_file(tensors, tmp))
        atomic_write_json(self.directory / CHECKPOINT_META, {"key": self.key})


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


def _forward_rows(
    model: Any,
    encoded: Sequence[EncodedExample],
    rows: Sequence[tuple[int, Head]],
    pad_id: int,
    mode: MaskMode,
    means: Tensor | None,
) -> Tensor:
    """Target NLL of each (example, head) row with that row's head ablated."""
    batch = collate([encoded[i] for i, _ in rows], pad_id)
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    weights = torch.zeros(len(rows), n_layers, n_heads)
    for row, (_, (layer, head)) in enumerate(rows):
        weights[row, layer, head] = 1.0
    key_mask = torch.zeros_like(batch.tokens, dtype=torch.bool)
    for row, (i, _) in enumerate(rows):
        key_mask[row, : len(encoded[i].input_ids)] = True
    with ablate_heads(model, weights, mode=mode, means=means, key_mask=key_mask):
        return forward_nll(model, batch)


def _reference_batches(
    encoded: Sequence[EncodedExample], batch_size: int, pad_id: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """(tokens, real-token mask) batches over the scored examples: the reference set of ``mean``."""
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        batch = collate(chunk, pad_id)
        lengths = torch.tensor([len(e.input_ids) for e in chunk])
        yield batch.tokens, torch.arange(batch.tokens.shape[1])[None, :] < lengths[:, None]


def score_heads(
    model: Any,
    examples: Sequence[PreferenceExample],
    config: ScanConfig | None = None,
    template: PromptTemplate | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> HeadScores:
    """Exact PCS of every head (or ``config.heads``) over ``examples``.

    With ``checkpoint_dir`` the scan saves after every forward pass and resumes from there.
    """
    from dps_lens.data.prompts import get_template

    config = config or ScanConfig()
    if not examples:
        raise DpsLensError("no examples to score: the profile set is empty")
    template = template or get_template(config.template)
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    heads = (
        list(config.heads)
        if config.heads is not None
        else [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    )
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

    means = (
        head_means(model, _reference_batches(encoded, config.batch_size, pad_id))
        if config.mode == "mean"
        else None
    )

    # Clean losses, then every (example, head) ablation row; rows sorted by length for padding.
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    todo_clean = [i for i in order if torch.isnan(checkpoint.clean_loss[i])]
    for start in range(0, len(todo_clean), config.batch_size):
        index = todo_clean[start : start + config.batch_size]
        losses = forward_nll(model, collate([encoded[i] for i in index], pad_id))
        _check_finite(losses, lambda r, index=index: f"example {index[r]} (clean run)", checkpoint)
        checkpoint.clean_loss[index] = losses
    rows = [(i, h) for i in order for h in heads]
    chunks = [rows[s : s + config.batch_size] for s in range(0, len(rows), config.batch_size)]
    remaining = [c for c in chunks if not all(checkpoint.done[i, l, h] for i, (l, h) in c)]
    finished = len(rows) - sum(len(c) for c in remaining)
    bar = tqdm(
        total=len(rows),
        initial=finished,
        disable=not progress,
        unit="ablation",
        desc=f"PCS ({config.mode})",
        smoothing=0.1,
    )
    started = time.perf_counter()
    for chunk in remaining:
        losses = _forward_rows(model, encoded, chunk, pad_id, config.mode, means)
        _check_finite(
            losses,
            lambda r, chunk=chunk: f"example {chunk[r][0]} with head {chunk[r][1]} masked",
            checkpoint,
        )
        for (i, (layer, head)), loss in zip(chunk, losses.tolist(), strict=True):
            checkpoint.per_example[i, layer, head] = loss - float(checkpoint.clean_loss[i])
            checkpoint.done[i, layer, head] = True
        checkpoint.save()
        bar.update(len(chunk))
    bar.close()
    checkpoint.save()
    scores = HeadScores(
        per_example=checkpoint.per_example.clone(),
        clean_loss=checkpoint.clean_loss.clone(),
        model_id=str(model.cfg.model_name),
        data_hash=digest,
        example_ids=_example_ids(examples),
        config={
            **config.as_dict(),
            "method": "exact",
            "template": template.name,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    return scores
