"""Head discovery: TransformerLens' own patching functions against dps_lens' discovery methods, on
the same bridge, model and examples.

Methods: ``tl-patch`` (TransformerLens ``generic_activation_patch``: activation ``z``,
``layer_head_vector_patch_setter``, axes layer × head, ``reduce="none"``, a zero "clean cache",
one forward per head over the whole batch), ``tl-attribution`` (the gradient of the summed target
NLL at every ``hook_z`` from TransformerLens' ``cache_activation_and_gradient``, times ``0 − z``
over the real positions: its ``attribution_patch`` entry point needs a token run of the same
length as the target, which a zero ablation is not), and ours: ``exact``, ``racing`` (top K;
``racing+boundary`` with the boundary allocation), ``attribution``, ``attribution+graddrop`` and
``hybrid`` (top 20 rescored exactly), ``exact+bfloat16`` (the exact scan with the weights in
bfloat16: its values against the float32 scan's, cell by cell), and the prediction-powered races
``ppi-racing`` (t-intervals with the union bound), ``ppi-racing+cs`` (the asymptotic confidence
sequence) and ``ppi-racing+lucb`` (LUCB's allocation); a suffix ``+eps10`` adds an indifference
zone of 10% of the K-th head's estimate.

Each (case, method) runs in a fresh subprocess, so its wall time and peak RSS are its own. The
parent compares the scores with the exact scan: max |value − exact| for the methods that compute
exact values, Spearman correlation of the head means and recall of the exact top K.

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
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock

SHARED = Path(__file__).resolve().parents[2] / "shared"
SMOLLM2 = SHARED / "models" / "QuantFactory__SmolLM2-135M-Instruct-GGUF"
LAMP7 = SHARED / "data" / "lamp7_user_dev_dps" / "LaMP-7.dev300.jsonl"
LAMP4 = SHARED / "data" / "lamp4_user_dev_dps" / "LaMP-4.dev300.jsonl"
# written by `dps-lens fetch gemma3-270m --accept-terms --out runs/models/gemma3-270m`
GEMMA3 = Path(__file__).resolve().parents[1] / "runs" / "models" / "gemma3-270m"
BFLOAT16 = "exact+bfloat16"  # the exact scan with the weights in bfloat16
METHODS = (
    "tl-patch",
    "exact",
    "racing",
    "racing+boundary",
    "attribution",
    "attribution+graddrop",
    "hybrid",
    "tl-attribution",
    BFLOAT16,
    "ppi-racing",
    "ppi-racing+cs",
)
PEER = "tl-patch"  # TransformerLens' own patching: the measured peer
EXACT_VALUED = ("tl-patch", "racing", "hybrid", "ppi-racing")
"""Methods (any ``+variant`` of them) whose values are comparable cell by cell with exact."""
HYBRID_TOP = 20
BATCH_SIZE = 16


@dataclass(frozen=True)
class Case:
    """A benchmark case: examples, prompt template, token limit and the top-K size."""

    n_examples: int
    template: str
    max_length: int | None
    k: int


CASES = {
    "organism-planted": Case(64, "history", None, 3),
    # Byte-level tokens make organism prompts long: the examples are cut to 128 tokens.
    "gpt2-small-random": Case(8, "history", 128, 10),
    "smollm2": Case(16, "chat", 192, 10),
    # 64 LaMP-7 examples; 144 tokens is the shortest limit that fits them all.
    "smollm2-64": Case(64, "chat", 144, 10),
    # Prediction-powered racing's headline: attribution on all, exact cells where the race needs
    # them; one of these 256 examples needs 150 tokens, so the limit is 160.
    "smollm2-256": Case(256, "chat", 160, 10),
    # Gemma 3 270M (base) on LaMP-4 at the LaMP study's full-size prompt limit
    "gemma3": Case(16, "history", 192, 10),
}
NEEDS = {"smollm2": SMOLLM2, "smollm2-64": SMOLLM2, "smollm2-256": SMOLLM2, "gemma3": GEMMA3}
"""The model each real-model case loads; a case whose model is missing is skipped."""


def case_of(name: str, n_examples: int | None) -> Case:
    case = CASES[name]
    if n_examples is None:
        return case
    return Case(n_examples, case.template, case.max_length, case.k)


def setup(name: str, n_examples: int, dtype: str = "float32"):
    """(model, examples) of a benchmark case, the model's weights in ``dtype``."""
    from dps_lens.data import load_examples, sample_examples
    from dps_lens.models import load_model
    from dps_lens.organism.world import World

    if name == "organism-planted":
        examples = World().split_examples("discovery", n_examples, queries_per_user=1)
        return load_model(name, dtype=dtype), examples
    if name == "gpt2-small-random":
        from dps_lens.tiny import TinyModelConfig, build_tiny_model, cache_root

        directory = cache_root() / "bench-gpt2-small-random"
        if not (directory / "config.json").exists():
            shape = dict(n_layers=12, n_heads=12, n_kv_heads=12, d_model=768, d_mlp=3072)
            build_tiny_model(TinyModelConfig("gpt2", **shape), directory)
        examples = World().split_examples("discovery", n_examples, queries_per_user=1)
        return load_model(str(directory), dtype=dtype), examples
    if name == "gemma3":
        examples = sample_examples(load_examples(LAMP4), n_examples, seed=0)
        return load_model(str(GEMMA3), dtype=dtype), examples
    examples = sample_examples(load_examples(LAMP7), n_examples, seed=0)
    return load_model(str(SMOLLM2), dtype=dtype), examples


