"""A steering leaderboard on held-out users: every method tuned on tuning users, judged once on
evaluation users.

Users are split three ways by seed (one example per user; ``one_example_per_user``):
*discovery* (the LaMP study's discovery side and sample, so its committed races are reused when
they match), and, from the other side, disjoint *tuning* and *evaluation* users.

* **Discovery**: racing PCS and ΔPCS (``studies.lamp.discover``), or the saved races of a LaMP
  study whose examples, model and settings match (``reuse``); the head shift's directions from
  the discovery examples.
* **Tuning**: every method over its declared grid (``MethodConfig.tuning_grid``), head-set methods
  also over K ∈ {4% of the heads, ``k``}, with the ``head_set`` top K; a method's setting is the
  one of largest paired gain over plain on the task's main metric (ROUGE-1; unigram F1 for
  dialogue), a tie going to the weaker setting (earlier in the grid).
* **Evaluation**: each method once at its setting, and every head-set method also with
  ``random_draws`` seeded random head sets of the same K at the same setting. Per method: paired
  differences against plain, against ``no_profile`` and against the mean random draw (95%
  intervals), coherence, ms/token and the audit's profile lift, and two verdicts: above, level or
  below plain, and above, level or below its random heads.

Both stages checkpoint per batch (``evaluate_methods``), so the same call resumes; the result is
``leaderboard.json`` and ``leaderboard.md`` in ``out``, both stages' tables included.
"""

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dps_lens import distributed
from dps_lens._io import atomic_write_report
from dps_lens.checks import check_float, check_positive, same_model
from dps_lens.data.example import PreferenceExample, data_hash, user_ids
from dps_lens.data.splits import split_by_user
from dps_lens.errors import DpsLensError
from dps_lens.evaluation import EvalConfig, evaluate_methods
from dps_lens.evaluation.lift import profile_lift
from dps_lens.evaluation.metrics import Estimate, mean_estimate, task_of
from dps_lens.evaluation.paired import PAIRED_METRICS, paired_difference
from dps_lens.evaluation.runner import MethodResult
from dps_lens.heads import Head, draw_random_heads, format_heads
from dps_lens.interventions import HeadDirections, head_directions, model_shape
from dps_lens.models import model_info
from dps_lens.names import run_name
from dps_lens.scoring import HeadScores, ScanConfig
from dps_lens.scoring.head_scores import Select
from dps_lens.steering import Steering, SteeringContext, get_method, method_config
from dps_lens.studies.lamp import SELECTIONS, discover, racing_scan, sample_users, weights_dtype

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

HEAD_SHARE = 0.04  # K = this share of the model's heads, beside the fixed k
DEFAULT_METHODS = (
    "no_profile", "cad", "dola", "dps", "reference", "attention_emphasis", "head_shift", "amplify",
)  # fmt: skip
Verdict = Literal["above", "level", "below"]
VERDICTS: tuple[Verdict, ...] = ("above", "level", "below")


@dataclass(frozen=True)
class LeaderboardConfig:
    """Sizes and settings of one (model, task) run; the defaults fit an hour on 2 CPU cores."""

    task: Literal["lamp4", "lamp7", "personachat"] = "lamp7"  # the task of the data
    # the methods ranked (plain is always the reference); each tuned over its declared grid
    methods: tuple[str, ...] = DEFAULT_METHODS
    head_set: Select = "specific"  # the heads of head-set methods: the pcs or specific top K
    discovery_users: int = 64  # discovery users (the LaMP study's sample, to reuse its races)
    tuning_users: int = 24  # users every setting of every method is decoded for
    evaluation_users: int = 40  # held-out users each method is judged on, once
    random_draws: int = 5  # seeded random head sets per head-set method, at its setting
    k: int = 10  # the fixed K of head-set methods, beside 4% of the heads
    template: str = "chat"  # prompt template: chat or history
    max_length: int = 192  # prompt (+ new tokens when decoding) in tokens; oldest items dropped
    max_new_tokens: int = 32  # tokens generated per input
    delta: float = 0.05  # racing's error rate (when discovery runs here)
    round_size: int = 8  # racing's first round (examples)
    scan_batch_size: int = 16  # ablation rows per forward pass of a scan
    decode_batch_size: int = 8  # inputs decoded together
    seed: int = 0  # user split, sampling, racing order, random heads, bootstrap

    def __post_init__(self) -> None:
        for name in ("discovery_users", "tuning_users", "evaluation_users", "random_draws", "k"):
            check_positive(f"--{name.replace('_', '-')}", getattr(self, name))
        check_float("--delta", self.delta, low=0, high=1, low_open=True)
        if not self.methods:
            raise DpsLensError("the leaderboard needs at least one method (--methods)")
        for name in self.methods:
            get_method(name)  # raises, naming the registered methods
        if "plain" in self.methods:
            raise DpsLensError("plain is the leaderboard's reference: leave it out of --methods")
        if self.head_set not in SELECTIONS:
            raise DpsLensError(f"--head-set must be one of {', '.join(SELECTIONS)}")

    def scans(self) -> dict[Select, ScanConfig]:
        """The races of the two head sets, when discovery runs here."""
        base = ScanConfig(
            method="racing", k=self.k, delta=self.delta, round_size=self.round_size,
            template=self.template, max_length=self.max_length, batch_size=self.scan_batch_size,
            seed=self.seed,
        )  # fmt: skip
        return {select: racing_scan(base, select) for select in SELECTIONS}

    def ks(self, n_heads: int) -> list[int]:
        """The K of head-set methods: 4% of the model's heads (at least 1) and ``k``."""
        return sorted({max(1, math.ceil(HEAD_SHARE * n_heads)), self.k})


