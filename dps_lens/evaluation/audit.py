"""The audit: what each steering method does to the output, on the same inputs, against plain.

* **Step divergence.** Every method is teacher-forced on plain greedy decoding's own output: at
  each of plain's steps, ``KL(steered ‖ plain)`` (nats) between the distributions the next token is
  picked from, and whether the steered argmax differs from plain's. Per example, the mean over
  steps; a method that changes nothing scores 0 on both.
* **Profile lift** (``evaluation.lift``) of every method's outputs, of ``no_profile``'s (the floor)
  and of the gold outputs (the target rate), with paired intervals against plain.
* **Profile attention share** of every head (``profile_attention``), beside its PCS and ΔPCS when
  discovery scores are given.

Outputs come from ``evaluate_methods`` (resumable per batch, with their metrics and paired
differences); the teacher-forced pass checkpoints per batch in ``forced.partial.jsonl``. The
result is ``audit.json`` and its rendering ``audit.md`` (``audit_markdown``), with
``attention_share.json`` beside them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from dps_lens._io import atomic_write_report, atomic_write_text
from dps_lens.data.example import PreferenceExample, data_hash
from dps_lens.errors import DpsLensError
from dps_lens.evaluation.checkpoint import BatchCheckpoint
from dps_lens.evaluation.lift import profile_lift
from dps_lens.evaluation.metrics import Estimate, mean_estimate, task_of
from dps_lens.evaluation.paired import (
    PAIRED_METRICS,
    compare_methods,
    comparisons_markdown,
    paired_difference,
)
from dps_lens.evaluation.runner import (
    EvalConfig,
    MethodResult,
    default_pairs,
    describe,
    evaluate_methods,
    markdown_table,
)
from dps_lens.heads import head_name
from dps_lens.names import model_display_name, run_name
from dps_lens.profile_attention import ProfileAttention, profile_attention
from dps_lens.scoring.head_scores import HeadScores
from dps_lens.steering.generate import batch_plan, generate, prompt_token_ids
from dps_lens.steering.methods import Steering, no_profile, plain

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

FORCED_FIELDS = ("steps", "kl", "flip")
GOLD = "gold"


def step_divergence(
    steered: Float[Tensor, "steps vocab"], reference: Float[Tensor, "reference_steps vocab"]
) -> tuple[float, float]:
    """Mean over steps of ``KL(softmax(steered) ‖ softmax(reference))`` (nats), and the share of
    steps whose argmax differs. Scores may be unnormalised or hold ``-inf`` (excluded tokens)."""
    if steered.shape != reference.shape or steered.shape[0] == 0:
        raise DpsLensError(
            f"step divergence needs scores of the same steps, got {tuple(steered.shape)} and "
            f"{tuple(reference.shape)}"
        )
    mine, theirs = steered.float().log_softmax(-1), reference.float().log_softmax(-1)
    p = mine.exp()
    kl = torch.where(p > 0, p * (mine - theirs), torch.zeros_like(p)).sum(-1)
    flips = (steered.argmax(-1) != reference.argmax(-1)).float()
    return float(kl.clamp_min(0).mean()), float(flips.mean())


def _key(
    model: TransformerBridge, examples: Sequence[PreferenceExample], methods: Mapping[str, Steering],
    config: EvalConfig,
) -> str:  # fmt: skip
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k != "n_bootstrap"}
    identity = {
        "model": str(model.cfg.model_name),
        "data": data_hash(examples),
        "methods": {name: describe(s) for name, s in methods.items()},
        "config": settings,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _for_rows(steering: Steering, indices: Sequence[int]) -> Steering:
    """``steering`` for a batch of the inputs (per-input weight maps sliced to the batch)."""
    weights = steering.weights
    if weights is not None and weights.dim() == 3:
        return dataclasses.replace(steering, weights=weights[list(indices)])
    return steering


def teacher_forced(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    methods: Mapping[str, Steering],
    config: EvalConfig,
    checkpoint: Path | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Per example: plain's number of steps, and every method's mean KL against plain and share
    of flipped argmaxes, teacher-forced on plain's greedy output (see the module)."""
    reference = plain()
    others = {name: s for name, s in methods.items() if name != "plain"}
    prompts = prompt_token_ids(
        model, examples, reference, config.max_new_tokens, config.template, config.max_length
    )
    plan = batch_plan([len(p) for p in prompts], config.batch_size)
    state = BatchCheckpoint(checkpoint, _key(model, examples, others, config), plan, FORCED_FIELDS)
    state.load()
    options = {
        "max_new_tokens": config.max_new_tokens, "template": config.template,
        "extra_stop_ids": config.extra_stop_ids, "max_length": config.max_length,
        "return_scores": True,
    }  # fmt: skip
    bar = tqdm(total=len(examples), desc="audit (teacher-forced)", disable=not progress)
    bar.update(sum(len(plan[b]) for b in state.done))
    for batch, indices in enumerate(plan):
        if batch in state.done:
            continue
        started = time.perf_counter()
        chosen = [examples[i] for i in indices]
        ours = generate(model, chosen, reference, batch_size=len(chosen), **options)
        assert ours.scores is not None
        rows = [
            {"index": i, "steps": len(ours.scores[j]), "kl": {}, "flip": {}}
            for j, i in enumerate(indices)
        ]
        for name, steering in others.items():
            forced = generate(
                model, chosen, _for_rows(steering, indices), batch_size=len(chosen),
                forced=ours, **options,
            )  # fmt: skip
            assert forced.scores is not None
            for j, row in enumerate(rows):
                row["kl"][name], row["flip"][name] = step_divergence(
                    forced.scores[j], ours.scores[j]
                )
        state.append(batch, time.perf_counter() - started, rows)
        bar.update(len(indices))
    bar.close()
    return state.rows(len(examples))


