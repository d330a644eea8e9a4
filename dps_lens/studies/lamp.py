"""A LaMP study on a real model: do preference heads exist, are they specific, and does steering
with them beat plain decoding and random heads on held-out users?

Users are split once (seeded) into a discovery and an evaluation side, which never share a user.

* Discovery (``discovery_users`` users): racing exact PCS, certifying the top ``k`` at error rate
  ``delta``, and a second race on ΔPCS (the no-profile contrast), so heads the model needs for any
  output are told apart. For each: split-half stability of the top ``k`` (mean Jaccard over
  ``n_splits`` seeded halvings of the examples), the heads' relative depth (layer / n_layers) and
  the share of the total |PCS| held by the top 4% of heads.
* Evaluation (``evaluation_users`` users): plain, CAD, DoLa, DPS with the PCS top ``k`` and with the
  ΔPCS top ``k`` at every γ (with ``adaptive``, γ is each step's entropy capped at it; ``beta``
  adds the plausibility constraint), DPS with the authors' shared prefill, and ``random_draws``
  seeded draws of random heads at γ = 1, all with the same recipe. Paired bootstrap differences:
  every method against plain, and DPS at γ = 1 against the mean of the random draws, example by
  example on the same users.

Every step checkpoints into ``out`` (scans after each forward pass, decoding after each batch), so
the same call resumes where a killed run stopped; ``report.json`` and ``report.md`` hold the result.
"""

import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from dps_lens import distributed
from dps_lens._io import atomic_write_report
from dps_lens.checks import check_float, check_positive
from dps_lens.data.example import PreferenceExample, user_ids
from dps_lens.data.splits import split_by_user
from dps_lens.errors import DpsLensError
from dps_lens.evaluation import EvalConfig, comparisons_markdown, markdown_table
from dps_lens.evaluation.metrics import task_of
from dps_lens.evaluation.runner import compare_results
from dps_lens.heads import head_name
from dps_lens.headsets import jaccard, split_half_rankings
from dps_lens.models import model_info
from dps_lens.names import name_from_id, run_name
from dps_lens.scoring import HeadScores, ScanConfig, score_heads
from dps_lens.scoring.head_scores import Select
from dps_lens.steering import SteeringContext, method_config
from dps_lens.studies.sweep import SweepPoint, evaluate_points

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

SELECTIONS: dict[Select, str] = {"pcs": "PCS", "specific": "ΔPCS"}
"""The two head sets: ranked by PCS and by ΔPCS (``HeadScores.ranked(by=...)``)."""
TOP_SHARE = 0.04  # the paper's "about 4% of heads"


@dataclass(frozen=True)
class LampStudyConfig:
    """Sizes and settings of one (model, task) run; the defaults are the study's."""

    task: Literal["lamp4", "lamp7"] = "lamp7"  # the LaMP task of the data
    discovery_users: int = 64  # users of the discovery side whose examples are scored
    evaluation_users: int = 100  # users of the evaluation side decoded by every method
    k: int = 10  # size of the head sets
    delta: float = 0.05  # racing's error rate
    round_size: int = 8  # racing's first round (examples)
    # racing: each round to every undecided head, or to the k with the highest upper bounds
    race_allocation: Literal["uniform", "boundary"] = "uniform"
    # how the races score: exact cells only (racing), or attribution on every example rectified
    # by exact cells (ppi-racing)
    discovery: Literal["racing", "ppi-racing"] = "racing"
    gammas: tuple[float, ...] = (0.25, 0.5, 1.0)  # DPS strengths evaluated (caps, if adaptive)
    # DPS's γ per step: the entropy of the full model's distribution, capped at each of --gammas
    adaptive: bool = False
    beta: float | None = None  # DPS's plausibility constraint in (0, 1] (off by default)
    random_draws: int = 5  # seeded draws of random heads (γ = 1)
    n_splits: int = 20  # split-half draws for the stability of the top k
    template: str = "chat"  # prompt template: chat, history or no-profile
    max_length: int = 256  # prompt (+ new tokens when decoding) in tokens; oldest items dropped
    max_new_tokens: int = 32  # tokens generated per input by every method
    scan_batch_size: int = 16  # ablation rows per forward pass of a scan
    decode_batch_size: int = 8  # inputs decoded together
    seed: int = 0  # user split, user sampling, racing order, bootstrap

    def __post_init__(self) -> None:
        for name in ("discovery_users", "evaluation_users", "k", "random_draws", "n_splits"):
            check_positive(f"--{name.replace('_', '-')}", getattr(self, name))
        check_float("--delta", self.delta, low=0, high=1, low_open=True)
        if not self.gammas:
            raise DpsLensError("the study needs at least one γ (--gammas)")
        for gamma in self.gammas:
            check_float("--gammas", gamma, low=0, low_open=True)
        check_float("--beta", self.beta, low=0, high=1, low_open=True)

    def dps_params(self, gamma: float) -> dict[str, Any]:
        """The DPS parameters of the run at ``gamma`` (its cap when adaptive), with β."""
        strength = {"gamma_cap": gamma, "adaptive": True} if self.adaptive else {"gamma": gamma}
        return {**strength, "beta": self.beta}

    def scan(self, select: Select) -> ScanConfig:
        """Racing exact PCS (``pcs``) or racing ΔPCS with the no-profile contrast (``specific``)."""
        config = ScanConfig(
            method=self.discovery, k=self.k, delta=self.delta, round_size=self.round_size,
            race_allocation=self.race_allocation, template=self.template, max_length=self.max_length,
            batch_size=self.scan_batch_size, seed=self.seed,
        )  # fmt: skip
        return racing_scan(config, select)


