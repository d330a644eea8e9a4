"""``dps-lens steer``: generate with DPS (or a baseline) for prompts or data."""

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import simple_parsing

from dps_lens.cli.command import command
from dps_lens.cli.decoding import build_decoding
from dps_lens.cli.method_flags import add_method_flags
from dps_lens.cli.options import DataOptions, DecodeOptions, ModelOptions
from dps_lens.errors import DpsLensError
from dps_lens.outdir import check_writable_dir


@dataclass(frozen=True, kw_only=True)
class SteerConfig(ModelOptions, DataOptions, DecodeOptions):
    method: str = "dps"  # a method spec: NAME (dps, cad, plain, ...) or NAME(param=value,...)
    # a prompt (repeat for several); or --data
    prompt: list[str] = simple_parsing.field(
        default_factory=list, action="append", nargs=None, type=str
    )
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0  # nucleus sampling mass
    compare: bool = False  # also print the plain output
    out: Path | None = None  # write the outputs as JSONL here


def _extend(parser: simple_parsing.ArgumentParser) -> None:
    add_method_flags(parser, command_fields={f for f in SteerConfig.__dataclass_fields__})


@command(
    "steer",
    help="generate with DPS (or a baseline) for prompts or data",
    description=(
        "Decode prompts (--prompt) or the examples of a data file (--data) with one method: "
        "DPS, a baseline, or a head-editing method, with the heads a discover run saved."
    ),
    examples=(
        "dps-lens steer --model organism-planted --heads runs/pcs --k 3 --gamma 1 "
        "--prompt 'History 1: my parrot talks. Question: suggest a pet' --compare",
        "dps-lens steer --model organism-planted --heads runs/pcs --data users.jsonl "
        "--method 'attention_emphasis(alpha=0.01)' --out steered.jsonl",
    ),
    extend=_extend,
    config=SteerConfig,
)
def run(config: SteerConfig, namespace: argparse.Namespace) -> None:

    from dps_lens._io import atomic_write_text
    from dps_lens.steering import Generation, Sampling, Steering, generate, plain

    if bool(config.prompt) == (config.data is not None):
        raise DpsLensError("give either --prompt (repeatable) or --data FILE")
    if config.out is not None:
        if config.out.is_dir():
            raise DpsLensError(f"--out {config.out} is a directory; give a file name for the JSONL")
        check_writable_dir(config.out.parent)
    model = config.load()
    examples = config.examples() if config.data is not None else None
    decoding = build_decoding(config.method, config, namespace, model, examples)
    if len(decoding.steerings) != 1:
        raise DpsLensError(
            "steer runs one method: give one spec to --method (evaluate runs several)"
        )
    (steering,) = decoding.steerings.values()
    inputs = examples or config.prompt
    sampling = Sampling(config.temperature, config.top_p, config.seed)

    def decode(steering: Steering) -> Generation:
        return generate(
            model,
            inputs,
            steering,
            sampling,
            max_new_tokens=config.max_new_tokens,
            batch_size=config.batch_size,
            template=config.template,
            extra_stop_ids=decoding.stop,
            max_length=config.max_length,
        )

    out = decode(steering)
    baseline = decode(plain()) if config.compare else None
    rows = []
    for i, text in enumerate(out.texts):
        row = {"input": i, "method": steering.name, "output": text}
        print(f"[{i}] {steering.name}: {text}")
        if baseline is not None:
            row["plain"] = baseline.texts[i]
            print(f"[{i}] plain: {baseline.texts[i]}")
        rows.append(row)
    print(f"{out.n_generated} tokens, {1000 * out.seconds_per_token:.1f} ms/token")
    if config.out is not None:
        atomic_write_text(config.out, "".join(json.dumps(r) + "\n" for r in rows))