@dataclass(frozen=True)
class Setting:
    """One point of a method's grid: its parameters and, for a head-set method, K."""

    method: str
    params: tuple[tuple[str, Any], ...] = ()
    k: int | None = None

    @property
    def label(self) -> str:
        """``dps(gamma=0.5,adaptive=false,beta=off)+K10``: a run's name and its file's."""
        shown = ",".join(f"{name}={_shown(value)}" for name, value in self.params)
        label = f"{self.method}({shown})" if shown else self.method
        return label + (f"+K{self.k}" if self.k is not None else "")

    def build(self, context: SteeringContext) -> Steering:
        return method_config(self.method, **dict(self.params)).build(context)


def _shown(value: Any) -> str:
    if value is None:
        return "off"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def settings_of(method: str, ks: Sequence[int]) -> list[Setting]:
    """Every setting of ``method``'s grid, K outer for head-set methods; weakest first."""
    cls = get_method(method)
    grid = [tuple(params.items()) for params in cls.tuning_grid()]
    if not cls.needs_heads:
        return [Setting(method, params) for params in grid]
    return [Setting(method, params, k) for k in ks for params in grid]


def one_example_per_user(
    examples: Sequence[PreferenceExample], seed: int
) -> list[PreferenceExample]:
    """Each user's examples reduced to one, drawn seeded per user (a user with one keeps it)."""
    by_user: dict[str, list[PreferenceExample]] = {}
    for example in examples:
        by_user.setdefault(example.user_id, []).append(example)
    chosen = {
        user: mine[0] if len(mine) == 1 else random.Random(f"{seed}:{user}").choice(mine)
        for user, mine in by_user.items()
    }
    return [e for e in examples if chosen[e.user_id] is e]


def leaderboard_users(
    examples: Sequence[PreferenceExample], config: LeaderboardConfig
) -> tuple[list[PreferenceExample], list[PreferenceExample], list[PreferenceExample]]:
    """(discovery, tuning, evaluation), one example per user, no user in two of them. Discovery
    is the LaMP study's (its discovery side, sampled with the same seed)."""
    examples = one_example_per_user(examples, config.seed)
    discovery_side, other_side = split_by_user(examples, 0.5, seed=config.seed)
    discovery = sample_users(discovery_side, config.discovery_users, config.seed)
    others = user_ids(other_side)
    needed = config.tuning_users + config.evaluation_users
    if len(others) < needed:
        raise DpsLensError(
            f"the data has {len(others)} users outside discovery, fewer than the {needed} tuning "
            "and evaluation users asked for: lower --tuning-users or --evaluation-users"
        )
    random.Random(config.seed + 1).shuffle(others)
    tuning = set(others[: config.tuning_users])
    evaluation = set(others[config.tuning_users : needed])
    return (
        discovery,
        [e for e in other_side if e.user_id in tuning],
        [e for e in other_side if e.user_id in evaluation],
    )


