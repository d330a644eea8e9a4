"""Prediction-powered racing, measured: when it decides heads (at 64 examples, beside exact,
racing and hybrid from ``bench_discovery.py``'s run), and how far it gets with attribution on
many examples and exact cells only where the race needs them.

Part 1 replays every race on the exact scan's per-example values (the race is a function of the
values, their seeded order and the bounds, so a replay makes the same decisions with no model)
and reports, per race, the cells it scored before its decisions first held every head racing
decided: the cells ``ppi-racing`` needs to reach racing's decisions.

Part 2 (the headline) runs ``ppi-racing`` with an indifference zone of 10% of the K-th head's
estimate on ``--n-examples`` LaMP-7 examples (attribution on all of them, exact cells where the
race needs them): cells, wall time, its decisions, and each head it calls in checked against its
exact PCS on all the examples (a contender is scored on every example), beside the wall time of
the full exact scan at 64 examples from part 1's run.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_ppi_racing.py --work runs/bench-ppi \\
        --out benchmarks/results

Run ``bench_discovery.py --cases smollm2-64 --methods exact,racing,hybrid,attribution,ppi-racing,
ppi-racing+cs,ppi-racing+lucb --work runs/bench-ppi --tag ppi-smollm2-64`` first (part 1's
inputs); the organism and the random GPT-2 shape go through ``bench_discovery.py`` the same way.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

HERE = Path(__file__).resolve().parent


def _discovery_bench():
    spec = importlib.util.spec_from_file_location("bench_discovery", HERE / "bench_discovery.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_discovery"] = module
    spec.loader.exec_module(module)
    return module


def replay(
    values: torch.Tensor, predictions: torch.Tensor | None, config
) -> list[tuple[int, dict]]:
    """Replay a race (``config``: a racing ScanConfig) on per-example ``values`` (examples ×
    layers × heads): the cells scored and the decisions after each of its looks, then after the
    contenders' scoring on every example."""
    from dps_lens.heads import all_heads
    from dps_lens.scoring.checkpoint import ScanCheckpoint
    from dps_lens.scoring.racing import racing_work

    n, n_layers, n_heads = values.shape
    checkpoint = ScanCheckpoint(None, "replay", (n, n_layers, n_heads))
    trace: list[tuple[int, dict]] = []
    state = SimpleNamespace(
        model=None, examples=[None] * n, encoded=[SimpleNamespace(input_ids=[0])] * n,
        heads=all_heads(n_layers, n_heads), config=config, pad_id=0, means=None,
        checkpoint=checkpoint, status=torch.full((n_layers, n_heads), -1, dtype=torch.int8),
        share=lambda: None, predictions=predictions, n_examples=n,
        race_low=torch.full((n_layers, n_heads), math.nan),
        race_high=torch.full((n_layers, n_heads), math.nan),
        on_look=lambda status: trace.append((int(checkpoint.done.sum()), status)),
    )  # fmt: skip
    for work in racing_work(state):  # pyright: ignore[reportArgumentType]
        for i, (layer, head) in work.cells:
            checkpoint.per_example[i, layer, head] = values[i, layer, head]
            checkpoint.done[i, layer, head] = True
    # the contenders' scoring on every example, after the last look
    return [*trace, (int(checkpoint.done.sum()), trace[-1][1])]


def cells_to_reach(trace: list[tuple[int, dict]], target: dict) -> int | None:
    """The cells a race had scored when its decisions first included every decided head of
    ``target`` (None: never)."""
    wanted = {head: code for head, code in target.items() if code != 0}
    for cells, status in trace:
        if all(status.get(head) == code for head, code in wanted.items()):
            return cells
    return None


def part_one(work: Path, case: str, n: int) -> dict:
    """Replays of racing and the prediction-powered races on the exact values of ``case``."""
    bench = _discovery_bench()
    exact = torch.load(work / f"{case}-{n}-exact.pt")
    predictions = torch.load(work / f"{case}-{n}-attribution.pt")
    k = bench.CASES[case].k
    races = {}
    for method in ("racing", "ppi-racing", "ppi-racing+cs", "ppi-racing+lucb"):
        config = bench.scan_config(method, bench.case_of(case, n))
        trace = replay(exact, predictions if method.startswith("ppi") else None, config)
        races[method] = trace
    target = races["racing"][-1][1]
    rows = []
    for method, trace in races.items():
        final = trace[-1][1]
        rows.append({
            "method": method,
            "cells": trace[-1][0],
            "in": sum(code == 1 for code in final.values()),
            "out": sum(code == 2 for code in final.values()),
            "cells_to_racing_decisions": cells_to_reach(trace, target),
        })  # fmt: skip
    return {"case": case, "n_examples": n, "k": k, "cells_exact": exact.numel(), "rows": rows}