def encode(model, examples, case: Case):
    from dps_lens.data import collate, encoder_for, get_template
    from dps_lens.data.encoding import pad_id_of

    encoded = encoder_for(model, get_template(case.template), case.max_length).encode_many(examples)
    return encoded, collate(encoded, pad_id_of(model.tokenizer))


def nll_metric(batch):
    """Per-example target NLL from full logits (read at the label positions)."""
    from dps_lens.scoring.loss import label_positions, target_nll

    positions = label_positions(batch)
    return lambda logits: target_nll(logits[:, positions], batch, positions)


def z_names(model) -> list[str]:
    return [f"blocks.{layer}.attn.hook_z" for layer in range(int(model.cfg.n_layers))]


def tl_patch_scores(model, examples, case: Case) -> torch.Tensor:
    """TransformerLens ``generic_activation_patch`` with a zero cache, minus the clean NLL."""
    from transformer_lens.patching import generic_activation_patch, layer_head_vector_patch_setter

    _, batch = encode(model, examples, case)
    shape = (*batch.tokens.shape, int(model.cfg.n_heads), int(model.cfg.d_head))
    zeros = {name: torch.zeros(shape, dtype=model.cfg.dtype) for name in z_names(model)}
    metric = nll_metric(batch)
    with torch.no_grad():
        clean = metric(model(batch.tokens))
        result = generic_activation_patch(
            model, batch.tokens, zeros, metric, layer_head_vector_patch_setter, "z",
            index_axis_names=("layer", "head"), reduce="none",
        )  # fmt: skip
    return result.values.permute(2, 0, 1).cpu() - clean[:, None, None].cpu()


def tl_attribution_scores(model, examples, case: Case) -> torch.Tensor:
    """``Σ_pos (0 − z)·∂L/∂z`` with TransformerLens' gradient cache, batches of ``BATCH_SIZE``."""
    from transformer_lens.tools.analysis.attribution_patching import (
        cache_activation_and_gradient,
    )

    from dps_lens.data import collate
    from dps_lens.data.encoding import pad_id_of, real_token_mask

    encoded, _ = encode(model, examples, case)
    out = []
    for start in range(0, len(encoded), BATCH_SIZE):
        chunk = encoded[start : start + BATCH_SIZE]
        batch = collate(chunk, pad_id_of(model.tokenizer))
        metric = nll_metric(batch)
        # The default node set: with hook_z alone its gradients come back None on a bridge.
        cache = cache_activation_and_gradient(
            model, batch.tokens, lambda lg, metric=metric: metric(lg).sum()
        )
        real = real_token_mask(chunk)[:, :, None, None].to(model.cfg.dtype)
        out.append(
            torch.stack(
                [
                    (-cache.activations[name] * cache.gradients[name] * real).sum(dim=(1, 3))
                    for name in z_names(model)
                ],
                dim=1,
            )
        )
    return torch.cat(out).float().cpu()