def racing_scan(config: ScanConfig, select: Select) -> ScanConfig:
    """``config`` as the race of head set ``select``: PCS as it is, ΔPCS with the no-profile
    contrast ranked by the difference."""
    return (
        replace(config, contrast="no-profile", select="specific")
        if select == "specific"
        else config
    )


def sample_users(
    examples: Sequence[PreferenceExample], n_users: int, seed: int
) -> list[PreferenceExample]:
    """Every example of ``n_users`` users drawn with ``seed`` (all users when there are fewer)."""
    users = user_ids(examples)
    chosen = set(random.Random(seed).sample(users, min(n_users, len(users))))
    return [e for e in examples if e.user_id in chosen]


def head_profile(scores: HeadScores, k: int, by: Select, n_splits: int) -> dict[str, Any]:
    """The top ``k`` by ``by``, their relative depths, the share of Σ|PCS| held by the top 4% of
    heads (by |PCS|) and by each layer, and the split-half stability of the top ``k``
    (``n_splits`` halvings)."""
    ranked = scores.ranked(by)
    top = [(r["layer"], r["head"]) for r in ranked[:k]]
    magnitudes = sorted((abs(r["pcs"]) for r in ranked if math.isfinite(r["pcs"])), reverse=True)
    n_top = max(1, math.ceil(TOP_SHARE * scores.n_layers * scores.n_heads))
    total = sum(magnitudes)
    per_layer = [sum(abs(r["pcs"]) for r in ranked if r["layer"] == layer and math.isfinite(r["pcs"]))
                 for layer in range(scores.n_layers)]  # fmt: skip
    halves = split_half_rankings(scores, n_splits, seed=int(scores.config.get("seed", 0)), by=by)
    stability = [jaccard(a[:k], b[:k]) for a, b in halves]
    return {
        "by": by,
        "top": [list(h) for h in top],
        "rows": ranked[:k],
        "depths": [layer / scores.n_layers for layer, _ in top],
        "top_share": sum(magnitudes[:n_top]) / total if total > 0 else math.nan,
        "layer_share": [value / total if total > 0 else math.nan for value in per_layer],
        "n_top_share": n_top,
        "split_half_jaccard": sum(stability) / len(stability),
        "n_examples": scores.n_examples,
        # ablated (head, example) cells scored, against every head on every example
        "evaluations": int((~torch.isnan(scores.per_example)).sum()),
        "evaluations_exact": scores.n_examples * scores.n_layers * scores.n_heads,
    }


