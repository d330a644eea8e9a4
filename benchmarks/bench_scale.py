"""Scaling out: one process against ``torchrun`` with 1 and 2 processes, and bf16 against fp32.

Throughput: the same ``dps-lens discover`` (exact scan of the planted organism) run as one process,
under ``torchrun --nproc_per_node 1`` (the launcher's overhead: with one process the distributed
code is not engaged) and under ``torchrun --nproc_per_node 2``; wall time of the whole command
and of the scan, and scored cells per second of scan. Memory: peak RSS and weight bytes of
SmolLM2-135M loaded in float32 and in bfloat16, each scoring the same examples in its own process.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_scale.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = ROOT.parent / "shared" / "models" / "QuantFactory__SmolLM2-135M-Instruct-GGUF"
LAMP7 = ROOT.parent / "shared" / "data" / "lamp7_user_dev_dps" / "LaMP-7.dev300.jsonl"
TORCHRUN = Path(sys.executable).with_name("torchrun")
LAUNCHES = {
    "one process": [sys.executable, "-m", "dps_lens"],
    "torchrun, 1 process": [str(TORCHRUN), "--standalone", "--nproc_per_node", "1", "-m", "dps_lens"],
    "torchrun, 2 processes": [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "dps_lens"],
}  # fmt: skip


def discover(launch: list[str], data: Path, out: Path, n_examples: int) -> dict:
    """Wall time of one ``dps-lens discover`` command and the scan's own seconds and cells."""
    args = ["discover", "--model", "organism-planted", "--device", "cpu", "--data", str(data),
            "--n-examples", str(n_examples), "--batch-size", "8", "--out", str(out),
            "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    subprocess.run([*launch, *args], check=True, capture_output=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - started
    meta = json.loads((out / "scores.json").read_text())
    scan = float(meta["config"]["seconds"])
    cells = n_examples * len(json.loads((out / "ranked.json").read_text()))
    return {"wall_s": wall, "scan_s": scan, "cells": cells, "cells_per_s": cells / scan}


def memory_child(dtype: str, n_examples: int) -> None:
    """Child process: load SmolLM2 in ``dtype``, score its last layer on a few examples."""
    from dps_lens.data import load_examples, sample_examples
    from dps_lens.models import load_model
    from dps_lens.scoring import ScanConfig, score_heads

    model = load_model(str(SMOLLM2), device="cpu", dtype=dtype)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    examples = sample_examples(load_examples(LAMP7), n_examples, seed=0)
    last = int(model.cfg.n_layers) - 1
    heads = tuple((last, h) for h in range(int(model.cfg.n_heads)))
    config = ScanConfig(heads=heads, template="chat", max_length=192, batch_size=4)
    score_heads(model, examples, config, progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"dtype": dtype, "weights_mb": weights / 2**20, "peak_rss_mb": peak}))


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def current_rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    return _status_mb("VmHWM")