def _estimate(values: Sequence[float], config: EvalConfig) -> Estimate:
    return mean_estimate(values, config.n_bootstrap, config.seed)


def _as_dict(estimate: Estimate) -> dict[str, float]:
    return dataclasses.asdict(estimate)


def _paired(mine: Sequence[float], theirs: Sequence[float], config: EvalConfig) -> Estimate:
    rows = [{"value": v} for v in mine]
    return paired_difference(
        rows, [[{"value": v} for v in theirs]], "value", config.n_bootstrap, config.seed
    )


def audit_methods(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    methods: Mapping[str, Steering],
    config: EvalConfig | None = None,
    out: str | Path | None = None,
    progress: bool = False,
    scores: HeadScores | None = None,
) -> dict[str, Any]:
    """Audit ``methods`` (name → steering; ``plain`` and ``no_profile`` are added when absent) on
    ``examples``: decoded outputs and their metrics, step divergence from plain, profile lift, and
    the profile attention share of every head (beside ``scores``' PCS and ΔPCS when given).
    Writes ``audit.json``, ``audit.md`` and ``attention_share.json`` to ``out``."""
    config = config or EvalConfig()
    if not examples:
        raise DpsLensError("the audit needs at least one example")
    methods = {"plain": plain(), "no_profile": no_profile(), **methods}
    task = config.task or task_of(examples)
    directory = Path(out) if out is not None else None
    results = evaluate_methods(model, examples, methods, config, directory, progress)
    forced = teacher_forced(
        model, examples, methods, config,
        directory / "forced.partial.jsonl" if directory else None, progress,
    )  # fmt: skip
    attention = profile_attention(
        model, examples, config.template, config.max_length, config.batch_size, progress
    )
    report = audit_report(
        model, examples, methods, results, forced, attention, task, config, scores
    )
    if directory is not None:
        attention.save(directory)
        atomic_write_report(directory, "audit", report, audit_markdown(report))
        atomic_write_text(directory / "forced.jsonl", "".join(json.dumps(r) + "\n" for r in forced))
    report["markdown"] = audit_markdown(report)
    return report