def discover(
    model: "TransformerBridge",
    examples: Sequence[PreferenceExample],
    scans: dict[Select, ScanConfig],
    out: Path,
    progress: bool,
) -> dict[Select, HeadScores]:
    """Both races (``scans``, by head set), each saved to ``out/discovery-<select>`` (resumed
    from its checkpoint); the ΔPCS race takes the cells the PCS race finished instead of scoring
    them again."""
    found: dict[Select, HeadScores] = {}
    for select in SELECTIONS:
        directory = out / f"discovery-{select}"
        scores = score_heads(
            model, examples, scans[select], checkpoint_dir=directory / "checkpoint",
            progress=progress, reuse=found.get("pcs"),
        )  # fmt: skip
        if distributed.current().is_main:
            scores.save(directory)
            scores.save_reports(directory, scans[select].k)
        found[select] = scores
    return found


def dps_label(
    select: Select, gamma: float, adaptive: bool = False, beta: float | None = None
) -> str:
    """The name of the DPS run steering with the ``select`` top K at ``gamma``, e.g. ``dps_pcs@1``;
    an entropy-adaptive run capped at ``gamma`` is ``dps_pcs@entropy<=1``, β adds ``+beta0.1``."""
    strength = f"entropy<={gamma:g}" if adaptive else f"{gamma:g}"
    return f"dps_{select}@{strength}" + (f"+beta{beta:g}" if beta is not None else "")


def evaluation_points(config: LampStudyConfig) -> list[SweepPoint]:
    """The decoded runs: ``variant`` names the head set a DPS run steers with."""
    points = [
        SweepPoint("plain", method_config("plain")),
        SweepPoint("cad", method_config("cad", alpha=1.0)),
        SweepPoint("dola", method_config("dola")),
    ]
    recipe = {"adaptive": config.adaptive, "beta": config.beta}
    for select in SELECTIONS:
        points += [
            SweepPoint(
                dps_label(select, g, **recipe),
                method_config("dps", **config.dps_params(g)),
                "gamma",
                g,
                config.k,
                variant=f"_{select}",
            )
            for g in config.gammas
        ]
    points.append(SweepPoint(dps_label("pcs", 1.0, **recipe).replace("dps_", "dps_shared_prefill_"),
                             method_config("dps_shared_prefill", **config.dps_params(1.0)),
                             "gamma", 1.0, config.k, variant="_pcs"))  # fmt: skip
    points += [
        SweepPoint(
            dps_label("pcs", 1.0, **recipe).replace("dps_pcs", f"random_heads_s{s}"),
            method_config("random_heads", seed=s, **config.dps_params(1.0)),
            "gamma",
            1.0,
            config.k,
            variant=f"_s{s}",
        )
        for s in range(config.random_draws)
    ]
    return points


def comparison_pairs(config: LampStudyConfig) -> list[tuple[str, Sequence[str]]]:
    """Every run against plain; DPS at γ = 1 (both head sets) against the mean random draw."""
    labels = [p.label for p in evaluation_points(config)]
    randoms = [label for label in labels if label.startswith("random_heads_")]
    pairs: list[tuple[str, Sequence[str]]] = [(label, ["plain"]) for label in labels[1:]]
    if 1.0 in config.gammas:
        recipe = {"adaptive": config.adaptive, "beta": config.beta}
        pairs += [(dps_label(select, 1.0, **recipe), randoms) for select in SELECTIONS]
    return pairs