def long_prompt_child(n_tokens: int) -> None:
    """Child process: score one head of SmolLM2 (float32) on one LaMP-7 example whose profile is
    repeated until the prompt is cut at ``n_tokens``; peak RSS against the planner's estimate."""
    from dataclasses import replace

    from dps_lens.data import load_examples
    from dps_lens.models import load_model
    from dps_lens.scoring import ScanConfig, score_heads
    from dps_lens.scoring.pcs import forward_bytes

    model = load_model(str(SMOLLM2), device="cpu")
    loaded = current_rss_mb()
    Path("/proc/self/clear_refs").write_text("5")  # Linux: peak RSS (VmHWM) starts again here
    example = load_examples(LAMP7)[0]
    example = replace(example, profile=example.profile * (1 + n_tokens // 8))
    config = ScanConfig(heads=((0, 0),), template="chat", max_length=n_tokens, batch_size=1)
    started = time.perf_counter()
    score_heads(model, [example], config, progress=False)
    peak = peak_rss_mb()
    print(json.dumps({"n_tokens": n_tokens, "seconds": time.perf_counter() - started,
                      "rss_after_load_mb": loaded, "peak_rss_mb": peak,
                      "planned_row_mb": forward_bytes(model, n_tokens) / 2**20}))  # fmt: skip


def largest_prompt(budget_bytes: float) -> int:
    """The longest prompt (multiple of 256 tokens) whose planned forward row of SmolLM2 fits
    ``budget_bytes`` (SmolLM2's shape, from its config, without loading the weights)."""
    from transformers import AutoConfig

    hf = AutoConfig.from_pretrained(SMOLLM2 / "config.json")
    d, heads, mlp, vocab = (
        hf.hidden_size,
        hf.num_attention_heads,
        hf.intermediate_size,
        hf.vocab_size,
    )

    def row(t: int) -> int:  # the same estimate as dps_lens.scoring.pcs.forward_bytes
        return 4 * (t * (6 * d + 3 * mlp) + 3 * heads * t**2 + t * vocab)

    n = 256
    while row(n + 256) <= budget_bytes:
        n += 256
    return n


def markdown(report: dict) -> str:
    """``scale-<tag>.md`` from the report of ``scale-<tag>.json``."""
    base = report["throughput"][0]
    lines = [
        "| launch | wall (s) | scan (s) | cells / s of scan | wall vs one process |",
        "|---|---|---|---|---|",
    ]
    for r in report["throughput"]:
        lines.append(
            f"| {r['launch']} | {r['wall_s']:.1f} | {r['scan_s']:.1f} | {r['cells_per_s']:.0f} | "
            f"{r['wall_s'] / base['wall_s']:.2f} |"
        )
    lines += ["", "| SmolLM2-135M weights | weight memory (MB) | peak RSS (MB) |", "|---|---|---|"]
    for r in report["memory"]:
        lines.append(f"| {r['dtype']} | {r['weights_mb']:.0f} | {r['peak_rss_mb']:.0f} |")
    lines += [
        "",
        "| SmolLM2 prompt (tokens) | scan (s) | RSS after load (MB) | peak RSS (MB) "
        "| planned row (MB) |",
        "|---|---|---|---|---|",
    ]
    for r in report["long_prompts"]:
        lines.append(
            f"| {r['n_tokens']} | {r['seconds']:.1f} | {r['rss_after_load_mb']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r['planned_row_mb']:.0f} |"
        )
    if report.get("largest_prompt_24gb"):
        lines += ["", f"Largest SmolLM2 prompt whose planned row fits 24 GB less the float32 "
                      f"model's RSS: {report['largest_prompt_24gb']} tokens."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--n-examples", type=int, default=512, help="organism examples scored")
    parser.add_argument("--memory-examples", type=int, default=4, help="SmolLM2 examples scored")
    parser.add_argument(
        "--long-prompts", default="1024,2048,4096",
        help="SmolLM2 prompt lengths to score (tokens, comma-separated)",
    )  # fmt: skip
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--long-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.memory_examples)
        return
    if args.long_child:
        long_prompt_child(args.long_child)
        return
    throughput = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "organism.jsonl"
        users = str(args.n_examples // 2)
        subprocess.run([sys.executable, "-m", "dps_lens", "organism", "data", "--split",
                        "discovery", "--users", users, "--out", str(data)],
                       check=True, capture_output=True, cwd=ROOT)  # fmt: skip
        for name, launch in LAUNCHES.items():
            row = discover(launch, data, Path(tmp) / name.replace(" ", "-"), args.n_examples)
            throughput.append({"launch": name, **row})
            print(f"{name:>24}: wall {row['wall_s']:6.1f} s, scan {row['scan_s']:6.1f} s, "
                  f"{row['cells_per_s']:7.0f} cells/s", flush=True)  # fmt: skip
    memory = []
    if SMOLLM2.exists():
        for dtype in ("float32", "bfloat16"):
            done = subprocess.run(
                [sys.executable, __file__, "--memory-child", dtype,
                 "--memory-examples", str(args.memory_examples)],
                check=True, capture_output=True, text=True, cwd=ROOT,
            )  # fmt: skip
            memory.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{dtype:>24}: {memory[-1]}", flush=True)
    long_prompts, largest = [], None
    if SMOLLM2.exists():
        for n_tokens in (int(t) for t in args.long_prompts.split(",")):
            done = subprocess.run([sys.executable, __file__, "--long-child", str(n_tokens)],
                                  check=True, capture_output=True, text=True, cwd=ROOT)  # fmt: skip
            long_prompts.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{n_tokens:>24}: {long_prompts[-1]}", flush=True)
        loaded_bytes = long_prompts[0]["rss_after_load_mb"] * 2**20 if long_prompts else 0
        largest = largest_prompt(24e9 - loaded_bytes)
    report = {
        "cpu_count": os.cpu_count(),
        "throughput": throughput,
        "memory": memory,
        "long_prompts": long_prompts,
        "largest_prompt_24gb": largest,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale-cpu.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "scale-cpu.md").write_text(markdown(report))
    print(markdown(report), end="")


if __name__ == "__main__":
    main()