def reused_discovery(
    directory: Path, model: "TransformerBridge", examples: Sequence[PreferenceExample],
    config: LeaderboardConfig,
) -> dict[Select, HeadScores]:  # fmt: skip
    """The saved races of a LaMP study (``directory/discovery-<select>``), checked to be of this
    model, these discovery examples, template and length limit."""
    found = {}
    for select in SELECTIONS:
        scores = HeadScores.load(directory / f"discovery-{select}")
        settings = (scores.config.get("template"), scores.config.get("max_length"))
        problems = [
            what
            for what, bad in (
                ("model", not same_model(scores.model_id, str(model.cfg.model_name))),
                ("discovery examples", scores.data_hash != data_hash(examples)),
                ("template and length limit", settings != (config.template, config.max_length)),
            )
            if bad
        ]
        if problems:
            raise DpsLensError(
                f"--discovery {directory}: its {select} race has other {' and '.join(problems)} "
                "than this run; drop --discovery to race here, or match the run's settings"
            )
        found[select] = scores
    return found


@dataclass
class _Run:
    """What the two stages share: the model, the head set, the directions, the settings."""

    model: "TransformerBridge"
    scores: HeadScores
    config: LeaderboardConfig
    directions: HeadDirections
    eval_config: EvalConfig
    metric: str
    progress: bool
    seconds: dict[str, float] = field(default_factory=dict)

    def heads(self, k: int) -> list[Head]:
        return self.scores.top_k(k, by=self.config.head_set)

    def context(self, setting: Setting, seed: int | None = None) -> SteeringContext:
        """The context of ``setting``: its top K heads, or (``seed``) as many random ones."""
        heads = None
        if setting.k is not None:
            heads = self.heads(setting.k)
            if seed is not None:
                heads = draw_random_heads(heads, *model_shape(self.model), seed=seed)
        return SteeringContext(self.model, heads=heads, directions=self.directions)

    def decode(
        self, examples: Sequence[PreferenceExample], settings: dict[str, tuple[Setting, int | None]],
        out: Path, stage: str,
    ) -> dict[str, MethodResult]:  # fmt: skip
        """Every ``label: (setting, random seed or None)`` on ``examples``, resumable per batch."""
        methods = {
            label: setting.build(self.context(setting, seed))
            for label, (setting, seed) in settings.items()
        }
        results = evaluate_methods(
            self.model, examples, methods, self.eval_config, out / stage, self.progress, pairs=[]
        )
        self.seconds[stage] = round(sum(r.seconds_per_token * r.n_generated for r in results), 1)
        return {r.name: r for r in results}

    def paired(
        self, rows: Sequence[dict[str, Any]], references: Sequence[Sequence[dict[str, Any]]],
        metric: str | None = None,
    ) -> Estimate:  # fmt: skip
        """The paired difference on ``metric`` (default: the main one), as every study reports."""
        chosen = metric or self.metric
        n, seed = self.eval_config.n_bootstrap, self.eval_config.seed
        return paired_difference(rows, references, chosen, n, seed)


def verdict(estimate: Estimate) -> Verdict:
    """``above`` when the 95% interval lies above 0, ``below`` when below, else ``level``."""
    return "above" if estimate.low > 0 else "below" if estimate.high < 0 else "level"


PLAIN = Setting("plain")
NO_PROFILE = Setting("no_profile")


def tune(
    run: _Run, tuning: Sequence[PreferenceExample], out: Path
) -> tuple[dict[str, Setting], list[dict[str, Any]]]:
    """Every setting of every method on the tuning users: the chosen setting per method and the
    tuning table (each setting's paired gain over plain on the main metric)."""
    n_heads = int(run.model.cfg.n_layers) * int(run.model.cfg.n_heads)
    grids = {m: settings_of(m, run.config.ks(n_heads)) for m in run.config.methods}
    decoded: dict[str, tuple[Setting, int | None]] = {"plain": (PLAIN, None)}
    decoded |= {s.label: (s, None) for grid in grids.values() for s in grid}
    results = run.decode(tuning, decoded, out, "tuning")
    plain = results["plain"].rows
    chosen, table = {}, []
    for method, grid in grids.items():
        gains = [run.paired(results[s.label].rows, [plain]) for s in grid]
        best = max(range(len(grid)), key=lambda i: (gains[i].value, -i))  # a tie: the weaker
        chosen[method] = grid[best]
        table += [
            {"method": method, "setting": s.label, "gain": asdict(g), "chosen": i == best}
            for i, (s, g) in enumerate(zip(grid, gains, strict=True))
        ]
    return chosen, table


