"""Run several decoding methods on the same examples; write per-example outputs and a table.

Every method's outputs go to ``<out>/methods/<name>.jsonl`` as soon as it finishes, keyed by the
model, data, method and settings: rerunning skips the methods already done. Within a method,
every finished batch of inputs is appended (flushed and fsynced) to
``<out>/methods/<name>.partial.jsonl``, so a run killed mid-method loses at most one batch: the
same call resumes from the next planned batch, and the batches are those ``generate`` would
decode (``batch_plan``), so a resumed run's outputs equal an uninterrupted run's.
``results.csv`` and ``results.md`` hold the table, with bootstrap intervals; ``paired.csv`` and
``paired.md`` every method's paired difference to ``plain`` (and any other pairs asked for).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from dps_lens import distributed
from dps_lens._io import atomic_write_json, atomic_write_text
from dps_lens.data.example import PreferenceExample, data_hash
from dps_lens.errors import DataFormatError, DpsLensError
from dps_lens.evaluation.checkpoint import BatchCheckpoint, partial_path
from dps_lens.evaluation.coherence import output_nll
from dps_lens.evaluation.metrics import Estimate, bootstrap, per_example, summarize_task, task_of
from dps_lens.evaluation.paired import PairedComparison, compare_methods, comparisons_markdown
from dps_lens.steering.generate import batch_plan, generate, prompt_token_ids
from dps_lens.steering.methods import Steering

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


@dataclass(frozen=True)
class EvalConfig:
    """``task`` None: inferred from the examples. ``extra_stop_ids`` end answers early;
    ``max_length`` bounds prompt + new tokens (oldest profile items dropped to fit)."""

    task: str | None = None
    max_new_tokens: int = 32
    batch_size: int = 8
    template: str = "history"
    max_length: int | None = None
    n_bootstrap: int = 1000
    seed: int = 0
    extra_stop_ids: tuple[int, ...] = ()


@dataclass
class MethodResult:
    name: str
    metrics: dict[str, Estimate]
    coherence_ppl: Estimate  # exp of the mean per-token NLL under the unsteered model
    seconds_per_token: float
    n_generated: int
    rows: list[dict[str, Any]] = field(repr=False)


def describe(steering: Steering) -> dict[str, Any]:
    """A JSON description of a method (its identity in saved results)."""
    return {
        "name": steering.name,
        "contrast": steering.contrast,
        "rule": asdict(steering.rule),
        "heads": steering.heads,
        "weights": None if steering.weights is None else steering.weights.flatten().tolist(),
        "mode": steering.ablation.identity(),
        "masked_run": steering.masked_run,
        "template": steering.template.name if steering.template else None,
        **({} if steering.profile else {"profile": False}),
    }


def _key(model: TransformerBridge, data: str, steering: Steering, config: EvalConfig) -> str:
    """Identity of a method's outputs: model, data hash, method, and the settings that change
    them (the bootstrap settings only change the summary, which is recomputed anyway)."""
    settings = {k: v for k, v in asdict(config).items() if k != "n_bootstrap"}
    identity = {
        "model": str(getattr(model.cfg, "model_name", "")),
        "data": data,
        "method": describe(steering),
        "config": settings,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _read_done(path: Path, key: str, n: int) -> list[dict[str, Any]] | None:
    """A finished method's rows, or None when absent or written for other settings."""
    meta = path.with_suffix(".json")
    if not (path.exists() and meta.exists()):
        return None
    try:
        if json.loads(meta.read_text(encoding="utf-8")).get("key") != key:
            return None
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise DataFormatError(
            f"{path} (or {meta.name}) is damaged; delete both to rerun the method"
        ) from None
    if len(rows) != n or not all(isinstance(row, dict) for row in rows):
        raise DataFormatError(
            f"{path} holds {len(rows)} rows for {n} examples; delete it and {meta.name} to rerun"
        )
    return rows


ROW_FIELDS = ("user_id", "output", "n_generated", "coherence_nll")