def scan_config(method: str, case: Case):
    """The scan a method name stands for: ``base+variant+...`` (boundary, lucb, cs, graddrop,
    eps10)."""
    from dps_lens.scoring import ScanConfig

    base, *variants = method.split("+")
    allocation = next((v for v in variants if v in ("boundary", "lucb")), "uniform")
    return ScanConfig(
        method=base,
        graddrop="graddrop" in variants,
        race_allocation=allocation,  # pyright: ignore[reportArgumentType]
        bounds="asymptotic-cs" if "cs" in variants else "t-union",
        epsilon="10%" if "eps10" in variants else "0",
        batch_size=BATCH_SIZE,
        template=case.template,
        max_length=case.max_length,
        hybrid_top=HYBRID_TOP,
        k=case.k,
    )


def run_one(name: str, method: str, n_examples: int, out: Path) -> None:
    """Child process: time one method on one case, save its per-example scores."""
    from dps_lens.scoring import score_heads

    case = case_of(name, n_examples)
    model, examples = setup(name, case.n_examples, "bfloat16" if method == BFLOAT16 else "float32")
    started = time.perf_counter()
    if method == "tl-patch":
        scores = tl_patch_scores(model, examples, case)
    elif method == "tl-attribution":
        scores = tl_attribution_scores(model, examples, case)
    else:
        config = scan_config(method, case)
        # Checkpointed and locked: a run cut short resumes, and ``seconds`` is the scan's
        # compute time summed over the runs that made it.
        checkpoint = out / f"{name}-{n_examples}-{method}.checkpoint"
        with FileLock(f"{checkpoint}.lock"):
            result = score_heads(model, examples, config, checkpoint_dir=checkpoint, progress=False)
        scores, started = result.per_example, time.perf_counter() - result.config["seconds"]
        if result.status is not None:
            torch.save(result.status, out / f"{name}-{n_examples}-{method}.status.pt")
        if result.predictions is not None:
            torch.save(result.predictions, out / f"{name}-{n_examples}-{method}.predictions.pt")
    seconds = time.perf_counter() - started
    torch.save(scores, out / f"{name}-{n_examples}-{method}.pt")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb}))


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a.flatten().numpy(), b.flatten().numpy()).statistic)


def ranking(mean: torch.Tensor, k: int) -> list[int]:
    """The flat indices of the ``k`` largest values of ``mean``, largest first (NaN last)."""
    return torch.argsort(mean.flatten().nan_to_num(float("-inf")), descending=True)[:k].tolist()


def top(mean: torch.Tensor, k: int) -> set[int]:
    return set(ranking(mean, k))


def mean_diff_in_se(values: torch.Tensor, exact: torch.Tensor) -> float:
    """``max_h |mean(values_h) − mean(exact_h)| / SE(exact_h)`` over heads with a nonzero SE
    (examples × layers × heads in, one number out): below 1, a method's error on the head means
    is smaller than their sampling error."""
    stderr = exact.std(0) / exact.shape[0] ** 0.5
    varies = stderr > 0
    if not bool(varies.any()):
        return float("nan")
    return float(((values.mean(0) - exact.mean(0)).abs()[varies] / stderr[varies]).max())


def compare(method: str, scores: dict[str, torch.Tensor], k: int) -> dict:
    """Agreement of one method's per-example scores with the exact scan's (TransformerLens'
    attribution: its values against our attribution's, the same estimate)."""
    values, exact = scores[method], scores["exact"]
    mean, reference = values.nanmean(0), exact.mean(0)
    scored = ~torch.isnan(mean)
    cells = ~torch.isnan(values)
    exact_valued = method.split("+")[0] in EXACT_VALUED or method == BFLOAT16
    same = "exact" if exact_valued else {"tl-attribution": "attribution"}.get(method)
    against = same if same in scores else None
    return {
        "evaluations": int(cells.sum()) if exact_valued or method == "exact" else 0,
        "diff_reference": against,
        "max_abs_diff": float((values - scores[against])[cells].abs().max())
        if against is not None
        else None,
        # largest |Δ head mean| in standard errors of the exact mean (every cell scored)
        "mean_diff_in_se": mean_diff_in_se(values, exact)
        if against == "exact" and bool(cells.all())
        else None,
        "spearman_vs_exact": spearman(mean[scored], reference[scored])
        if int(scored.sum()) > 2
        else None,
        "recall_vs_exact": len(top(mean, k) & top(reference, k)) / k,
    }