def judge(
    run: _Run, evaluation: Sequence[PreferenceExample], chosen: dict[str, Setting], out: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each method once at its setting on the evaluation users (head-set methods also with
    random heads): the leaderboard's rows, and the profile's benefit with gold's lift."""
    draws = range(run.config.random_draws)
    decoded: dict[str, tuple[Setting, int | None]] = {
        "plain": (PLAIN, None),
        "no_profile": (NO_PROFILE, None),
    }
    randoms: dict[str, list[str]] = {}
    for method, setting in chosen.items():
        decoded[method] = (setting, None)
        if setting.k is not None:
            randoms[method] = [f"{method}~random{s}" for s in draws]
            decoded |= {label: (setting, run.config.seed + s)
                        for s, label in zip(draws, randoms[method], strict=True)}  # fmt: skip
    results = run.decode(evaluation, decoded, out, "evaluation")
    lifts = {
        name: [{"lift": profile_lift(row["output"], e)} for row, e in zip(r.rows, evaluation, strict=True)]
        for name, r in results.items()
    }  # fmt: skip
    plain, bare = results["plain"].rows, results["no_profile"].rows
    n, seed = run.eval_config.n_bootstrap, run.eval_config.seed
    rows = []
    for method, setting in {"plain": PLAIN, "no_profile": NO_PROFILE, **chosen}.items():
        mine = results[method].rows
        against_plain = run.paired(mine, [plain])
        row: dict[str, Any] = {
            "method": method,
            "setting": setting.label,
            "vs_plain": asdict(against_plain),
            "vs_no_profile": asdict(run.paired(mine, [bare])),
            "metrics_vs_plain": {
                metric: asdict(run.paired(mine, [plain], metric))
                for metric in PAIRED_METRICS[task_of(evaluation)]
            },
            "lift": asdict(mean_estimate([r["lift"] for r in lifts[method]], n, seed)),
            "lift_vs_plain": asdict(run.paired(lifts[method], [lifts["plain"]], "lift")),
            "coherence_ppl": asdict(results[method].coherence_ppl),
            "ms_per_token": 1000 * results[method].seconds_per_token,
            "verdict_plain": None if method == "plain" else verdict(against_plain),
        }
        if method in randoms:
            assert setting.k is not None
            against = run.paired(mine, [results[label].rows for label in randoms[method]])
            row |= {
                "heads": format_heads(run.heads(setting.k)),
                "vs_random": asdict(against),
                "verdict_random": verdict(against),
                "random_vs_plain": [
                    asdict(run.paired(results[label].rows, [plain])) for label in randoms[method]
                ],
            }
        rows.append(row)
    gold = mean_estimate([profile_lift(e.target, e) for e in evaluation], n, seed)
    return rows, {"benefit": asdict(run.paired(plain, [bare])), "gold_lift": asdict(gold)}


def run_leaderboard(
    model: "TransformerBridge",
    examples: Sequence[PreferenceExample],
    config: LeaderboardConfig,
    out: str | Path,
    reuse: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Discovery (or ``reuse``: a LaMP study's output), tuning and evaluation; writes
    ``leaderboard.json`` and ``leaderboard.md`` in ``out`` and returns the report."""
    out = Path(out)
    discovery, tuning, evaluation = leaderboard_users(examples, config)
    if reuse is not None:
        scores = reused_discovery(Path(reuse), model, discovery, config)
    else:
        scores = discover(model, discovery, config.scans(), out, progress)
    directions = head_directions(
        model, discovery, config.template, config.max_length, config.decode_batch_size, progress
    )
    task = task_of(evaluation)
    eval_config = EvalConfig(
        max_new_tokens=config.max_new_tokens, batch_size=config.decode_batch_size,
        template=config.template, max_length=config.max_length, seed=config.seed,
    )  # fmt: skip
    run = _Run(
        model, scores[config.head_set], config, directions, eval_config, PAIRED_METRICS[task][0],
        progress,
    )  # fmt: skip
    chosen, tuning_table = tune(run, tuning, out)
    rows, profile = judge(run, evaluation, chosen, out)
    tuned = {r["method"]: r["gain"] for r in tuning_table if r["chosen"]}
    for row in rows:  # what the chosen setting gained on the users it was chosen on
        row["tuning_vs_plain"] = tuned.get(row["method"])
    info = model_info(model)
    report = {
        "model": info.model_id,
        "model_name": info.name,
        "dtype": weights_dtype(model),
        "task": config.task,
        "metric": run.metric,
        "config": asdict(config),
        "n_discovery": len(discovery),
        "n_tuning": len(tuning),
        "n_evaluation": len(evaluation),
        "n_heads": info.n_total_heads,
        "ks": config.ks(info.n_total_heads),
        "discovery": {
            "reused": str(reuse) if reuse is not None else None,
            "top": {select: format_heads(s.top_k(config.k, by=select)) for select, s in scores.items()},
            # compute time of the races (over resumed calls), when they ran here
            "seconds": 0.0 if reuse is not None else round(sum(float(s.config["seconds"]) for s in scores.values()), 1),
        },
        "tuning": tuning_table,
        "chosen": {method: setting.label for method, setting in chosen.items()},
        "rows": rows,
        "profile": profile,
        "seconds": run.seconds,
    }  # fmt: skip
    text = leaderboard_markdown(report)
    if distributed.current().is_main:
        atomic_write_report(out, "leaderboard", report, text)
    report["markdown"] = text
    return report


def _cell(estimate: dict[str, float], digits: int = 3) -> str:
    text = f"{estimate['value']:+.{digits}f} [{estimate['low']:+.{digits}f}, {estimate['high']:+.{digits}f}]"
    return f"**{text}**" if estimate["low"] > 0 or estimate["high"] < 0 else text


def leaderboard_markdown(report: dict[str, Any]) -> str:
    """``leaderboard.md`` from ``leaderboard.json``: the evaluation table and verdicts, then the
    tuning table (how much choosing on the tuning users inflated their numbers)."""
    metric, config = report["metric"], report["config"]
    name = run_name(report["model_name"], report["dtype"])
    lines = [
        f"## {name} on {report['task']}",
        "",
        f"{report['n_discovery']} discovery, {report['n_tuning']} tuning and "
        f"{report['n_evaluation']} evaluation users (disjoint); head set: the "
        f"{'ΔPCS' if config['head_set'] == 'specific' else 'PCS'} top K, K ∈ "
        f"{{{', '.join(map(str, report['ks']))}}} of {report['n_heads']} heads; "
        f"{config['random_draws']} random head sets per head-set method. Decoding compute: "
        f"tuning {report['seconds']['tuning']} s, evaluation {report['seconds']['evaluation']} s"
        + (
            f", discovery {report['discovery']['seconds']} s."
            if not report["discovery"]["reused"]
            else f"; discovery reused from {report['discovery']['reused']}."
        ),
        "",
        "### Evaluation users (each method once, at the setting chosen on the tuning users)",
        "",
        f"| method | setting | Δ {metric} vs plain on tuning users | Δ {metric} vs plain | "
        "vs plain | Δ vs no_profile | Δ vs its random heads | vs random | profile lift (Δ vs "
        "plain) | coherence ppl | ms/token |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        random_cell = _cell(row["vs_random"]) if "vs_random" in row else "–"
        tuned = _cell(row["tuning_vs_plain"]) if row.get("tuning_vs_plain") else "–"
        lines.append(
            f"| {row['method']} | {row['setting']} | {tuned} | {_cell(row['vs_plain'])} | "
            f"{row['verdict_plain'] or '–'} | {_cell(row['vs_no_profile'])} | {random_cell} | "
            f"{row.get('verdict_random') or '–'} | {row['lift']['value']:.3f} "
            f"({_cell(row['lift_vs_plain'])}) | {row['coherence_ppl']['value']:.2f} | "
            f"{row['ms_per_token']:.1f} |"
        )
    profile = report["profile"]
    lines += [
        "",
        f"The profile's benefit (plain − no_profile, paired): Δ {metric} "
        f"{_cell(profile['benefit'], 4)}; the gold outputs' profile lift is "
        f"{profile['gold_lift']['value']:.3f}.",
        "",
        "### Tuning users (every setting; the chosen one in bold)",
        "",
        f"| method | setting | Δ {metric} vs plain |",
        "|---|---|---|",
    ]
    for row in report["tuning"]:
        setting = f"**{row['setting']}**" if row["chosen"] else row["setting"]
        lines.append(f"| {row['method']} | {setting} | {_cell(row['gain'])} |")
    return "\n".join(lines) + "\n"
