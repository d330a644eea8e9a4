"""Run several decoding methods on the same examples; write per-example outputs and a table.

Every method's outputs go to ``<out>/methods/<name>.jsonl`` as soon as it finishes, keyed by the
model, data, method and settings: rerunning skips the methods already done (a long study that
is interrupted loses at most the method in progress). ``results.csv`` and ``results.md`` hold
the table, with bootstrap intervals.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dps_lens._io import atomic_write_json, atomic_write_text
from dps_lens.data.example import PreferenceExample, data_hash
from dps_lens.errors import DpsLensError
from dps_lens.evaluation.coherence import output_nll
from dps_lens.evaluation.metrics import Estimate, bootstrap, per_example, summarize_task, task_of
from dps_lens.steering.generate import generate
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
        "mode": steering.mode,
        "masked_run": steering.masked_run,
        "template": steering.template.name if steering.template else None,
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


def _read_done(path: Path, key: str) -> list[dict[str, Any]] | None:
    meta = path.with_suffix(".json")
    if not (path.exists() and meta.exists()):
        return None
    if json.loads(meta.read_text()).get("key") != key:
        return None
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _run_method(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    steering: Steering,
    task: str,
    config: EvalConfig,
    progress: bool,
) -> list[dict[str, Any]]:
    out = generate(
        model,
        examples,
        steering,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        template=config.template,
        extra_stop_ids=config.extra_stop_ids,
        max_length=config.max_length,
        progress=progress,
    )
    nll = output_nll(model, out.prompt_ids, out.token_ids)
    seconds = out.seconds_per_token
    rows = []
    for i, example in enumerate(examples):
        rows.append(
            {
                "user_id": example.user_id,
                "method": steering.name,
                "output": out.texts[i],
                "target": example.target,
                "n_prompt_tokens": len(out.prompt_ids[i]),
                "n_generated": len(out.token_ids[i]),
                "stopped": out.stopped[i],
                "coherence_nll": nll[i],
                "seconds_per_token": seconds,
                **per_example(task, out.texts[i], example),
            }
        )
    return rows


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
) -> list[MethodResult]:
    """Run each method of ``methods`` (name → steering) on ``examples``; write results to ``out``."""
    config = config or EvalConfig()
    if not examples:
        raise DpsLensError("evaluation needs at least one example")
    if not methods:
        raise DpsLensError("evaluation needs at least one method")
    task = config.task or task_of(examples)
    data = data_hash(examples)
    results = []
    for name, steering in methods.items():
        key = _key(model, data, steering, config)
        path = Path(out) / "methods" / f"{name}.jsonl" if out is not None else None
        rows = _read_done(path, key) if path is not None else None
        if rows is None:
            rows = _run_method(model, examples, steering, task, config, progress)
            if path is not None:
                atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
                meta = {"key": key, "method": describe(steering)}
                atomic_write_json(path.with_suffix(".json"), meta)
        results.append(_summarize(name, rows, examples, task, config))
    if out is not None:
        write_tables(results, out)
    return results


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


def write_tables(results: Sequence[MethodResult], out: str | Path) -> None:
    import csv
    import io

    rows = table_rows(results)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(out) / "results.csv", buffer.getvalue())
    atomic_write_text(Path(out) / "results.md", markdown_table(results))
