"""Head discovery: the one-forward-per-head loop (as TransformerLens' ``patching`` module runs it)
against dps_lens' exact layer-skipping scan, attribution patching and the hybrid.

Each (model, method) runs in a fresh subprocess, so its wall time and peak RSS are its own. The
parent compares the scores: max |exact − loop|, and Spearman correlation and top-10 overlap of
attribution and hybrid against exact.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_discovery.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
SMOLLM2 = SHARED / "models" / "QuantFactory__SmolLM2-135M-Instruct-GGUF"
LAMP7 = SHARED / "data" / "lamp7_user_dev_dps" / "LaMP-7.dev300.jsonl"
METHODS = ("loop", "exact", "attribution", "hybrid")


def setup(name: str):
    """(model, examples, template, max_length) of a benchmark case."""
    from dps_lens.data import load_examples, sample_examples
    from dps_lens.models import load_model
    from dps_lens.organism.world import World

    if name == "organism-planted":
        return (
            load_model(name),
            World().split_examples("discovery", 16, queries_per_user=1),
            "history",
            None,
        )
    if name == "gpt2-small-random":
        from dps_lens.tiny import TinyModelConfig, build_tiny_model, cache_root

        directory = cache_root() / "bench-gpt2-small-random"
        if not (directory / "config.json").exists():
            shape = dict(n_layers=12, n_heads=12, n_kv_heads=12, d_model=768, d_mlp=3072)
            build_tiny_model(TinyModelConfig("gpt2", **shape), directory)
        # Byte-level tokens make organism prompts long: 4 examples cut to 128 tokens.
        examples = World().split_examples("discovery", 4, queries_per_user=1)
        return load_model(str(directory)), examples, "history", 128
    # 8 examples at <= 256 tokens keep the loop (270 forwards) within ~10 minutes on 2 CPU cores.
    examples = sample_examples(load_examples(LAMP7), 8, seed=0)
    return load_model(str(SMOLLM2)), examples, "chat", 256


def loop_scores(model, examples, template: str, max_length: int | None) -> torch.Tensor:
    """One forward per head over all examples, full logits: the TransformerLens patching loop."""
    from dps_lens.data import collate, encoder_for, get_template
    from dps_lens.data.encoding import pad_id_of
    from dps_lens.scoring import target_nll

    encoded = encoder_for(model, get_template(template), max_length).encode_many(examples)
    batch = collate(encoded, pad_id_of(model.tokenizer))
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    out = torch.zeros(len(examples), n_layers, n_heads)
    with torch.no_grad():
        clean = target_nll(model(batch.tokens), batch)
        for layer in range(n_layers):
            for head in range(n_heads):

                def zero(z, hook, head=head):
                    z[:, :, head] = 0.0
                    return z

                logits = model.run_with_hooks(
                    batch.tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero)]
                )
                out[:, layer, head] = target_nll(logits, batch) - clean
    return out


def run_one(name: str, method: str, out: Path) -> None:
    """Child process: time one method on one case, save its per-example scores."""
    from dps_lens.scoring import ScanConfig, score_heads

    model, examples, template, max_length = setup(name)
    started = time.perf_counter()
    if method == "loop":
        scores = loop_scores(model, examples, template, max_length)
    else:
        config = ScanConfig(
            method=method, batch_size=16, template=template, max_length=max_length, hybrid_top=20
        )
        scores = score_heads(model, examples, config, progress=False).per_example
    seconds = time.perf_counter() - started
    torch.save(scores, out / f"{name}-{method}.pt")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb}))


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a.flatten().numpy(), b.flatten().numpy()).statistic)


def top(mean: torch.Tensor, k: int) -> set[int]:
    return set(
        torch.argsort(mean.flatten().nan_to_num(float("-inf")), descending=True)[:k].tolist()
    )


def markdown(rows: list[dict]) -> str:
    """The results table of ``discovery-<tag>.md``, from the rows of ``discovery-<tag>.json``."""
    lines = [
        "| case | method | wall (s) | × faster than loop | peak RSS (MB) | max abs diff vs loop "
        "| Spearman vs exact | top-10 overlap with exact |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = f"{r['max_abs_diff_vs_loop']:.1e}" if r["max_abs_diff_vs_loop"] is not None else ""
        rho = f"{r['spearman_vs_exact']:.3f}" if r["spearman_vs_exact"] is not None else ""
        lines.append(
            f"| {r['case']} | {r['method']} | {r['seconds']:.1f} | {r['speedup_vs_loop']:.1f} | "
            f"{r['peak_rss_mb']:.0f} | {diff} | {rho} | {r['top10_overlap_vs_exact']}/10 |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--cases", default="organism-planted,gpt2-small-random,smollm2")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one[0], args.one[1], Path(args.one[2]))
        return
    cases = [c for c in args.cases.split(",") if c != "smollm2" or SMOLLM2.exists()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            measured = {}
            for method in METHODS:
                done = subprocess.run(
                    [sys.executable, __file__, "--one", case, method, tmp],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                measured[method] = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"{case:>18} {method:>12}: {measured[method]['seconds']:8.1f} s, "
                      f"{measured[method]['peak_rss_mb']:7.0f} MB peak RSS", flush=True)  # fmt: skip
            scores = {m: torch.load(Path(tmp) / f"{case}-{m}.pt") for m in METHODS}
            exact, loop = scores["exact"], scores["loop"]
            for method in METHODS:
                mean = scores[method].mean(0)
                scored = ~torch.isnan(mean)
                rows.append(
                    {
                        "case": case,
                        "method": method,
                        **measured[method],
                        "speedup_vs_loop": measured["loop"]["seconds"] / measured[method]["seconds"],
                        "max_abs_diff_vs_loop": float((scores[method] - loop).abs().nan_to_num(0).max())
                        if method == "exact" else None,
                        "spearman_vs_exact": spearman(mean[scored], exact.mean(0)[scored])
                        if method == "attribution" else None,
                        "top10_overlap_vs_exact": len(top(mean, 10) & top(exact.mean(0), 10)),
                    }
                )  # fmt: skip
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    report = {"device": device, "threads": torch.get_num_threads(), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    tag = "gpu" if torch.cuda.is_available() else "cpu"
    (args.out / f"discovery-{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(rows)
    (args.out / f"discovery-{tag}.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