def audit_report(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    methods: Mapping[str, Steering],
    results: Sequence[MethodResult],
    forced: Sequence[Mapping[str, Any]],
    attention: ProfileAttention,
    task: str,
    config: EvalConfig,
    scores: HeadScores | None = None,
) -> dict[str, Any]:
    """``audit.json``'s content from the evaluated outputs, the teacher-forced rows and the shares."""
    metric = PAIRED_METRICS[task][0]
    by_name = {r.name: r for r in results}
    lifts = {
        name: [profile_lift(row["output"], e) for row, e in zip(r.rows, examples, strict=True)]
        for name, r in by_name.items()
    }
    lifts[GOLD] = [profile_lift(e.target, e) for e in examples]
    rows = []
    for name, result in by_name.items():
        kl = [0.0 if name == "plain" else row["kl"][name] for row in forced]
        flip = [0.0 if name == "plain" else row["flip"][name] for row in forced]
        values = [float(row[metric]) for row in result.rows]
        plain_values = [float(row[metric]) for row in by_name["plain"].rows]
        rows.append(
            {
                "method": name,
                "kl": _as_dict(_estimate(kl, config)),
                "flip": _as_dict(_estimate(flip, config)),
                "lift": _as_dict(_estimate(lifts[name], config)),
                "lift_vs_plain": _as_dict(_paired(lifts[name], lifts["plain"], config)),
                "metric_vs_plain": _as_dict(_paired(values, plain_values, config)),
                "coherence_ppl": _as_dict(result.coherence_ppl),
                "ms_per_token": 1000 * result.seconds_per_token,
            }
        )
    gold = {
        "lift": _as_dict(_estimate(lifts[GOLD], config)),
        "lift_vs_plain": _as_dict(_paired(lifts[GOLD], lifts["plain"], config)),
    }
    runs = {r.name: r.rows for r in results}
    comparisons = compare_methods(
        runs, default_pairs(list(runs)), task, config.n_bootstrap, config.seed
    )
    top = attention.ranked()[:10]
    heads = []
    for head in top:
        entry = {
            "head": list(head),
            "share": float(attention.mean[head]),
            "share_stderr": float(attention.stderr[head]),
        }
        if scores is not None:
            entry["pcs"] = float(scores.mean[head])
            if scores.summary_delta is not None:
                entry["delta_pcs"] = float(scores.summary_delta.mean[head])
        heads.append(entry)
    return {
        "model": str(model.cfg.model_name),
        "model_name": run_name(model_display_name(str(model.cfg.model_name)), str(model.cfg.dtype)),
        "task": task,
        "metric": metric,
        "n_examples": len(examples),
        "n_attention_examples": attention.n_examples,
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "extra_stop_ids"},
        "methods": {
            name: {k: v for k, v in describe(steering).items() if k != "weights"}
            for name, steering in methods.items()
        },
        "rows": rows,
        "gold": gold,
        "profile_benefit": _as_dict(
            _paired(
                [float(row[metric]) for row in by_name["plain"].rows],
                [float(row[metric]) for row in by_name["no_profile"].rows],
                config,
            )
        ),
        "attention_top": heads,
        "evaluation_table": markdown_table(results),
        "comparisons_table": comparisons_markdown(comparisons),
    }


def _cell(estimate: Mapping[str, float], signed: bool = False, digits: int = 3) -> str:
    spec = f"{'+' if signed else ''}.{digits}f"
    text = f"{estimate['value']:{spec}} [{estimate['low']:{spec}}, {estimate['high']:{spec}}]"
    excludes = estimate["low"] > 0 or estimate["high"] < 0
    return f"**{text}**" if signed and excludes else text


def audit_markdown(report: Mapping[str, Any]) -> str:
    """``audit.md`` from ``audit.json``: the per-method table, gold's lift, the profile's benefit
    and the heads that read the profile most."""
    metric = report["metric"]
    lines = [
        f"Audit of {len(report['rows'])} methods on {report['model_name']}, "
        f"{report['n_examples']} examples ({report['task']}); every method teacher-forced on "
        "plain's greedy output. "
        "Intervals: 95% bootstrap over examples; paired differences in bold where they exclude 0.",
        "",
        "| method | KL(method ‖ plain) (nats/step) | argmax ≠ plain | profile lift "
        f"| Δ lift vs plain | Δ {metric} vs plain | coherence ppl | ms/token |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['method']} | {_cell(row['kl'])} | {_cell(row['flip'])} | "
            f"{_cell(row['lift'])} | {_cell(row['lift_vs_plain'], signed=True)} | "
            f"{_cell(row['metric_vs_plain'], signed=True)} | {_cell(row['coherence_ppl'])} | "
            f"{row['ms_per_token']:.1f} |"
        )
    gold = report["gold"]
    lines.append(
        f"| gold outputs | – | – | {_cell(gold['lift'])} | {_cell(gold['lift_vs_plain'], signed=True)} "
        "| – | – | – |"
    )
    benefit = report["profile_benefit"]
    lines += [
        "",
        f"The profile's benefit (plain − no_profile, paired): Δ {metric} "
        f"{_cell(benefit, signed=True, digits=4)}.",
        "",
        f"Heads with the largest profile attention share (mean over "
        f"{report['n_attention_examples']} examples, ± standard error):",
        "",
    ]
    lines += [
        "",
        "Every method's metrics, with their own intervals:",
        "",
        report["evaluation_table"].rstrip("\n"),
        "",
        "Paired differences on the same users:",
        "",
        report["comparisons_table"].rstrip("\n"),
        "",
    ]
    has_pcs = any("pcs" in h for h in report["attention_top"])
    has_delta = any("delta_pcs" in h for h in report["attention_top"])
    header = ["head", "profile attention share"]
    header += ["PCS (nats)"] if has_pcs else []
    header += ["ΔPCS (nats)"] if has_delta else []
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for head in report["attention_top"]:
        cells = [head_name(head["head"]), f"{head['share']:.3f} ± {head['share_stderr']:.3f}"]
        cells += [f"{head['pcs']:+.4f}"] if has_pcs else []
        cells += [f"{head['delta_pcs']:+.4f}"] if has_delta else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