def run_lamp_study(
    model: "TransformerBridge",
    examples: Sequence[PreferenceExample],
    config: LampStudyConfig,
    out: str | Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Discovery, evaluation and the paired comparisons; ``report.json`` and ``report.md`` in ``out``."""
    started = time.perf_counter()
    out = Path(out)
    discovery_side, evaluation_side = split_by_user(examples, 0.5, seed=config.seed)
    discovery = sample_users(discovery_side, config.discovery_users, config.seed)
    evaluation = sample_users(evaluation_side, config.evaluation_users, config.seed)
    scores = discover(model, discovery, {s: config.scan(s) for s in SELECTIONS}, out, progress)
    profiles = {
        select: head_profile(s, config.k, select, config.n_splits) for select, s in scores.items()
    }
    heads = {f"_{select}": [tuple(h) for h in p["top"]] for select, p in profiles.items()}
    heads |= {f"_s{s}": heads["_pcs"] for s in range(config.random_draws)}  # drawn outside these

    def context(point: SweepPoint) -> SteeringContext:
        return SteeringContext(model, heads=heads.get(point.variant))

    eval_config = EvalConfig(
        max_new_tokens=config.max_new_tokens, batch_size=config.decode_batch_size,
        template=config.template, max_length=config.max_length, seed=config.seed,
    )  # fmt: skip
    points = evaluation_points(config)
    pairs = comparison_pairs(config)
    results = evaluate_points(
        model, evaluation, points, context, eval_config, out, progress, pairs=pairs
    )
    comparisons = compare_results(results, pairs, task_of(evaluation), eval_config)
    report = {
        "model": model_info(model).model_id,
        "model_name": model_info(model).name,
        "architecture": model_info(model).architecture,
        "dtype": weights_dtype(model),
        "task": config.task,
        "config": asdict(config),
        "n_layers": int(model.cfg.n_layers),
        "n_heads": int(model.cfg.n_heads),
        "n_discovery_examples": len(discovery),
        "n_evaluation_examples": len(evaluation),
        "discovery": profiles,
        "jaccard_pcs_vs_specific": jaccard(profiles["pcs"]["top"], profiles["specific"]["top"]),
        "evaluation_table": markdown_table(results),
        "comparisons": [c.as_row() for c in comparisons],
        "comparisons_table": comparisons_markdown(comparisons),
        # compute time of the scans and the decoding, summed over interrupted and resumed calls
        "discovery_seconds": round(sum(float(s.config["seconds"]) for s in scores.values()), 1),
        "evaluation_seconds": round(sum(r.seconds_per_token * r.n_generated for r in results), 1),
        "seconds": round(time.perf_counter() - started, 1),  # this call
    }
    text = report_markdown(report)
    if distributed.current().is_main:
        atomic_write_report(out, "report", report, text)
    report["markdown"] = text
    return report


def weights_dtype(model: "TransformerBridge") -> str:
    """The dtype of the model's weights, e.g. ``bfloat16`` (scores are float32 whatever it is)."""
    return str(model.cfg.dtype).removeprefix("torch.")


def report_dtype(report: dict[str, Any]) -> str:
    """A report's weights dtype; reports that do not name it were written in float32."""
    return str(report.get("dtype", "float32"))


def report_model_name(report: dict[str, Any]) -> str:
    """A report's name for its model: the one it recorded, else one from its id (older reports)."""
    return str(report.get("model_name") or name_from_id(report["model"]))


def report_run_name(report: dict[str, Any]) -> str:
    """The model and its weights' dtype, e.g. ``SmolLM2-135M-Instruct · bf16``."""
    return run_name(report_model_name(report), report_dtype(report))


def report_markdown(report: dict[str, Any]) -> str:
    """``report.md`` from ``report.json``: discovery, head profile, evaluation, paired differences."""
    dtype = report_dtype(report)
    lines = [
        f"## {report_run_name(report)} on {report['task']}",
        "",
        f"{report['n_discovery_examples']} discovery examples, {report['n_evaluation_examples']} "
        f"evaluation examples (disjoint users); {report['n_layers']} layers × "
        f"{report['n_heads']} heads. Compute time: discovery {report['discovery_seconds']} s, "
        f"decoding {report['evaluation_seconds']} s (over every call that resumed the study). "
        f"Weights in {dtype}" + ("." if dtype == "float32" else "; losses and scores in float32."),
        "",
        "| head set | top heads | mean relative depth | top-4% share of Σ|PCS| "
        "| split-half Jaccard of the top k | cells scored by racing (of all) |",
        "|---|---|---|---|---|---|",
    ]
    for select, p in report["discovery"].items():
        depth = sum(p["depths"]) / len(p["depths"])
        lines.append(
            f"| {SELECTIONS[select]} | {', '.join(head_name(tuple(h)) for h in p['top'])} | "
            f"{depth:.2f} | {p['top_share']:.2f} ({p['n_top_share']} heads) | "
            f"{p['split_half_jaccard']:.2f} | {p['evaluations']} ({p['evaluations_exact']}) |"
        )
    lines += [
        "",
        f"Jaccard of the PCS and ΔPCS top sets: {report['jaccard_pcs_vs_specific']:.2f}.",
        "",
        "### Evaluation",
        "",
        report["evaluation_table"].rstrip("\n"),
        "",
        "### Paired differences (same users)",
        "",
        report["comparisons_table"].rstrip("\n"),
    ]
    return "\n".join(lines) + "\n"
