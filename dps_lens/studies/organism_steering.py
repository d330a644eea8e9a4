"""Steering on an organism: personalization and coherence of each method over γ and K.

Heads are discovered (exact PCS) on discovery users; every method then decodes the same
evaluation users' queries. The γ sweep uses the top-3 heads; the K sweep uses γ = 1.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dps_lens import distributed
from dps_lens._io import atomic_write_report
from dps_lens.evaluation import EvalConfig, MethodResult
from dps_lens.models import load_model
from dps_lens.organism.world import World
from dps_lens.scoring import ScanConfig, score_heads
from dps_lens.steering import SteeringContext, method_config
from dps_lens.studies.sweep import SweepPoint, evaluate_points

GAMMAS = (0.5, 1.0, 2.0, 4.0)
KS = (1, 2, 3, 4, 6)
GAMMA_SWEEP_K = 3  # heads steered in the γ sweep
K_SWEEP_GAMMA = 1.0  # γ of the K sweep


def sweep_points(gammas: Sequence[float], ks: Sequence[int]) -> list[list[SweepPoint]]:
    """The points of both sweeps, in batches evaluated together: plain, then the methods at each
    γ (top-3 heads), then DPS and random heads at each K (γ = 1)."""
    batches = [[SweepPoint("plain", method_config("plain"), "gamma")]]
    for gamma in gammas:
        configs = [
            method_config("cad", alpha=gamma),
            method_config("dps", gamma=gamma),
            method_config("dps_shared_prefill", gamma=gamma),
            method_config("random_heads", gamma=gamma, seed=0),
        ]
        batches.append(
            [SweepPoint(f"{c.name}@{gamma}", c, "gamma", gamma, GAMMA_SWEEP_K) for c in configs]
        )
    for k in ks:
        configs = [
            method_config("dps", gamma=K_SWEEP_GAMMA),
            method_config("random_heads", gamma=K_SWEEP_GAMMA, seed=0),
        ]
        batches.append([SweepPoint(f"{c.name}@k{k}", c, "k", K_SWEEP_GAMMA, k) for c in configs])
    return batches


def _row(point: SweepPoint, result: MethodResult) -> dict[str, Any]:
    rate, ppl = result.metrics["personalization"], result.coherence_ppl
    return {
        "sweep": point.sweep,
        "method": point.method,
        "gamma": point.gamma,
        "k": point.k,
        "personalization": rate.value,
        "personalization_low": rate.low,
        "personalization_high": rate.high,
        "coherence_ppl": ppl.value,
        "coherence_ppl_low": ppl.low,
        "coherence_ppl_high": ppl.high,
    }


def _markdown(rows: Sequence[dict[str, Any]], sweep: str, column: str) -> str:
    chosen = [r for r in rows if r["sweep"] == sweep]
    values = sorted({r[column] for r in chosen if r[column] is not None})
    header = ["method", *[f"{column} = {v:g}" for v in values]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in dict.fromkeys(r["method"] for r in chosen):
        cells = [method]
        for value in values:
            match = [r for r in chosen if r["method"] == method and r[column] in (value, None)]
            r = match[0] if match else None
            cells.append(
                f"{r['personalization']:.3f} [{r['personalization_low']:.3f}, "
                f"{r['personalization_high']:.3f}] · ppl {r['coherence_ppl']:.2f}"
                if r
                else "–"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_study(
    model_name: str = "organism-planted",
    out: str | Path = "runs/study-organism",
    n_discovery_users: int = 40,
    n_evaluation_users: int = 300,
    gammas: Sequence[float] = GAMMAS,
    ks: Sequence[int] = KS,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the γ and K sweeps; write ``sweep.json`` and ``sweep.md`` into ``out``."""
    started = time.perf_counter()
    out = Path(out)
    model = load_model(model_name, device="cpu")
    world = World()
    discovery = world.split_examples("discovery", n_discovery_users, queries_per_user=2)
    evaluation = world.split_examples("evaluation", n_evaluation_users, queries_per_user=1)
    scores = score_heads(
        model, discovery, ScanConfig(), checkpoint_dir=out / "discover" / "checkpoint",
        progress=progress,
    )  # fmt: skip
    main = distributed.current().is_main  # under torchrun, rank 0 writes
    if main:
        scores.save(out / "discover")
    ranking = [(r["layer"], r["head"]) for r in scores.ranked()]
    stop = tuple(model.tokenizer.convert_tokens_to_ids([".", "!"]))
    config = EvalConfig(max_new_tokens=8, batch_size=64, extra_stop_ids=stop)

    def context(point: SweepPoint) -> SteeringContext:
        return SteeringContext(model, heads=ranking[: point.k] if point.k else None)

    rows = []
    for batch in sweep_points(gammas, ks):
        results = evaluate_points(
            model, evaluation, batch, context, config, out / "methods", progress
        )
        rows += [_row(p, r) for p, r in zip(batch, results, strict=True)]
    rows += [{**r, "sweep": "k", "k": None} for r in rows[:1]]  # plain, for the K table
    report = {
        "model": model_name,
        "top_heads": ranking[:6],
        "n_discovery_examples": len(discovery),
        "n_evaluation_examples": len(evaluation),
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    text = sweep_markdown(report)
    if main:
        atomic_write_report(out, "sweep", report, text)
    report["markdown"] = text
    return report


def sweep_markdown(report: dict[str, Any]) -> str:
    """``sweep.md`` from the report of ``run_study`` (or its ``sweep.json``): the γ and K tables."""
    rows = report["rows"]
    return (
        f"## {report['model']}: personalization [95% CI] · coherence perplexity\n\n"
        f"Top heads (discovery users): {', '.join(f'L{l}H{h}' for l, h in report['top_heads'])}\n\n"
        f"### γ sweep (top-3 heads)\n\n{_markdown(rows, 'gamma', 'gamma')}\n"
        f"### K sweep (γ = 1)\n\n{_markdown(rows, 'k', 'k')}"
    )
