"""``HeadScores``: per-head scores with their per-example values, uncertainty and provenance.

Saved as two files written atomically: ``scores.safetensors`` (tensors, bit-exact) and
``scores.json`` (config, model id, data hash, example ids).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from dps_lens._io import atomic_write, atomic_write_json, atomic_write_text
from dps_lens.errors import DataFormatError, DpsLensError
from dps_lens.heads import Head, head_name
from dps_lens.scoring.stats import summarize

TENSORS_FILE = "scores.safetensors"
META_FILE = "scores.json"
FORMAT_VERSION = 1


def rank_heads(mean: Float[Tensor, "n_layers n_heads"]) -> list[Head]:
    """Heads with a finite score, highest first (NaN marks a head that was not scored)."""
    n_heads = mean.shape[1]
    order = torch.argsort(mean.flatten().nan_to_num(float("-inf")), descending=True)
    return [divmod(int(i), n_heads) for i in order.tolist() if not torch.isnan(mean.flatten()[i])]


@dataclass
class HeadScores:
    """Scores of every head: ``mean[l, h]`` = PCS(l, h) (nats; positive = removing the head hurts).

    ``per_example[i, l, h]`` is example i's ``L(M \\ h) - L(M)``; NaN marks heads not scored.
    """

    per_example: Float[Tensor, "n_examples n_layers n_heads"]
    clean_loss: Float[Tensor, "n_examples"]
    model_id: str
    data_hash: str
    example_ids: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    mean: Float[Tensor, "n_layers n_heads"] = field(init=False)
    stderr: Float[Tensor, "n_layers n_heads"] = field(init=False)
    ci_low: Float[Tensor, "n_layers n_heads"] = field(init=False)
    ci_high: Float[Tensor, "n_layers n_heads"] = field(init=False)

    def __post_init__(self) -> None:
        if self.per_example.dim() != 3 or self.per_example.shape[0] != len(self.example_ids):
            raise DpsLensError(
                f"per_example must be [n_examples, n_layers, n_heads] with one id per example, got "
                f"{tuple(self.per_example.shape)} and {len(self.example_ids)} ids"
            )
        summary = summarize(
            self.per_example,
            n_bootstrap=int(self.config.get("n_bootstrap", 1000)),
            seed=int(self.config.get("seed", 0)),
        )
        self.mean, self.stderr = summary.mean, summary.stderr
        self.ci_low, self.ci_high = summary.ci_low, summary.ci_high

    @property
    def n_layers(self) -> int:
        return int(self.per_example.shape[1])

    @property
    def n_heads(self) -> int:
        return int(self.per_example.shape[2])

    @property
    def n_examples(self) -> int:
        return int(self.per_example.shape[0])

    def ranked(self) -> list[dict[str, Any]]:
        """Scored heads, highest mean first: rank, layer, head, pcs, stderr, ci_low, ci_high, n."""
        rows = []
        for layer, head in rank_heads(self.mean):
            rows.append(
                {
                    "rank": len(rows) + 1,
                    "layer": layer,
                    "head": head,
                    "pcs": float(self.mean[layer, head]),
                    "stderr": float(self.stderr[layer, head]),
                    "ci_low": float(self.ci_low[layer, head]),
                    "ci_high": float(self.ci_high[layer, head]),
                    "n": self.n_examples,
                }
            )
        return rows

    def top_k(self, k: int) -> list[Head]:
        """The ``k`` heads with the highest mean score, as (layer, head) pairs."""
        ranked = self.ranked()
        if k <= 0:
            raise DpsLensError(f"k must be positive, got {k}")
        if k > len(ranked):
            raise DpsLensError(
                f"asked for the top {k} heads but only {len(ranked)} heads have finite scores; "
                f"use k <= {len(ranked)} or score more heads"
            )
        return [(row["layer"], row["head"]) for row in ranked[:k]]

    def format_top(self, k: int) -> str:
        """The top ``k`` heads as a text table: rank, head, PCS (nats) and its 95% interval."""
        lines = [f"{'rank':>4}  {'head':>8}  {'PCS (nats)':>11}  {'95% CI':>21}"]
        for row in self.ranked()[:k]:
            name = head_name((row["layer"], row["head"]))
            lines.append(
                f"{row['rank']:>4}  {name:>8}  {row['pcs']:>11.5f}"
                f"  [{row['ci_low']:>9.5f}, {row['ci_high']:>9.5f}]"
            )
        return "\n".join(lines)

    def ranked_csv(self) -> str:
        buffer = io.StringIO()
        fields = ["rank", "layer", "head", "pcs", "stderr", "ci_low", "ci_high", "n"]
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.ranked())
        return buffer.getvalue()

    def save(self, directory: str | Path) -> Path:
        """Write ``scores.safetensors`` and ``scores.json`` into ``directory`` (atomic)."""
        directory = Path(directory)
        tensors = {
            "per_example": self.per_example.contiguous(),
            "clean_loss": self.clean_loss.contiguous(),
            "mean": self.mean,
            "stderr": self.stderr,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
        }
        atomic_write(directory / TENSORS_FILE, lambda tmp: save_file(tensors, tmp))
        atomic_write_json(
            directory / META_FILE,
            {
                "format_version": FORMAT_VERSION,
                "model_id": self.model_id,
                "data_hash": self.data_hash,
                "example_ids": self.example_ids,
                "config": self.config,
            },
        )
        return directory

    def save_reports(self, directory: str | Path, k: int) -> None:
        """Also write ``ranked.json``, ``ranked.csv`` and ``top_k.json`` for the top ``k`` heads."""
        directory = Path(directory)
        atomic_write_json(directory / "ranked.json", self.ranked())
        atomic_write_text(directory / "ranked.csv", self.ranked_csv())
        atomic_write_json(
            directory / "top_k.json",
            {
                "k": k,
                "heads": [list(h) for h in self.top_k(k)],
                "model_id": self.model_id,
            },
        )

    @classmethod
    def load(cls, directory: str | Path) -> HeadScores:
        """Load what ``save`` wrote; the tensors come back bit-identical."""
        directory = Path(directory)
        if directory.is_file():
            directory = directory.parent
        tensors_path, meta_path = directory / TENSORS_FILE, directory / META_FILE
        if not tensors_path.exists() or not meta_path.exists():
            raise DpsLensError(
                f"{directory} does not hold saved head scores ({TENSORS_FILE} + {META_FILE}); "
                "point to the --out directory of `dps-lens discover`"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            tensors = load_file(tensors_path)
        except (
            json.JSONDecodeError,
            OSError,
            RuntimeError,
            SafetensorError,
            UnicodeDecodeError,
        ) as exc:
            raise DataFormatError(f"{directory}: unreadable head-score files ({exc})") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataFormatError(
                f"{meta_path}: format version {meta.get('format_version')} is not supported "
                f"(expected {FORMAT_VERSION})"
            )
        scores = cls.__new__(cls)
        try:
            scores.per_example, scores.clean_loss = tensors["per_example"], tensors["clean_loss"]
            scores.mean, scores.stderr = tensors["mean"], tensors["stderr"]
            scores.ci_low, scores.ci_high = tensors["ci_low"], tensors["ci_high"]
            scores.model_id, scores.data_hash = str(meta["model_id"]), str(meta["data_hash"])
            scores.example_ids, scores.config = list(meta["example_ids"]), dict(meta["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"{directory}: head-score files lack or mistype {exc}") from None
        _check_saved(scores, directory)
        return scores


def _check_saved(scores: HeadScores, directory: Path) -> None:
    """Refuse saved scores whose parts disagree (edited or mixed-up files)."""
    per_example = scores.per_example
    problems = []
    if per_example.dim() != 3:
        problems.append(
            f"per_example has shape {tuple(per_example.shape)}, not [examples, layers, heads]"
        )
    else:
        n, layers_heads = per_example.shape[0], tuple(per_example.shape[1:])
        if tuple(scores.clean_loss.shape) != (n,):
            problems.append(f"clean_loss has shape {tuple(scores.clean_loss.shape)}, not ({n},)")
        if len(scores.example_ids) != n:
            problems.append(f"{len(scores.example_ids)} example ids for {n} rows of per_example")
        for name in ("mean", "stderr", "ci_low", "ci_high"):
            if tuple(getattr(scores, name).shape) != layers_heads:
                problems.append(
                    f"{name} has shape {tuple(getattr(scores, name).shape)}, not {layers_heads}"
                )
        if not problems:
            with torch.no_grad():
                mean = per_example.nanmean(0)
            scored = ~torch.isnan(scores.mean)
            if not torch.allclose(mean[scored], scores.mean[scored], atol=1e-5, rtol=1e-4):
                problems.append("mean does not equal the mean of per_example")
    if problems:
        raise DataFormatError(
            f"{directory}: saved head scores are inconsistent ({'; '.join(problems)}); "
            "rerun dps-lens discover into a fresh --out directory"
        )
