"""Latency of DPS (exact and shared-prefill), CAD and the head-editing methods (attention
emphasis, head shift, amplification) relative to plain KV-cached greedy decoding.

For each model and prompt length (128 / 512 / 1024 tokens, as far as the context allows), one
prompt built from real profile text is decoded for exactly 32 new tokens (EOS ignored), batch 1,
by every method; the median of ``--repeats`` timed runs after a warm-up is kept. Ratios are
against ``plain`` (the same engine without a contrast) measured in the same run; HF
``generate`` (greedy, KV cache) is timed too, as the outside peer of ``plain``.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_steering.py --out benchmarks/results

The steered heads are read from saved discovery results (``dps_lens.selection.read_heads``):
``--heads`` for SmolLM2 (default: the committed ``results/smollm2-lamp7/discover``, top 10) and
``--organism-heads`` for the organism (default: the committed organism study's scan, top 3).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from dps_lens.data import PreferenceExample, load_examples
from dps_lens.data.encoding import encoder_for
from dps_lens.data.prompts import get_template
from dps_lens.interventions import head_directions
from dps_lens.models import load_model
from dps_lens.selection import read_heads
from dps_lens.steering import (
    Steering,
    amplify,
    attention_emphasis,
    cad,
    dps,
    generate,
    head_shift,
    plain,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SMOLLM2 = SHARED / "models" / "QuantFactory__SmolLM2-135M-Instruct-GGUF"
LAMP7 = SHARED / "data" / "lamp7_user_dev_dps" / "LaMP-7.dev300.jsonl"
NEW_TOKENS = 32


def profile_examples() -> list[PreferenceExample]:
    """Examples to fill prompts with: LaMP-7 users when present, else organism users."""
    if LAMP7.exists():
        return load_examples(LAMP7)[:40]
    from dps_lens.organism.world import World

    return World().split_examples("evaluation", 40)


def profile_pool() -> list[str]:
    """Profile texts to fill prompts with (``profile_examples``' history items)."""
    return [item for e in profile_examples() for item in e.profile]


def example_of_length(model, pool: list[str], n_tokens: int, template: str) -> PreferenceExample:
    """An example whose prompt has about ``n_tokens`` tokens (profile items added until it does)."""
    encoder = encoder_for(model, get_template(template))
    question = "Paraphrase the following tweet without any explanation before or after it: hello"
    profile: list[str] = []
    for item in pool * 50:
        candidate = PreferenceExample("bench", question, [*profile, item], "x")
        if len(encoder.encode(candidate, with_target=False).input_ids) > n_tokens:
            break
        profile.append(item)
    return PreferenceExample("bench", question, profile, "x")


def timed(model, example, steering: Steering, template: str, repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats + 1):  # the first run warms up
        out = generate(
            model, [example], steering, max_new_tokens=NEW_TOKENS, template=template,
            stop_at_eos=False,
        )  # fmt: skip
        runs.append(out)
    kept = runs[1:]
    return {
        "prompt_tokens": len(kept[0].prompt_ids[0]),
        "prefill_s": statistics.median(r.prefill_seconds for r in kept),
        "decode_s_per_token": statistics.median(r.decode_seconds / (NEW_TOKENS - 1) for r in kept),
        "end_to_end_s": statistics.median(r.prefill_seconds + r.decode_seconds for r in kept),
    }


def hf_generate_seconds(model, example, template: str, repeats: int) -> float:
    encoder = encoder_for(model, get_template(template))
    ids = torch.tensor([encoder.encode(example, with_target=False).input_ids])
    ids = ids.to(model.cfg.device)
    hf = model.original_model
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.no_grad():
            hf.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0,
            )  # fmt: skip
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def bench_model(name: str, spec: str, heads, template: str, lengths, repeats: int) -> list[dict]:
    model = load_model(spec, device="cuda" if torch.cuda.is_available() else "cpu")
    pool = profile_pool()
    directions = head_directions(
        model, profile_examples()[:8], template, max_length=min(512, int(model.cfg.n_ctx))
    )
    methods = {
        "plain": plain(),
        "dps_exact": dps(model, heads, gamma=1.0),
        "dps_shared_prefill": dps(model, heads, gamma=1.0, masked_run="shared_prefill"),
        "cad": cad(1.0),
        "attention_emphasis": attention_emphasis(model, heads, alpha=0.01),
        "head_shift": head_shift(model, heads, directions, alpha=2.0),
        "amplify": amplify(model, heads, alpha=1.0),
    }
    rows = []
    for length in lengths:
        if length + NEW_TOKENS > int(model.cfg.n_ctx):
            continue
        example = example_of_length(model, pool, length, template)
        measured = {m: timed(model, example, s, template, repeats) for m, s in methods.items()}
        peer = hf_generate_seconds(model, example, template, repeats)
        base = measured["plain"]
        for method, values in measured.items():
            rows.append(
                {
                    "model": name,
                    "target_length": length,
                    "method": method,
                    "heads": [list(h) for h in heads],
                    **values,
                    "per_token_vs_plain": values["decode_s_per_token"] / base["decode_s_per_token"],
                    "end_to_end_vs_plain": values["end_to_end_s"] / base["end_to_end_s"],
                    "hf_generate_s": peer,
                }
            )
            print(
                f"{name:>16} L={values['prompt_tokens']:>5} {method:>18}: "
                f"{1000 * values['decode_s_per_token']:7.1f} ms/token "
                f"({rows[-1]['per_token_vs_plain']:.2f}x), end to end "
                f"{values['end_to_end_s']:.2f} s ({rows[-1]['end_to_end_vs_plain']:.2f}x); "
                f"HF generate {peer:.2f} s",
                flush=True,
            )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | prompt tokens | method | ms / generated token | × plain | end to end (s) | × plain |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['prompt_tokens']} | {r['method']} | "
            f"{1000 * r['decode_s_per_token']:.1f} | {r['per_token_vs_plain']:.2f} | "
            f"{r['end_to_end_s']:.2f} | {r['end_to_end_vs_plain']:.2f} |"
        )
    peers = {(r["model"], r["prompt_tokens"]): r["hf_generate_s"] for r in rows}
    lines.append("")
    lines.append("HF `generate` (greedy, KV cache, same prompts), end to end: " + ", ".join(
        f"{m} L={n}: {s:.2f} s" for (m, n), s in peers.items()
    ))  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lengths", default="128,512,1024")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--heads", type=Path, default=ROOT / "results" / "smollm2-lamp7" / "discover",
        help="SmolLM2 heads: a dps-lens discover output directory or a top_k.json",
    )  # fmt: skip
    parser.add_argument("--k", type=int, default=10, help="SmolLM2: steer the top K heads")
    parser.add_argument(
        "--organism-heads", type=Path,
        default=ROOT / "results" / "study-organism-planted" / "discover",
        help="organism heads: a dps-lens discover output directory or a top_k.json",
    )  # fmt: skip
    parser.add_argument("--organism-k", type=int, default=3, help="organism: the top K heads")
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    torch.manual_seed(0)
    organism_heads = read_heads(args.organism_heads, args.organism_k, model_id="organism-planted")
    print(f"organism-planted heads ({args.organism_heads}): {organism_heads}")
    rows = bench_model(
        "organism-planted", "organism-planted", organism_heads, "history", lengths, args.repeats
    )
    if SMOLLM2.exists():
        heads = read_heads(args.heads, args.k, model_id=str(SMOLLM2))  # run from the repo root
        print(f"SmolLM2 heads ({args.heads}): {heads}")
        rows += bench_model("SmolLM2-135M", str(SMOLLM2), heads, "chat", lengths, args.repeats)
    else:
        print(f"{SMOLLM2} not present: SmolLM2 rows skipped")
    device = "cuda: " + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    report = {
        "device": device,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "new_tokens": NEW_TOKENS,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    tag = "gpu" if torch.cuda.is_available() else "cpu"
    (args.out / f"steering-{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"steering-{tag}.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
