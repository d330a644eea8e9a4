"""Ground-truth validation of head discovery on an organism.

Discovery users and evaluation users are disjoint. The report holds: exact PCS (zero and mean
modes) on the discovery users; for the planted organism, precision@K of the designated heads;
personalization rates with the profile, without it, with the top-K PCS heads masked for every K,
and with K random non-top-K heads masked (``n_random`` seeded draws), on both user sets.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dps_lens._io import atomic_write_report
from dps_lens.heads import Head, format_heads, head_name
from dps_lens.interventions import reference_means
from dps_lens.organism.planted import designated_heads
from dps_lens.organism.rates import masking_curve, personalization_rates
from dps_lens.organism.train import trained_world
from dps_lens.organism.world import World
from dps_lens.scoring import ScanConfig, score_heads

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

TOLERANCE = 0.03  # "within 3 points" of the personalization rate


def precision_at_k(found: Sequence[Head], truth: Sequence[Head]) -> float:
    """Share of the first ``len(truth)`` found heads that are true heads."""
    k = len(truth)
    return len(set(found[:k]) & set(truth)) / k if k else float("nan")


def smallest_k_at_level(
    curve: Sequence[dict[str, Any]], level: float, tol: float = TOLERANCE
) -> int | None:
    """The smallest K whose top-K-masked rate is within ``tol`` of ``level`` (or below it)."""
    for row in curve:
        if row["top_k"] <= level + tol:
            return int(row["k"])
    return None


def validate_organism(
    model: TransformerBridge,
    world: World | None = None,
    n_discovery_users: int = 60,
    n_evaluation_users: int = 150,
    modes: Sequence[str] = ("zero", "mean"),
    n_random: int = 10,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the validation on a loaded organism, on ``world`` (default: the world of its model
    card, ``train.trained_world``); returns a JSON-ready report."""
    started = time.perf_counter()
    world = world or trained_world(model)
    discovery = world.split_examples("discovery", n_discovery_users, queries_per_user=2)
    evaluation = world.split_examples("evaluation", n_evaluation_users, queries_per_user=2)
    truth = list(designated_heads(model))
    n_heads = int(model.cfg.n_layers) * int(model.cfg.n_heads)
    report: dict[str, Any] = {
        "model": str(model.cfg.model_name),
        "designated_heads": [list(h) for h in truth],
        "n_discovery_examples": len(discovery),
        "n_evaluation_examples": len(evaluation),
        "n_random_draws": n_random,
        "seed": seed,
        "modes": {},
    }
    splits = {"discovery": discovery, "evaluation": evaluation}
    base_rates = {
        split: personalization_rates(model, examples) for split, examples in splits.items()
    }
    for mode in modes:
        scores = score_heads(
            model, discovery, ScanConfig(mode=mode, batch_size=64, seed=seed), progress=progress
        )
        ranking = scores.top_k(n_heads)
        means = reference_means(model, discovery) if mode == "mean" else None
        entry: dict[str, Any] = {"ranked": scores.ranked(), "curves": {}, "rates": {}}
        if truth:
            entry["precision_at_designated"] = precision_at_k(ranking, truth)
        for split, examples in splits.items():
            rates = base_rates[split]
            curve = masking_curve(
                model, examples, ranking, range(1, n_heads + 1), mode, n_random, seed, means
            )
            entry["rates"][split] = {
                **rates,
                "smallest_k_at_no_profile": smallest_k_at_level(curve, rates["no_profile"]),
            }
            entry["curves"][split] = curve
        report["modes"][mode] = entry
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def report_markdown(report: dict[str, Any]) -> str:
    """Tables of the report: rates per split and mode, and the masking curve."""
    lines = [
        f"Model `{report['model']}`; {report['n_discovery_examples']} discovery examples, "
        f"{report['n_evaluation_examples']} evaluation examples (disjoint users); random heads: "
        f"{report['n_random_draws']} draws outside the top-K set."
    ]
    if report["designated_heads"]:
        lines.append("Designated heads: " + format_heads(report["designated_heads"]))
    for mode, entry in sorted(report["modes"].items()):  # key order is lost in report.json
        top = ", ".join(
            f"{head_name((r['layer'], r['head']))} ({r['pcs']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}])"
            for r in entry["ranked"][:5]
        )
        lines += ["", f"**{mode} ablation** — top heads by PCS (nats, 95% CI): {top}"]
        if "precision_at_designated" in entry:
            lines.append(
                f"precision@{len(report['designated_heads'])} = {entry['precision_at_designated']:.2f}"
            )
        lines += [
            "",
            "| users | full | no profile | smallest K at no-profile level |",
            "|---|---|---|---|",
        ]
        for split, rates in entry["rates"].items():
            lines.append(
                f"| {split} | {rates['full']:.3f} | {rates['no_profile']:.3f} | "
                f"{rates['smallest_k_at_no_profile']} |"
            )
        lines += [
            "",
            "| K | top-K masked (discovery) | random-K (discovery) | top-K masked (evaluation) "
            "| random-K (evaluation) |",
            "|---|---|---|---|---|",
        ]
        for d, e in zip(entry["curves"]["discovery"], entry["curves"]["evaluation"], strict=True):
            lines.append(
                f"| {d['k']} | {d['top_k']:.3f} | {_random_cell(d)} | {e['top_k']:.3f} | "
                f"{_random_cell(e)} |"
            )
    return "\n".join(lines) + "\n"


def _random_cell(row: dict[str, Any]) -> str:
    if row["random_mean"] is None:
        return "—"
    return f"{row['random_mean']:.3f} ± {row['random_std']:.3f}"


def write_report(report: dict[str, Any], out: str | Path) -> Path:
    """``report.json`` and ``report.md`` in ``out`` (atomic)."""
    out = Path(out)
    atomic_write_report(out, "report", report, report_markdown(report))
    return out
