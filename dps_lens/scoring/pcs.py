"""Preference Contribution Scores: ``PCS(h) = E[L(M \\ h) − L(M)]``, one scan runner for every method.

The work is every (example, head) cell. An exact scan scores several heads of one layer on
several examples in one forward pass (``scoring.units``); other methods plan their passes their
own way (``SCAN_METHODS``). The runner computes the clean losses, then runs the method's work,
skipping cells already done and checkpointing after every pass, so a killed scan resumes without
recomputing finished cells. With the no-profile contrast every example is scored twice: with its
profile and on its no-profile prompt (same target).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from dps_lens import distributed
from dps_lens.data.encoding import check_profile_spans, collate, encoder_for, pad_id_of
from dps_lens.data.example import ExampleRef, PreferenceExample, data_hash
from dps_lens.data.prompts import PromptTemplate, get_template
from dps_lens.errors import DpsLensError
from dps_lens.heads import all_heads, check_head, format_heads
from dps_lens.interventions import head_means
from dps_lens.scoring import planners, racing  # noqa: F401  (register the built-in methods)
from dps_lens.scoring.checkpoint import CHECKPOINT_META, ScanCheckpoint, check_finite
from dps_lens.scoring.head_scores import HeadScores
from dps_lens.scoring.loss import forward_nll
from dps_lens.scoring.scan import PREDICTED_METHODS, SCAN_METHODS, ScanConfig, ScanState
from dps_lens.scoring.units import reference_batches

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


def forward_bytes(model: TransformerBridge, n_tokens: int, backward: bool = False) -> int:
    """Bytes one forward row of ``n_tokens`` needs (the estimate ``auto_batch_size`` plans with)."""
    cfg = model.cfg
    d_model, n_heads, n_layers = int(cfg.d_model), int(cfg.n_heads), int(cfg.n_layers)
    d_mlp = int(getattr(cfg, "d_mlp", 0) or 4 * d_model)
    logits = n_tokens * int(cfg.d_vocab)
    if backward:
        per_layer = n_tokens * (4 * d_model + 4 * d_mlp + 3 * n_heads * n_tokens)
        return 4 * (n_layers * per_layer + 3 * logits)
    return 4 * (n_tokens * (6 * d_model + 3 * d_mlp) + 3 * n_heads * n_tokens**2 + logits)


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
    A prompt whose single row would not fit in the free memory is refused with one error line.
    """
    per_row = forward_bytes(model, n_tokens, backward)
    cfg = model.cfg
    device = torch.device(str(cfg.device or "cpu"))
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if per_row > free:
        raise DpsLensError(
            f"one forward row of {n_tokens} tokens needs about {per_row / 2**30:.1f} GiB "
            f"(attention scores grow with the square of the length), more than the "
            f"{free / 2**30:.1f} GiB free: lower --max-length (oldest profile items are dropped)"
        )
    return max(1, min(cap, int(fraction * free // per_row)))


def _hybrid(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    config: ScanConfig,
    template: PromptTemplate | None,
    checkpoint_dir: str | Path | None,
    progress: bool,
) -> HeadScores:
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


def _restore(
    directory: Path | None, key: str, shape: tuple[int, int, int], ranks: distributed.Ranks
) -> ScanCheckpoint:
    """This rank's checkpoint, with every cell finished in the checkpoints beside it (a single
    process's, or any rank's of an earlier run with any number of ranks)."""
    if directory is None:
        return ScanCheckpoint(None, key, shape)
    checkpoint = ScanCheckpoint(ranks.rank_path(directory), key, shape)
    for other in distributed.rank_siblings(directory):
        if other != checkpoint.directory and (other / CHECKPOINT_META).exists():
            checkpoint.absorb(*ScanCheckpoint(other, key, shape).tensors())
    return checkpoint


def _absorb_earlier(
    checkpoint: ScanCheckpoint,
    earlier: HeadScores,
    model_name: str,
    digest: str,
    config: ScanConfig,
    template: PromptTemplate,
) -> None:
    """Take ``earlier``'s finished cells as the with-profile rows of ``checkpoint``."""
    settings = {
        "mode": config.mode,
        "alpha": config.alpha,
        "template": template.name,
        "max_length": config.max_length,
    }
    theirs = {name: earlier.config.get(name) for name in settings}
    ablations = ("exact", "racing", *PREDICTED_METHODS)  # cells that are ablation values
    if config.method not in ablations or earlier.config.get("method") not in ablations:
        raise DpsLensError(
            f"only exact or racing scans share cells, not {earlier.config.get('method')!r} "
            f"with {config.method!r}"
        )
    if earlier.model_id != model_name or earlier.data_hash != digest or theirs != settings:
        raise DpsLensError(
            f"cannot reuse scores of model {earlier.model_id!r} with settings {theirs}: a scan "
            f"reuses only a scan of the same model ({model_name!r}), examples and settings {settings}"
        )
    n = earlier.n_examples
    per_example = torch.full_like(checkpoint.per_example, float("nan"))
    per_example[:n] = earlier.per_example
    clean_loss = torch.full_like(checkpoint.clean_loss, float("nan"))
    clean_loss[:n] = earlier.clean_loss
    checkpoint.absorb(per_example, clean_loss, ~torch.isnan(per_example))


def _describe(cells: Sequence[tuple[int, tuple[int, int]]]) -> str:
    """A work unit in words: its examples and heads."""
    rows = sorted({i for i, _ in cells})
    heads = sorted({head for _, head in cells})
    return f"examples {rows} with heads {format_heads(heads)}"


def score_heads(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    config: ScanConfig | None = None,
    template: PromptTemplate | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    reuse: HeadScores | None = None,
) -> HeadScores:
    """Score every head (or ``config.heads``) over ``examples`` with ``config.method``.

    With ``checkpoint_dir`` the scan saves after every forward pass and resumes from there.
    ``reuse``: the scores of an earlier scan of the same model, examples, ablation, template and
    length limit (a PCS race before a ΔPCS race): its finished cells and clean losses are taken
    as this scan's with-profile cells instead of being computed again.
    """
    config = config or ScanConfig()
    if not examples:
        raise DpsLensError("no examples to score: the profile set is empty")
    if config.method == "hybrid":
        return _hybrid(model, examples, config, template, checkpoint_dir, progress)
    predicted = None
    if config.method in PREDICTED_METHODS:
        if config.round_size > len(examples):
            raise DpsLensError(
                f"{config.method} needs at least one round of {config.round_size} examples, got "
                f"{len(examples)}: lower --round-size or score more examples"
            )
        directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
        predicted = score_heads(
            model, examples, replace(config, method="attribution"), template,
            directory / "attribution" if directory else None, progress,
        )  # fmt: skip
        checkpoint_dir = directory / "exact" if directory else None
    template = template or get_template(config.template)
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    heads = list(config.heads) if config.heads is not None else all_heads(n_layers, n_heads)
    for layer, head in heads:
        check_head(layer, head, n_layers, n_heads)
    encoder = encoder_for(model, template, config.max_length)
    encoded = encoder.encode_many(examples)
    if config.contrast == "no-profile":  # rows n..2n-1: the same examples without their profile
        encoded += replace(encoder, template=template.without_profile()).encode_many(examples)
    ablation = config.ablation()
    if ablation.needs_layout:
        check_profile_spans(encoded[: len(examples)], ablation.name)
    pad_id = pad_id_of(model.tokenizer)
    digest = data_hash(examples)
    key = hashlib.sha256(
        json.dumps(
            [str(model.cfg.model_name), digest, config.as_dict(), template.name], sort_keys=True
        ).encode()
    ).hexdigest()
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
    ranks = distributed.current()
    shape = (len(encoded), n_layers, n_heads)
    checkpoint = _restore(directory, key, shape, ranks)
    if reuse is not None:
        _absorb_earlier(checkpoint, reuse, str(model.cfg.model_name), digest, config, template)
    # After the key: the memory bound may differ on resume. An explicit size is only lowered;
    # every rank uses the same size, so each batch is the one a single process computes.
    longest = max(len(e.input_ids) for e in encoded)
    fits = ranks.min(auto_batch_size(model, longest, backward=config.method == "attribution"))
    config = replace(config, batch_size=min(config.batch_size or fits, fits))

    means = (
        head_means(model, reference_batches(encoded[: len(examples)], config.batch_size, pad_id))
        if ablation.needs_means
        else None
    )

    def share() -> None:
        if ranks.is_distributed:
            for tensors in ranks.all_gather(checkpoint.tensors()):
                checkpoint.absorb(*tensors)
            checkpoint.save()

    # Clean losses, then the method's work; rows sorted by length to limit padding. Under
    # torchrun, batch and work item number u are rank (u mod world size)'s.
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    todo_clean = [i for i in order if torch.isnan(checkpoint.clean_loss[i])]
    starts = range(0, len(todo_clean), config.batch_size)
    for unit, start in enumerate(starts):
        if not ranks.owns(unit):
            continue
        index = todo_clean[start : start + config.batch_size]
        with ranks.working_on(lambda index=index: f"the clean run of examples {index}"):
            losses = forward_nll(model, collate([encoded[i] for i in index], pad_id))
        check_finite(losses, lambda r, index=index: f"example {index[r]} (clean run)", checkpoint)
        checkpoint.clean_loss[index] = losses
        checkpoint.save()
    share()
    status = torch.full((n_layers, n_heads), -1, dtype=torch.int8)
    predictions = None
    if predicted is not None:
        predictions = predicted.per_example
        if predicted.no_profile is not None:
            predictions = torch.cat([predictions, predicted.no_profile])
    state = ScanState(
        model, examples, encoder, encoded, heads, order, config, pad_id, means, checkpoint, status,
        share, predictions, torch.full((n_layers, n_heads), math.nan),
        torch.full((n_layers, n_heads), math.nan),
    )  # fmt: skip
    n_cells = len(order) * len(heads)
    resumed = int(checkpoint.done.sum())
    if resumed and ranks.is_main:
        print(f"resuming: {resumed} of {n_cells} cells already scored", file=sys.stderr)
    bar = tqdm(
        total=n_cells,
        initial=resumed,
        disable=not progress or not ranks.is_main,
        unit="cell",
        desc=f"PCS {config.method} ({config.mode})",
        smoothing=0.1,
    )
    for unit, item in enumerate(SCAN_METHODS[config.method](state)):
        if all(checkpoint.done[i, l, h] for i, (l, h) in item.cells):
            continue
        if not ranks.owns(unit):
            bar.update(len(item.cells))
            continue
        with ranks.working_on(lambda cells=item.cells: _describe(cells)):
            values = item.compute()
        check_finite(
            values,
            lambda r, cells=item.cells: f"example {cells[r][0]} with head {cells[r][1]} masked",
            checkpoint,
        )
        # A cell keeps its first value (a unit may repeat cells of an earlier one, e.g. racing's
        # contenders), so every rank layout gives each cell the value one process gives it.
        for (i, (layer, head)), value in zip(item.cells, values.tolist(), strict=True):
            if not checkpoint.done[i, layer, head]:
                checkpoint.per_example[i, layer, head] = value
                checkpoint.done[i, layer, head] = True
        checkpoint.save()
        bar.update(len(item.cells))
    share()
    bar.close()
    checkpoint.save()
    n = len(examples)
    per_example = checkpoint.per_example.clone()
    raced = config.method in ("racing", *PREDICTED_METHODS)
    seconds = checkpoint.seconds + (float(predicted.config["seconds"]) if predicted else 0.0)
    return HeadScores(
        per_example=per_example[:n],
        clean_loss=checkpoint.clean_loss[:n].clone(),
        model_id=str(model.cfg.model_name),
        data_hash=digest,
        example_ids=ExampleRef.of(examples),
        config={**config.as_dict(), "template": template.name, "seconds": round(seconds, 3)},
        no_profile=per_example[n:] if config.contrast == "no-profile" else None,
        status=status if raced else None,
        race_bounds=torch.stack([state.race_low, state.race_high]) if raced else None,
        predictions=predicted.per_example if predicted is not None else None,
        predictions_no_profile=predicted.no_profile if predicted is not None else None,
    )