def racing_decisions(
    status: torch.Tensor,
    exact: torch.Tensor,
    k: int,
    method: str = "racing",
    predictions: torch.Tensor | None = None,
) -> dict:
    """A race's decisions (``status``, layers × heads) against the exact scan's top K
    (``exact``, examples × layers × heads): head counts per status, whether they keep the race's
    guarantee on the exact means (with no indifference zone: the exact top K holds every head
    decided in and no head decided out; with ``ε``: every head in is at least the K-th exact
    mean − ε, every head out at most the (K+1)-th + ε), and the fewest evaluations any race with the
    same bounds, ε (and attribution's ``predictions``, for a prediction-powered race) and rounds
    could reach on these values."""
    from dps_lens.scoring.head_scores import IN, OUT, STATUS_NAMES, UNDECIDED
    from dps_lens.scoring.racing import fewest_race_evaluations

    race = scan_config(method, Case(exact.shape[0], "history", None, k))  # the race's settings
    flat, means = status.flatten(), exact.mean(0).flatten()
    ordered = means.sort(descending=True).values
    epsilon = race.epsilon_value(float(ordered[k - 1]))
    decided_in = set(torch.nonzero(flat == IN).flatten().tolist())
    undecided = set(torch.nonzero(flat == UNDECIDED).flatten().tolist())
    if epsilon == 0:
        reference = top(exact.mean(0), k)
        consistent = decided_in <= reference <= decided_in | undecided
    else:
        consistent = bool(
            (means[flat == IN] >= ordered[k - 1] - epsilon).all()
            and (means[flat == OUT] <= ordered[k] + epsilon).all()
        )
    return {
        "status": {name: int((flat == code).sum()) for code, name in STATUS_NAMES.items()},
        "epsilon": epsilon,
        "consistent": consistent,
        "fewest_evaluations": fewest_race_evaluations(
            exact, k, race.delta, race.round_size, race.seed, race.bounds, predictions, epsilon
        ),
    }


