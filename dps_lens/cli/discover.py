"""``dps-lens discover``: score every attention head and save the scores, ranking and heatmap."""

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from simple_parsing import flag

from dps_lens import distributed
from dps_lens.cli.command import command
from dps_lens.cli.options import DataOptions, ModelOptions
from dps_lens.errors import DpsLensError
from dps_lens.outdir import claim_output
from dps_lens.scoring import ScanConfig


@dataclass(frozen=True, kw_only=True)
class DiscoverConfig(ModelOptions, DataOptions, ScanConfig):
    out: Path = Path("runs/discover")  # output directory (scores, ranking, heatmap, checkpoint)
    layers: str | None = None  # only score these layers, comma-separated, e.g. 0,1
    # also score per user or per k-means cluster of profiles (from the same scan)
    by: Literal["global", "user", "cluster"] = "global"
    min_examples: int = 2  # --by user: users with at least this many examples
    clusters: str = "auto"  # --by cluster: k, or auto = round(users / 100), at least 1
    # profile encoder: minilm (all-MiniLM-L6-v2, offline) or a sentence-transformers name/path
    encoder: str = "minilm"
    progress: bool = flag(default=True, negative_prefix="--no-")  # show progress bars

    def scan_config(self, n_layers: int, n_heads: int) -> ScanConfig:
        heads = None
        if self.layers is not None:
            try:
                layers = [int(part) for part in self.layers.split(",") if part.strip()]
            except ValueError:
                raise DpsLensError(
                    f"--layers takes comma-separated integers, got {self.layers!r}"
                ) from None
            bad = [layer for layer in layers if not 0 <= layer < n_layers]
            if bad:
                raise DpsLensError(
                    f"--layers {bad} out of range: this model has layers 0..{n_layers - 1}"
                )
            heads = tuple((layer, head) for layer in layers for head in range(n_heads))
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(ScanConfig)}
        return ScanConfig(**{**values, "heads": heads})

    def n_clusters(self) -> int | None:
        if self.clusters == "auto":
            return None
        try:
            return int(self.clusters)
        except ValueError:
            raise DpsLensError(
                f"--clusters takes an integer or auto, got {self.clusters!r}"
            ) from None


@command(
    "discover",
    data_parallel=True,
    help="score every attention head (exact PCS or a faster estimate)",
    description=(
        "Score every attention head by the loss change when it is intervened on (PCS: ablated; "
        "an edit such as --mode emphasis: the loss decrease), with per-head intervals; exact, "
        "racing, attribution, hybrid or activation patching. Saves the scores, the ranking, "
        "the top-K head set and a heatmap; checkpoints after every forward pass and resumes."
    ),
    examples=(
        "dps-lens discover --model organism-planted --data discovery.jsonl --k 3 --out runs/pcs",
        "dps-lens discover --model M --data lamp7.jsonl --method racing --contrast no-profile "
        "--select specific --out runs/dpcs",
    ),
    config=DiscoverConfig,
)
def run(config: DiscoverConfig, namespace: argparse.Namespace) -> None:
    from dps_lens.plots import pcs_heatmap, write_html
    from dps_lens.scoring import score_heads

    if config.data is None:
        raise DpsLensError("discover needs --data FILE")
    n_clusters = config.n_clusters() if config.by == "cluster" else None
    encoder = None
    if config.by == "cluster":  # a bad encoder fails before the scan, not after it
        from dps_lens.clusters import SentenceEncoder

        encoder = SentenceEncoder(config.encoder)
    with claim_output(config.out):
        examples = config.examples()
        model = config.load()
        scan = config.scan_config(int(model.cfg.n_layers), int(model.cfg.n_heads))
        started = time.perf_counter()
        scores = score_heads(
            model,
            examples,
            scan,
            checkpoint_dir=config.out / "checkpoint",
            progress=config.progress,
        )
        if not distributed.current().is_main:  # under torchrun, rank 0 writes the results
            return
        scores.save(config.out)
        k = min(config.k, len(scores.ranked()))
        if k < config.k:
            print(
                f"warning: --k {config.k} is more than the {k} heads scored; saving the top {k}",
                file=sys.stderr,
            )
        scores.save_reports(config.out, k)
        write_html(pcs_heatmap(scores), config.out / "heatmap.html")
        print(
            f"scored {len(scores.ranked())} heads on {scores.n_examples} examples "
            f"in {time.perf_counter() - started:.1f} s -> {config.out}"
        )
        print(scores.format_top(k))
        if config.by != "global":
            from dps_lens.clusters.discovery import save_group_scores

            summary = save_group_scores(
                scores,
                examples,
                config.out,
                config.by,
                k,
                min_examples=config.min_examples,
                n_clusters=n_clusters,
                encoder=encoder,
                seed=config.seed,
            )
            print(summary)
