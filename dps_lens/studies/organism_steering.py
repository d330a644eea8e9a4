"""Steering on an organism: personalization and coherence of each method over γ and K.

Heads are discovered (exact PCS) on discovery users; every method then decodes the same
evaluation users' queries. The γ sweep uses the top-3 heads; the K sweep uses γ = 1.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dps_lens._io import atomic_write_json, atomic_write_text
from dps_lens.evaluation import EvalConfig, MethodResult, evaluate_methods
from dps_lens.models import load_model
from dps_lens.organism.world import World
from dps_lens.scoring import ScanConfig, score_heads
from dps_lens.steering import Steering, cad, dps, plain, random_heads

GAMMAS = (0.5, 1.0, 2.0, 4.0)
KS = (1, 2, 3, 4, 6)


def _row(result: MethodResult, sweep: str, gamma: float | None, k: int | None) -> dict[str, Any]:
    rate, ppl = result.metrics["personalization"], result.coherence_ppl
    return {
        "sweep": sweep,
        "method": result.name.split("@")[0],
        "gamma": gamma,
        "k": k,
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
    scores.save(out / "discover")
    ranking = [(r["layer"], r["head"]) for r in scores.ranked()]
    stop = tuple(model.tokenizer.convert_tokens_to_ids([".", "!"]))
    config = EvalConfig(max_new_tokens=8, batch_size=64, extra_stop_ids=stop)

    def evaluate(methods: dict[str, Steering]) -> list[MethodResult]:
        return evaluate_methods(model, evaluation, methods, config, out / "methods", progress)

    rows = [_row(r, "gamma", None, None) for r in evaluate({"plain": plain()})]
    top3 = ranking[:3]
    for gamma in gammas:
        methods = {
            f"cad@{gamma}": cad(gamma),
            f"dps@{gamma}": dps(model, top3, gamma),
            f"dps_shared_prefill@{gamma}": dps(model, top3, gamma, masked_run="shared_prefill"),
            f"random_heads@{gamma}": random_heads(model, top3, seed=0, gamma=gamma),
        }
        rows += [_row(r, "gamma", gamma, 3) for r in evaluate(methods)]
    for k in ks:
        methods = {
            f"dps@k{k}": dps(model, ranking[:k], 1.0),
            f"random_heads@k{k}": random_heads(model, ranking[:k], seed=0, gamma=1.0),
        }
        rows += [_row(r, "k", 1.0, k) for r in evaluate(methods)]
    rows += [{**r, "sweep": "k", "k": None} for r in rows[:1]]  # plain, for the K table
    report = {
        "model": model_name,
        "top_heads": ranking[:6],
        "n_discovery_examples": len(discovery),
        "n_evaluation_examples": len(evaluation),
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_json(out / "sweep.json", report)
    text = sweep_markdown(report)
    atomic_write_text(out / "sweep.md", text)
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
