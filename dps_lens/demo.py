"""The main job on the bundled default: load, build examples, score every head, plot."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dps_lens.data.synthetic import synthetic_examples
from dps_lens.models import load_model, model_info
from dps_lens.plots import pcs_heatmap, write_html
from dps_lens.scoring import ScanConfig, score_heads

DEMO_MODEL = "tiny-llama"


def run_demo(out: str | Path = "figures/demo", progress: bool = True, k: int = 5) -> dict[str, Any]:
    """Score every head of the default model on the synthetic users; write scores and a heatmap."""
    out = Path(out)
    started = time.perf_counter()
    model = load_model(DEMO_MODEL, device="cpu")
    info = model_info(model)
    examples = synthetic_examples(n_users=8, queries_per_user=2, seed=0)
    scores = score_heads(model, examples, ScanConfig(mode="zero", batch_size=16, seed=0),
                         checkpoint_dir=out / "checkpoint", progress=progress)
    scores.save(out)
    scores.save_reports(out, k)
    write_html(pcs_heatmap(scores, title=f"PCS of every head — {DEMO_MODEL}"), out / "pcs_heatmap.html")
    from dps_lens.cli import format_top_heads

    print(f"{DEMO_MODEL}: {info.n_layers} layers x {info.n_heads} heads, "
          f"{scores.n_examples} examples from {len(set(e.user_id for e in examples))} users")
    print(format_top_heads(scores, k))
    return {"model": DEMO_MODEL, "examples": scores.n_examples, "top_heads": scores.top_k(k),
            "out": str(out), "seconds": round(time.perf_counter() - started, 1)}
