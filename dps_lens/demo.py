"""The main job on the bundled organism: discover preference heads, check them, plot them.

Discovery runs on one set of users; personalization rates are measured on other users.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dps_lens.heads import format_heads
from dps_lens.models import load_model, model_info
from dps_lens.organism.planted import designated_heads
from dps_lens.organism.rates import masking_curve, personalization_rates
from dps_lens.organism.train import trained_world
from dps_lens.organism.validate import precision_at_k
from dps_lens.plots import pcs_heatmap, write_html
from dps_lens.scoring import ScanConfig, score_heads

DEMO_MODEL = "organism-planted"


def run_demo(
    out: str | Path = "figures/demo",
    progress: bool = True,
    k: int = 3,
    model_name: str = DEMO_MODEL,
    n_discovery_users: int = 40,
    n_evaluation_users: int = 100,
) -> dict[str, Any]:
    """Score every head on discovery users, print the top heads and the rates on held-out users."""
    out = Path(out)
    started = time.perf_counter()
    model = load_model(model_name, device="cpu")
    info = model_info(model)
    world = trained_world(model)
    discovery = world.split_examples("discovery", n_discovery_users, queries_per_user=2)
    evaluation = world.split_examples("evaluation", n_evaluation_users, queries_per_user=2)
    scores = score_heads(
        model,
        discovery,
        ScanConfig(mode="zero", batch_size=64, seed=0),
        checkpoint_dir=out / "checkpoint",
        progress=progress,
    )
    scores.save(out)
    scores.save_reports(out, k)
    write_html(
        pcs_heatmap(scores, title=f"PCS of every head — {model_name}"), out / "pcs_heatmap.html"
    )
    top = scores.top_k(k)
    rates = personalization_rates(model, evaluation)
    row = masking_curve(model, evaluation, scores.top_k(info.n_total_heads), [k], "zero", 10, 0)[0]
    truth = list(designated_heads(model))

    print(
        f"{model_name}: {info.n_layers} layers x {info.n_heads} heads; discovery on "
        f"{len(discovery)} examples from {n_discovery_users} users"
    )
    print(scores.format_top(min(info.n_total_heads, k + 3)))
    if truth:
        print(
            f"designated (true) heads: {format_heads(truth)}; "
            f"precision@{len(truth)} = {precision_at_k(top, truth):.2f}"
        )
    print(
        f"personalization rate on {len(evaluation)} held-out examples ({n_evaluation_users} users):"
    )
    print(f"  full model            {rates['full']:.3f}")
    print(f"  no profile            {rates['no_profile']:.3f}")
    print(f"  top-{k} heads masked    {row['top_k']:.3f}")
    print(
        f"  random {k} heads masked {row['random_mean']:.3f} ± {row['random_std']:.3f} (10 draws)"
    )
    return {
        "model": model_name,
        "top_heads": top,
        "rates": {**rates, "top_k_masked": row["top_k"], "random_k_masked": row["random_mean"]},
        "out": str(out),
        "seconds": round(time.perf_counter() - started, 1),
    }