def markdown(rows: list[dict]) -> str:
    """The results table of ``discovery-<tag>.md``, from the rows of ``discovery-<tag>.json``:
    wall-time ratios against TransformerLens' patching and against our exact scan of the same case
    (blank where the case did not run that method), then the exact top K and each race's
    decisions where the rows have them."""
    from dps_lens.heads import head_name

    seconds = {(r["case"], r["method"]): r["seconds"] for r in rows}

    def ratio(row: dict, reference: str) -> str:
        base = seconds.get((row["case"], reference))
        return "" if base is None else f"{base / row['seconds']:.1f}"

    lines = [
        f"| case | method | wall (s) | × faster than {PEER} | × faster than exact "
        "| peak RSS (MB) | ablated head × example evaluations | max abs diff vs exact "
        "| Spearman vs exact | recall of exact top-K |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = "" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"
        if r["diff_reference"] not in (None, "exact"):
            diff += f" (vs {r['diff_reference']})"
        if r.get("mean_diff_in_se") is not None:
            diff += f"; head means ≤ {r['mean_diff_in_se']:.2f} SE"
        rho = f"{r['spearman_vs_exact']:.3f}" if r["spearman_vs_exact"] is not None else ""
        case = f"{r['case']} ({r['n_examples']} ex, K={r['k']})"
        lines.append(
            f"| {case} | {r['method']} | {r['seconds']:.1f} | {ratio(r, PEER)} | "
            f"{ratio(r, 'exact')} | {r['peak_rss_mb']:.0f} | {r['evaluations']} | {diff} | {rho} | "
            f"{round(r['recall_vs_exact'] * r['k'])}/{r['k']} |"
        )
    for r in rows:
        if "top" in r:
            heads = ", ".join(head_name(h) for h in r["top"])
            lines.append(
                f"\n{r['method']} top-{r['k']} on {r['case']} ({r['n_examples']} ex): {heads}."
            )
        if "racing" in r:
            race = r["racing"]
            counts, floor, cells = race["status"], race["fewest_evaluations"], r["evaluations"]
            every = r["n_examples"] * sum(counts.values())
            guarantee = (
                f"the exact top-{r['k']} holds every head decided in and no head decided out"
                if not race.get("epsilon")
                else f"every head in is at least the exact {r['k']}-th mean − ε and every head "
                f"out at most the {r['k'] + 1}-th + ε (ε = {race['epsilon']:.4f} nats)"
            )
            lines.append(
                f"\n{r['method']} on {r['case']} ({r['n_examples']} ex): {counts['in']} heads "
                f"decided in, {counts['undecided']} undecided, {counts['out']} out; {guarantee}: "
                f"{'yes' if race['consistent'] else 'NO'}. It scored {cells} of {every} cells; "
                f"no allocation of its rounds to heads could score fewer than {floor} with its "
                f"intervals ({every / floor:.2f}× fewer than exact at most)."
            )
    return "\n".join(lines) + "\n"


def measure(name: str, method: str, n_examples: int, work: Path) -> dict:
    """Wall time and peak RSS of one (case, method), run in a fresh subprocess; kept in ``work``
    so an interrupted benchmark resumes with the methods it has not finished."""
    done_file = work / f"{name}-{n_examples}-{method}.json"
    if done_file.exists() and (work / f"{name}-{n_examples}-{method}.pt").exists():
        return json.loads(done_file.read_text())
    done = subprocess.run(
        [sys.executable, __file__, "--one", name, method, str(n_examples), str(work)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    done_file.write_text(json.dumps(measured))
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--cases", default="organism-planted,gpt2-small-random,smollm2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--n-examples", type=int, default=None,
        help="examples per case (default: 64 organism, 8 random GPT-2, 16 SmolLM2 or Gemma 3)",
    )  # fmt: skip
    parser.add_argument(
        "--tag", default=None,
        help="results go to discovery-<tag>.{json,md} (default: cpu or gpu)",
    )  # fmt: skip
    parser.add_argument(
        "--work", type=Path, default=None,
        help="keep per-method results here and resume from them (default: a temporary folder)",
    )  # fmt: skip
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one[0], args.one[1], int(args.one[2]), Path(args.one[3]))
        return
    methods = args.methods.split(",")
    if "exact" not in methods:
        parser.error("--methods must include exact (the reference of every comparison)")
    cases = [c for c in args.cases.split(",") if c not in NEEDS or NEEDS[c].exists()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in cases:
            case = case_of(name, args.n_examples)
            measured = {}
            for method in methods:
                measured[method] = measure(name, method, case.n_examples, work)
                print(f"{name:>18} {method:>20}: {measured[method]['seconds']:8.1f} s, "
                      f"{measured[method]['peak_rss_mb']:7.0f} MB peak RSS", flush=True)  # fmt: skip
            scores = {m: torch.load(work / f"{name}-{case.n_examples}-{m}.pt") for m in methods}
            for method in methods:
                status_file = work / f"{name}-{case.n_examples}-{method}.status.pt"
                predicted = work / f"{name}-{case.n_examples}-{method}.predictions.pt"
                predictions = torch.load(predicted) if predicted.exists() else None
                decisions = (
                    {"racing": racing_decisions(
                        torch.load(status_file), scores["exact"], case.k, method, predictions
                    )}
                    if status_file.exists()
                    else {}
                )  # fmt: skip
                if method in ("exact", BFLOAT16):
                    n_heads = scores[method].shape[-1]
                    best = ranking(scores[method].mean(0), case.k)
                    decisions["top"] = [divmod(i, n_heads) for i in best]
                rows.append(
                    {
                        "case": name,
                        "n_examples": case.n_examples,
                        "max_length": case.max_length,
                        "k": case.k,
                        "method": method,
                        **measured[method],
                        **compare(method, scores, case.k),
                        **decisions,
                    }
                )  # fmt: skip
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    report = {"device": device, "threads": torch.get_num_threads(), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    tag = args.tag or ("gpu" if torch.cuda.is_available() else "cpu")
    (args.out / f"discovery-{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(rows)
    (args.out / f"discovery-{tag}.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