def part_two(work: Path, methods: list[str], n: int) -> dict:
    """The headline runs on ``n`` LaMP-7 examples, and the exact scan at 64 to compare with."""
    bench = _discovery_bench()
    from dps_lens.scoring.head_scores import IN
    from dps_lens.scoring.ppi import ppi_mean

    case = "smollm2-256"
    reference = json.loads((work / "smollm2-64-64-exact.json").read_text())
    rows = []
    for method in methods:
        measured = bench.measure(case, method, n, work)
        values = torch.load(work / f"{case}-{n}-{method}.pt")
        status = torch.load(work / f"{case}-{n}-{method}.status.pt")
        predictions = torch.load(work / f"{case}-{n}-{method}.predictions.pt")
        estimate = ppi_mean(values, predictions, ddof=1).estimate
        k = bench.CASES[case].k
        kth = float(estimate.flatten().topk(k).values[-1])
        epsilon = 0.1 * max(kth, 0.0)
        called = [tuple(h) for h in torch.nonzero(status == IN).tolist()]
        exact_of = {h: float(values[:, h[0], h[1]].mean()) for h in called}
        rows.append({
            "method": method,
            "n_examples": n,
            "seconds": measured["seconds"],
            "cells": int((~torch.isnan(values)).sum()),
            "cells_all": values.numel(),
            "status": {name: int((status == code).sum()) for code, name in ((1, "in"), (2, "out"), (0, "undecided"))},
            "kth_estimate": kth,
            "epsilon": epsilon,
            "called_in": [[*h, exact_of[h]] for h in called],
            "called_in_hold": all(v >= kth - epsilon for v in exact_of.values()),
        })  # fmt: skip
    return {"exact_64_seconds": reference["seconds"], "rows": rows}


def markdown(report: dict) -> str:
    """``ppi-racing.md`` from ``ppi-racing.json``."""
    from dps_lens.heads import head_name

    one = report["replay"]
    lines = [
        f"Replays on {one['case']}'s exact values ({one['n_examples']} examples, K = {one['k']}, "
        f"{one['cells_exact']} cells in the full exact scan):",
        "",
        "| race | cells scored | decided in | decided out "
        "| cells when its decisions first held racing's |",
        "|---|---|---|---|---|",
    ]
    for r in one["rows"]:
        reach = (
            "never"
            if r["cells_to_racing_decisions"] is None
            else str(r["cells_to_racing_decisions"])
        )
        lines.append(f"| {r['method']} | {r['cells']} | {r['in']} | {r['out']} | {reach} |")
    two = report["headline"]
    lines += [
        "",
        f"With attribution on every example and ε = 10% of the K-th head's estimate (the full "
        f"exact scan at 64 examples took {two['exact_64_seconds']:.0f} s in the same run):",
        "",
        "| race | examples | wall (s) | × the exact scan at 64 | cells scored (of all) "
        "| in / out / undecided | heads called in: exact PCS on all examples "
        "| all ≥ K-th estimate − ε |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in two["rows"]:
        s = r["status"]
        called = ", ".join(f"{head_name(h[:2])} {h[2]:.3f}" for h in r["called_in"]) or "none"
        lines.append(
            f"| {r['method']} | {r['n_examples']} | {r['seconds']:.0f} | "
            f"{r['seconds'] / two['exact_64_seconds']:.2f} | {r['cells']} ({r['cells_all']}) | "
            f"{s['in']} / {s['out']} / {s['undecided']} | {called} | "
            f"{'yes' if r['called_in_hold'] else 'NO'} (K-th {r['kth_estimate']:.3f}, ε {r['epsilon']:.3f}) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="bench_discovery.py's --work")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--n-examples", type=int, default=256)
    parser.add_argument("--methods", default="ppi-racing+eps10,ppi-racing+cs+eps10")
    args = parser.parse_args()
    report = {
        "replay": part_one(args.work, "smollm2-64", 64),
        "headline": part_two(args.work, args.methods.split(","), args.n_examples),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ppi-racing.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out / "ppi-racing.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
