"""Prediction-powered racing, measured: when it decides heads (replayed on the exact values of a
full scan) and how far it gets with attribution on many examples and exact cells only where the
race needs them.

Part 1 replays every race (racing, ``ppi-racing`` with the union bound, with the confidence
sequence and with LUCB's allocation) on the exact scan's per-example values, with attribution's
values as the predictions. A race is a function of the values, their seeded order, the bounds and
the allocation, so a replay makes the same decisions as a run, with no model. Per race: the cells
it scores, its decisions, whether they hold on the exact means, the floor of its bounds, and the
cells it had scored when its decisions first held every head that racing decided.

Part 2 (the headline) runs races with an indifference zone of 10% of the K-th head's estimate
(``+eps10``) on ``--headline-n`` examples (attribution on all of them, exact cells where the race
needs them): cells, wall time, its decisions, and each head it calls in checked against the exact
PCS of the contenders on all the examples (a contender is scored on every example), beside the
wall time of part 1's full exact scan as ``bench_discovery.py`` committed it (``--reference``).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_discovery.py --cases smollm2-64 \
        --methods exact,attribution --work runs/bench-ppi --tag ppi-smollm2-64
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_ppi_racing.py --work runs/bench-ppi

Each part, and each headline race, updates the report in place: ``--keep-replay`` keeps the
committed replay, and a headline race not in ``--headline-methods`` keeps its committed row (all
of them with ``--headline-methods ''``), so a race can be added without rerunning the others.
(``--replay-case organism-planted --replay-n 256 --headline-methods ''`` replays the organism's
races the same way.)
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


REPLAYED = ("racing", "ppi-racing", "ppi-racing+cs", "ppi-racing+lucb")


def part_one(work: Path, case: str, n: int) -> dict:
    """Replays of racing and the prediction-powered races on the exact values of ``case``, each
    race's decisions checked against the exact top K, with the floor of its bounds."""
    bench = _discovery_bench()
    exact = torch.load(work / f"{case}-{n}-exact.pt")
    predictions = torch.load(work / f"{case}-{n}-attribution.pt")
    k = bench.CASES[case].k
    predicted = {m: predictions if m.startswith("ppi") else None for m in REPLAYED}
    races = {
        method: replay(exact, predicted[method], bench.scan_config(method, bench.case_of(case, n)))
        for method in REPLAYED
    }
    target = races["racing"][-1][1]
    rows = []
    for method, trace in races.items():
        status = torch.zeros(exact.shape[1:], dtype=torch.int8)
        for (layer, head), code in trace[-1][1].items():
            status[layer, head] = code
        checked = bench.racing_decisions(status, exact, k, method, predicted[method])
        rows.append({
            "method": method,
            "cells": trace[-1][0],
            "in": checked["status"]["in"],
            "out": checked["status"]["out"],
            "undecided": checked["status"]["undecided"],
            "consistent": checked["consistent"],
            "fewest_evaluations": checked["fewest_evaluations"],
            "cells_to_racing_decisions": cells_to_reach(trace, target),
        })  # fmt: skip
    return {"case": case, "n_examples": n, "k": k, "cells_exact": exact.numel(), "rows": rows}


def exact_scan_seconds(results: Path, case: str, n: int) -> float:
    """The wall time of the full exact scan of ``case`` on ``n`` examples in a committed
    ``bench_discovery.py`` result."""
    rows = json.loads(results.read_text())["rows"]
    found = [r for r in rows if (r["case"], r["method"], r["n_examples"]) == (case, "exact", n)]
    if not found:
        sys.exit(f"error: {results} has no exact scan of {case} on {n} examples; run part 1's "
                 "bench_discovery.py command first")  # fmt: skip
    return found[0]["seconds"]


def part_two(work: Path, case: str, methods: list[str], n: int) -> list[dict]:
    """The rows of the headline races ``methods`` on ``n`` examples of ``case``."""
    bench = _discovery_bench()
    from dps_lens.scoring.head_scores import IN, OUT, STATUS_NAMES

    rows = []
    for method in methods:
        measured = bench.measure(case, method, n, work)
        values = torch.load(work / f"{case}-{n}-{method}.pt")
        status = torch.load(work / f"{case}-{n}-{method}.status.pt")
        config = bench.scan_config(method, bench.case_of(case, n))
        exact_means = values.nanmean(0)  # contenders are scored on every example
        called = [tuple(h) for h in torch.nonzero(status == IN).tolist()]
        contenders = status != OUT
        # the K-th largest mean among the contenders: every head in must be within ε of it
        kth = float(exact_means[contenders].topk(min(config.k, int(contenders.sum()))).values[-1])
        epsilon = config.epsilon_value(kth)
        exact_of = {h: float(exact_means[h]) for h in called}
        rows.append({
            "method": method,
            "n_examples": n,
            "seconds": measured["seconds"],
            "cells": int((~torch.isnan(values)).sum()),
            "cells_all": values.numel(),
            "status": {name: int((status == code).sum()) for code, name in STATUS_NAMES.items()},
            "kth_contender_mean": kth,
            "epsilon": epsilon,
            "called_in": [[*h, exact_of[h]] for h in called],
            "called_in_hold": all(v >= kth - epsilon for v in exact_of.values()),
        })  # fmt: skip
    return rows


