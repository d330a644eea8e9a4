"""The wall times recorded in the committed result files, as one table: ``results/timings.md``.

Every study and scan writes the seconds it took into its own result file (``seconds`` in
``report.json`` / ``sweep.json``, ``config.seconds`` in a discover ``scores.json``); this script
only collects them, so the table never holds a number typed by hand.

    .venv/bin/python benchmarks/timings.py            # rewrites results/timings.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (result file relative to the repository root, keys leading to the seconds, the command)
ENTRIES: list[tuple[str, tuple[str, ...], str]] = [
    ("results/validate/planted/report.json", ("seconds",),
     "dps-lens organism validate --model organism-planted"),
    ("results/validate/free/report.json", ("seconds",),
     "dps-lens organism validate --model organism-free"),
    ("results/study-organism-planted/sweep.json", ("seconds",),
     "dps-lens study organism-steering --model organism-planted"),
    ("results/study-organism-free/sweep.json", ("seconds",),
     "dps-lens study organism-steering --model organism-free"),
    ("results/study-organism-clusters/report.json", ("seconds",),
     "dps-lens study organism-clusters"),
    ("results/smollm2-lamp7/discover/scores.json", ("config", "seconds"),
     "dps-lens discover (SmolLM2-135M-Instruct, 4 LaMP-7 examples, all heads, exact)"),
    ("results/study-lamp/smollm2-lamp7/report.json", ("discovery_seconds",),
     "dps-lens study lamp (SmolLM2-135M-Instruct, LaMP-7): discovery, 32 users, two races"),
    ("results/study-lamp/smollm2-lamp7/report.json", ("evaluation_seconds",),
     "dps-lens study lamp (SmolLM2-135M-Instruct, LaMP-7): decoding, 64 users, 11 runs"),
    ("results/study-lamp/smollm2-lamp4/report.json", ("discovery_seconds",),
     "dps-lens study lamp (SmolLM2-135M-Instruct, LaMP-4): discovery, 32 users, two races"),
    ("results/study-lamp/smollm2-lamp4/report.json", ("evaluation_seconds",),
     "dps-lens study lamp (SmolLM2-135M-Instruct, LaMP-4): decoding, 64 users, 11 runs"),
    ("results/study-lamp/gemma3-lamp7/report.json", ("discovery_seconds",),
     "dps-lens study lamp (Gemma 3 270M, LaMP-7): discovery, 32 users, two races"),
    ("results/study-lamp/gemma3-lamp7/report.json", ("evaluation_seconds",),
     "dps-lens study lamp (Gemma 3 270M, LaMP-7): decoding, 64 users, 11 runs"),
    ("results/study-lamp/gemma3-lamp4/report.json", ("discovery_seconds",),
     "dps-lens study lamp (Gemma 3 270M, LaMP-4): discovery, 32 users, two races"),
    ("results/study-lamp/gemma3-lamp4/report.json", ("evaluation_seconds",),
     "dps-lens study lamp (Gemma 3 270M, LaMP-4): decoding, 64 users, 11 runs"),
    ("results/study-lamp/gemma3-lamp4-full/report.json", ("discovery_seconds",),
     "dps-lens study lamp (Gemma 3 270M, LaMP-4, prompts ≤ 192 tokens): discovery, 64 users, two races"),
    ("results/study-lamp/gemma3-lamp4-full/report.json", ("evaluation_seconds",),
     "dps-lens study lamp (Gemma 3 270M, LaMP-4, prompts ≤ 192 tokens): decoding, 100 users, 15 runs"),
    ("results/study-lamp/gemma3-lamp4-full/report.json", ("seconds",),
     "dps-lens study lamp (Gemma 3 270M, LaMP-4, prompts ≤ 192 tokens): the whole command, 64/100 users"),
    ("results/study-lamp/smollm2-lamp4-full/report.json", ("discovery_seconds",),
     "dps-lens study lamp (SmolLM2-135M-Instruct, LaMP-4, bfloat16, ≤ 192 tokens): discovery, 64 users, two races"),
    ("results/study-lamp/smollm2-lamp4-full/report.json", ("evaluation_seconds",),
     "dps-lens study lamp (SmolLM2-135M-Instruct, LaMP-4, bfloat16, ≤ 192 tokens): decoding, 100 users, 15 runs"),
    ("results/study-lamp/smollm2-lamp4-full/report.json", ("seconds",),
     "dps-lens study lamp (SmolLM2-135M-Instruct, LaMP-4, bfloat16, ≤ 192 tokens): the whole command, 64/100 users"),
    ("results/study-lamp/smollm2-lamp7-full/report.json", ("discovery_seconds",),
     "dps-lens study lamp (SmolLM2-135M-Instruct, LaMP-7, bfloat16, ≤ 192 tokens): discovery, 64 users, two races"),
    ("results/study-lamp/smollm2-lamp7-full/report.json", ("evaluation_seconds",),
     "dps-lens study lamp (SmolLM2-135M-Instruct, LaMP-7, bfloat16, ≤ 192 tokens): decoding, 100 users, 15 runs"),
    ("results/study-lamp/smollm2-lamp7-full/report.json", ("seconds",),
     "dps-lens study lamp (SmolLM2-135M-Instruct, LaMP-7, bfloat16, ≤ 192 tokens): the whole command, 64/100 users"),
    ("results/study-lamp/gemma3-lamp7-full/report.json", ("discovery_seconds",),
     "dps-lens study lamp (Gemma 3 270M, LaMP-7, bfloat16, ≤ 192 tokens): discovery, 64 users, two races"),
    ("results/study-lamp/gemma3-lamp7-full/report.json", ("evaluation_seconds",),
     "dps-lens study lamp (Gemma 3 270M, LaMP-7, bfloat16, ≤ 192 tokens): decoding, 100 users, 15 runs"),
    ("results/study-lamp/gemma3-lamp7-full/report.json", ("seconds",),
     "dps-lens study lamp (Gemma 3 270M, LaMP-7, bfloat16, ≤ 192 tokens): the whole command, 64/100 users"),
]  # fmt: skip


def collect(root: Path = ROOT) -> list[dict]:
    """One row per committed result file that exists: command, file, seconds."""
    rows = []
    for relative, keys, command in ENTRIES:
        path = root / relative
        if not path.exists():
            continue
        value = json.loads(path.read_text(encoding="utf-8"))
        for key in keys:
            value = value[key]
        rows.append({"command": command, "file": relative, "seconds": float(value)})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| command | result file | wall time (s) |", "|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['command']}` | `{r['file']}` | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "timings.md")
    args = parser.parse_args()
    text = markdown(collect())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text, end="")


if __name__ == "__main__":
    main()