def _run_batch(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    indices: list[int],
    steering: Steering,
    task: str,
    config: EvalConfig,
) -> tuple[float, list[dict[str, Any]]]:
    """Decode one planned batch on its own (``batch_size`` = its size, inputs in plan order)."""
    weights = steering.weights
    if weights is not None and weights.dim() == 3:  # per-input maps: this batch's rows
        steering = dataclasses.replace(steering, weights=weights[indices])
    chosen = [examples[i] for i in indices]
    out = generate(
        model,
        chosen,
        steering,
        max_new_tokens=config.max_new_tokens,
        batch_size=len(indices),
        template=config.template,
        extra_stop_ids=config.extra_stop_ids,
        max_length=config.max_length,
    )
    nll = output_nll(model, out.prompt_ids, out.token_ids)
    rows = []
    for j, (i, example) in enumerate(zip(indices, chosen, strict=True)):
        rows.append(
            {
                "index": i,
                "user_id": example.user_id,
                "method": steering.name,
                "output": out.texts[j],
                "target": example.target,
                "n_prompt_tokens": len(out.prompt_ids[j]),
                "n_generated": len(out.token_ids[j]),
                "stopped": out.stopped[j],
                "coherence_nll": nll[j],
                **per_example(task, out.texts[j], example),
            }
        )
    return out.prefill_seconds + out.decode_seconds, rows


def _run_method(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    label: str,
    steering: Steering,
    task: str,
    config: EvalConfig,
    progress: bool,
    key: str,
    checkpoint: Path | None,
) -> list[dict[str, Any]]:
    """Every planned batch not already in ``checkpoint``, appended to it as it finishes."""
    weights = steering.weights
    if weights is not None and weights.dim() == 3 and weights.shape[0] != len(examples):
        raise DpsLensError(
            f"per-input head weights have {weights.shape[0]} maps for {len(examples)} inputs"
        )
    prompts = prompt_token_ids(
        model, examples, steering, config.max_new_tokens, config.template, config.max_length
    )
    plan = batch_plan([len(p) for p in prompts], config.batch_size)
    ranks = distributed.current()
    path = ranks.rank_path(checkpoint) if checkpoint else None
    state = BatchCheckpoint(path, key, plan, ROW_FIELDS)
    state.load()
    for other in distributed.rank_siblings(checkpoint) if checkpoint else []:
        if other != state.path:  # batches of other ranks, or of a run with other ranks
            peer = BatchCheckpoint(other, key, plan, ROW_FIELDS)
            peer.load(repair=False)
            state.done = {**peer.done, **state.done}
    done = sum(len(plan[b]) for b in state.done)
    bar = tqdm(
        total=len(examples),
        initial=done,
        desc=f"evaluate ({label})",
        disable=not progress or not ranks.is_main,
    )
    for batch, indices in enumerate(plan):  # under torchrun: batch b is rank (b mod N)'s
        if batch in state.done or not ranks.owns(batch):
            continue
        unit = f"batch {batch} of {label} (inputs {indices})"
        with ranks.working_on(lambda unit=unit: unit):
            seconds, rows = _run_batch(model, examples, indices, steering, task, config)
        state.append(batch, seconds, rows)
        bar.update(len(indices) * ranks.world_size)
    bar.close()
    state.done = ranks.merge(state.done, lambda done: {b: v for d in done for b, v in d.items()})
    rows = state.rows(len(examples))
    per_token = state.seconds / max(sum(row["n_generated"] for row in rows), 1)
    return [{**row, "seconds_per_token": per_token} for row in rows]


def _summarize(
    name: str,
    rows: list[dict[str, Any]],
    examples: Sequence[PreferenceExample],
    task: str,
    config: EvalConfig,
) -> MethodResult:
    metrics = summarize_task(
        task, rows, [r["output"] for r in rows], examples, config.n_bootstrap, config.seed
    )
    nll = np.array([r["coherence_nll"] for r in rows], dtype=float)
    nll = nll[~np.isnan(nll)]
    mean_nll = bootstrap(lambda i: float(nll[i].mean()), len(nll), config.n_bootstrap, config.seed)
    value, low, high = (math.exp(v) for v in (mean_nll.value, mean_nll.low, mean_nll.high))
    ppl = Estimate(value, low, high, mean_nll.n)
    n_generated = sum(r["n_generated"] for r in rows)
    return MethodResult(name, metrics, ppl, rows[0]["seconds_per_token"], n_generated, rows)