def markdown(report: dict) -> str:
    """``ppi-racing-<tag>.md`` from its JSON."""
    from dps_lens.heads import head_name

    one = report["replay"]
    lines = [
        f"Replays on {one['case']}'s exact values ({one['n_examples']} examples, K = {one['k']}, "
        f"{one['cells_exact']} cells in the full exact scan; attribution's values as the "
        "predictions):",
        "",
        "| race | cells scored | in / out / undecided | decisions hold on the exact means "
        "| floor of its bounds (cells) | cells when its decisions first held racing's |",
        "|---|---|---|---|---|---|",
    ]
    for r in one["rows"]:
        reach = r["cells_to_racing_decisions"]
        lines.append(
            f"| {r['method']} | {r['cells']} | {r['in']} / {r['out']} / {r['undecided']} | "
            f"{'yes' if r['consistent'] else 'NO'} | {r['fewest_evaluations']} | "
            f"{'never' if reach is None else reach} |"
        )
    two = report.get("headline")
    if two is None:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        f"On {two['case']}, attribution on every example and exact cells where the race needs "
        f"them, beside the full exact scan {two['reference']} ({two['exact_seconds']:.0f} s, "
        "measured by part 1's command on a machine of the same kind, not in the same run):",
        "",
        "| race | examples | wall (s) | × the exact scan's wall | cells scored (of all) "
        "| in / out / undecided | heads called in: exact PCS on all examples "
        "| each ≥ the K-th contender − ε |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in two["rows"]:
        s = r["status"]
        called = ", ".join(f"{head_name(h[:2])} {h[2]:.3f}" for h in r["called_in"]) or "none"
        lines.append(
            f"| {r['method']} | {r['n_examples']} | {r['seconds']:.0f} | "
            f"{r['seconds'] / two['exact_seconds']:.2f} | {r['cells']} ({r['cells_all']}) | "
            f"{s['in']} / {s['out']} / {s['undecided']} | {called} | "
            f"{'yes' if r['called_in_hold'] else 'NO'} (K-th {r['kth_contender_mean']:.4f}, "
            f"ε {r['epsilon']:.4f}) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="bench_discovery.py's --work")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--tag", default="smollm2", help="results go to ppi-racing-<tag>.{json,md}")
    parser.add_argument("--replay-case", default="smollm2-64")
    parser.add_argument("--replay-n", type=int, default=64)
    parser.add_argument(
        "--keep-replay", action="store_true",
        help="keep the committed replay (part 1) instead of replaying from --work",
    )  # fmt: skip
    parser.add_argument(
        "--reference", type=Path, default=Path("benchmarks/results/discovery-ppi-smollm2-64.json"),
        help="the committed bench_discovery.py result holding part 1's exact scan",
    )  # fmt: skip
    parser.add_argument("--headline-case", default="smollm2-256")
    parser.add_argument("--headline-n", type=int, default=256)
    parser.add_argument(
        "--headline-methods", default="ppi-racing+eps10",
        help="comma-separated races for the headline ('' runs none and keeps the committed rows)",
    )  # fmt: skip
    args = parser.parse_args()
    report_file = args.out / f"ppi-racing-{args.tag}.json"
    previous = json.loads(report_file.read_text()) if report_file.exists() else {}
    if args.keep_replay and "replay" not in previous:
        sys.exit(f"error: {report_file} has no replay to keep; drop --keep-replay")
    report: dict = {
        "replay": previous["replay"]
        if args.keep_replay
        else part_one(args.work, args.replay_case, args.replay_n)
    }
    if args.headline_methods:
        methods = args.headline_methods.split(",")
        kept = [
            r for r in previous.get("headline", {}).get("rows", []) if r["method"] not in methods
        ]
        report["headline"] = {
            "case": args.headline_case,
            "reference": f"`{args.replay_case}` on {args.replay_n} examples in "
            f"`{args.reference.name}`",
            "exact_seconds": exact_scan_seconds(args.reference, args.replay_case, args.replay_n),
            "rows": kept + part_two(args.work, args.headline_case, methods, args.headline_n),
        }
    elif "headline" in previous:
        report["headline"] = previous["headline"]
    args.out.mkdir(parents=True, exist_ok=True)
    report_file.write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out / f"ppi-racing-{args.tag}.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