def evaluate_methods(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    methods: Mapping[str, Steering],
    config: EvalConfig | None = None,
    out: str | Path | None = None,
    progress: bool = False,
    pairs: Sequence[tuple[str, Sequence[str]]] | None = None,
) -> list[MethodResult]:
    """Run each method of ``methods`` (name → steering) on ``examples``; write results to ``out``.

    ``pairs`` lists the paired comparisons ``(method, reference runs)`` written to ``paired.*``;
    by default every method against ``plain`` when ``plain`` is one of the methods."""
    config = config or EvalConfig()
    if not examples:
        raise DpsLensError("evaluation needs at least one example")
    if not methods:
        raise DpsLensError("evaluation needs at least one method")
    task = config.task or task_of(examples)
    data = data_hash(examples)
    main = distributed.current().is_main  # under torchrun, rank 0 writes the results
    results = []
    for name, steering in methods.items():
        key = _key(model, data, steering, config)
        path = Path(out) / "methods" / f"{name}.jsonl" if out is not None else None
        rows = _read_done(path, key, len(examples)) if path is not None else None
        if rows is None:
            checkpoint = partial_path(path) if path is not None else None
            rows = _run_method(
                model, examples, name, steering, task, config, progress, key, checkpoint
            )
            if path is not None and checkpoint is not None and main:
                atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
                meta = {"key": key, "method": describe(steering)}
                atomic_write_json(path.with_suffix(".json"), meta)
                for partial in distributed.rank_siblings(checkpoint):
                    partial.unlink(missing_ok=True)
        results.append(_summarize(name, rows, examples, task, config))
    if out is not None and main:
        write_tables(results, out)
        comparisons = compare_results(results, pairs, task, config)
        if comparisons:  # no pairs asked for (``pairs=[]``, or no plain): no empty paired table
            write_comparisons(comparisons, out)
    return results


def default_pairs(names: Sequence[str]) -> list[tuple[str, Sequence[str]]]:
    """Every method against ``plain`` (none when ``plain`` was not run), and with ``no_profile``
    run too, ``plain`` against it: the profile's benefit, the most a method that amplifies the
    profile works against."""
    if "plain" not in names:
        return []
    pairs: list[tuple[str, Sequence[str]]] = [(n, ("plain",)) for n in names if n != "plain"]
    return pairs + ([("plain", ("no_profile",))] if "no_profile" in names else [])


def compare_results(
    results: Sequence[MethodResult],
    pairs: Sequence[tuple[str, Sequence[str]]] | None,
    task: str,
    config: EvalConfig,
) -> list[PairedComparison]:
    """Paired differences between the methods of ``results`` (``default_pairs`` when None)."""
    runs = {result.name: result.rows for result in results}
    chosen = default_pairs(list(runs)) if pairs is None else pairs
    return compare_methods(runs, chosen, task, config.n_bootstrap, config.seed)


def write_comparisons(comparisons: Sequence[PairedComparison], out: str | Path) -> None:
    _write_csv(Path(out) / "paired.csv", [c.as_row() for c in comparisons])
    atomic_write_text(Path(out) / "paired.md", comparisons_markdown(comparisons))


def table_rows(results: Sequence[MethodResult]) -> list[dict[str, Any]]:
    """One flat row per method: each metric's value and interval, coherence, latency."""
    plain = next((r for r in results if r.name == "plain"), None)
    rows = []
    for result in results:
        row: dict[str, Any] = {"method": result.name, "n": len(result.rows)}
        for metric, estimate in {**result.metrics, "coherence_ppl": result.coherence_ppl}.items():
            row[metric] = estimate.value
            row[f"{metric}_low"], row[f"{metric}_high"] = estimate.low, estimate.high
        row["ms_per_token"] = 1000 * result.seconds_per_token
        if plain is not None:
            row["latency_vs_plain"] = result.seconds_per_token / plain.seconds_per_token
        rows.append(row)
    return rows


def markdown_table(results: Sequence[MethodResult]) -> str:
    metrics = [*results[0].metrics, "coherence_ppl"]
    header = ["method", "n", *metrics, "ms/token"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        estimates = {**result.metrics, "coherence_ppl": result.coherence_ppl}
        cells = [result.name, str(len(result.rows))]
        cells += [
            f"{estimates[m].value:.3f} [{estimates[m].low:.3f}, {estimates[m].high:.3f}]"
            for m in metrics
        ]
        cells.append(f"{1000 * result.seconds_per_token:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    import csv
    import io

    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def write_tables(results: Sequence[MethodResult], out: str | Path) -> None:
    _write_csv(Path(out) / "results.csv", table_rows(results))
    atomic_write_text(Path(out) / "results.md", markdown_table(results))
