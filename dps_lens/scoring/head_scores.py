"""``HeadScores``: per-head scores with their per-example values, uncertainty and provenance.

Saved as two files written atomically: ``scores.safetensors`` (tensors, bit-exact) and
``scores.json`` (config, model id, data hash, example ids). A scan with the no-profile contrast
also holds every head's PCS on the same examples without the profile, and their paired
difference ΔPCS = PCS(profile) − PCS(no profile); a racing scan holds each head's status.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from dps_lens._io import atomic_write, atomic_write_json, atomic_write_text
from dps_lens.data.example import ExampleRef
from dps_lens.errors import DataFormatError, DpsLensError
from dps_lens.heads import Head, head_name
from dps_lens.scoring.ppi import PPIEstimate, ppi_mean
from dps_lens.scoring.stats import ScoreSummary, summarize

TENSORS_FILE = "scores.safetensors"
META_FILE = "scores.json"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
Select = Literal["pcs", "specific"]
SELECTIONS: tuple[str, ...] = ("pcs", "specific")
UNDECIDED, IN, OUT = 0, 1, 2
STATUS_NAMES = {UNDECIDED: "undecided", IN: "in", OUT: "out"}
"""Racing status codes (``HeadScores.status``): decided in or out of the top K, or undecided."""
SUMMARY_FIELDS = ("mean", "stderr", "ci_low", "ci_high", "n")


def ranked_markdown(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of ``HeadScores.ranked()`` rows: score [95% CI] columns (nats) for PCS and,
    when present, PCS without the profile and ΔPCS, then n and the racing status."""

    def cell(row: dict[str, Any], key: str, low: str, high: str) -> str:
        return f"{row[key]:.4f} [{row[low]:.4f}, {row[high]:.4f}]"

    columns = [("PCS", "pcs", "ci_low", "ci_high")]
    if rows and "delta" in rows[0]:
        columns += [
            (
                "PCS without profile",
                "pcs_no_profile",
                "pcs_no_profile_ci_low",
                "pcs_no_profile_ci_high",
            ),
            ("ΔPCS", "delta", "delta_ci_low", "delta_ci_high"),
        ]
    status = bool(rows) and "status" in rows[0]
    header = [
        "rank",
        "head",
        *(title for title, *_ in columns),
        "n",
        *(["status"] if status else []),
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row["rank"]), head_name((row["layer"], row["head"]))]
        cells += [cell(row, *keys) for _, *keys in columns]
        cells += [str(row["n"]), *([row["status"]] if status else [])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rank_heads(mean: Float[Tensor, "n_layers n_heads"]) -> list[Head]:
    """Heads with a finite score, highest first (NaN marks a head that was not scored)."""
    n_heads = mean.shape[1]
    order = torch.argsort(mean.flatten().nan_to_num(float("-inf")), descending=True)
    return [divmod(int(i), n_heads) for i in order.tolist() if not torch.isnan(mean.flatten()[i])]


@dataclass
class HeadScores:
    """Scores of every head: ``mean[l, h]`` = PCS(l, h) (nats; positive = removing the head hurts).

    ``per_example[i, l, h]`` is example i's ``L(M \\ h) - L(M)``; NaN marks a head not scored on
    that example. ``no_profile`` holds the same on the example's no-profile prompt (same target),
    when scored; ``status`` a racing scan's decisions (``STATUS_NAMES``).
    """

    per_example: Float[Tensor, "n_examples n_layers n_heads"]
    clean_loss: Float[Tensor, " n_examples"]
    model_id: str
    data_hash: str
    example_ids: list[ExampleRef]
    config: dict[str, Any] = field(default_factory=dict)
    no_profile: Float[Tensor, "n_examples n_layers n_heads"] | None = None
    status: Int[Tensor, "n_layers n_heads"] | None = None
    # racing: every head's bounds at its latest look, [low, high]
    race_bounds: Float[Tensor, "2 n_layers n_heads"] | None = None
    # ppi-racing: attribution's estimate of every cell (with the profile, and without it)
    predictions: Float[Tensor, "n_examples n_layers n_heads"] | None = None
    predictions_no_profile: Float[Tensor, "n_examples n_layers n_heads"] | None = None
    summary: ScoreSummary = field(init=False)
    summary_no_profile: ScoreSummary | None = field(init=False)
    summary_delta: ScoreSummary | None = field(init=False)

    def __post_init__(self) -> None:
        if self.per_example.dim() != 3 or self.per_example.shape[0] != len(self.example_ids):
            raise DpsLensError(
                f"per_example must be [n_examples, n_layers, n_heads] with one id per example, got "
                f"{tuple(self.per_example.shape)} and {len(self.example_ids)} ids"
            )
        for name in ("no_profile", "predictions", "predictions_no_profile"):
            value = getattr(self, name)
            if value is not None and value.shape != self.per_example.shape:
                raise DpsLensError(f"{name} must have the shape of per_example")
        self.summary = self._summarize(self.per_example)
        self.summary_no_profile = self.summary_delta = None
        if self.no_profile is not None:
            self.summary_no_profile = self._summarize(self.no_profile)
            self.summary_delta = self._summarize(self.per_example - self.no_profile)

    def _summarize(self, values: Tensor) -> ScoreSummary:
        n_bootstrap = int(self.config.get("n_bootstrap", 1000))
        return summarize(values, n_bootstrap=n_bootstrap, seed=int(self.config.get("seed", 0)))

    @property
    def mean(self) -> Float[Tensor, "n_layers n_heads"]:
        return self.summary.mean

    @property
    def stderr(self) -> Float[Tensor, "n_layers n_heads"]:
        return self.summary.stderr

    @property
    def ci_low(self) -> Float[Tensor, "n_layers n_heads"]:
        return self.summary.ci_low

    @property
    def ci_high(self) -> Float[Tensor, "n_layers n_heads"]:
        return self.summary.ci_high

    @property
    def n_layers(self) -> int:
        return int(self.per_example.shape[1])

    @property
    def n_heads(self) -> int:
        return int(self.per_example.shape[2])

    @property
    def n_examples(self) -> int:
        return int(self.per_example.shape[0])

    @property
    def default_select(self) -> Select:
        """What a saved top-K set was chosen by: ``config["select"]`` (default ``pcs``)."""
        select = self.config.get("select", "pcs")
        return "specific" if select == "specific" else "pcs"

    def _ranking(self, by: Select | None) -> ScoreSummary:
        by = by or self.default_select
        if by == "pcs":
            return self.summary
        if by != "specific" or self.summary_delta is None:
            raise DpsLensError(
                f"cannot rank heads by {by!r}: "
                + (
                    "the scan has no no-profile contrast (discover --contrast no-profile)"
                    if by == "specific"
                    else f"use one of {', '.join(SELECTIONS)}"
                )
            )
        return self.summary_delta

    def ppi(self, by: Select | None = None) -> PPIEstimate | None:
        """The prediction-powered estimate of every head (ppi-racing): the PPI++ mean of its exact
        cells rectifying attribution's predictions of all examples (ΔPCS with ``specific``)."""
        if self.predictions is None:
            return None
        exact, predictions = self.per_example, self.predictions
        if (by or self.default_select) == "specific":
            if self.no_profile is None or self.predictions_no_profile is None:
                raise DpsLensError("ΔPCS needs a scan with the no-profile contrast")
            exact, predictions = exact - self.no_profile, predictions - self.predictions_no_profile
        return ppi_mean(exact, predictions, ddof=1)

    def ranked(self, by: Select | None = None) -> list[dict[str, Any]]:
        """Scored heads, best first by ``by`` (``pcs``, or ``specific``: ΔPCS; default: what the
        scan selected by): rank, layer, head, pcs, stderr, ci_low, ci_high, n, and with the
        no-profile contrast pcs_no_profile and delta (with intervals), with racing the status."""
        order = rank_heads(self._ranking(by).mean)
        status = self.status
        if status is not None:  # racing: heads that went out rank below every contender
            order.sort(key=lambda h: int(status[h]) == OUT)
        ppi = self.ppi(by)
        ppi_low, ppi_high = ppi.interval(0.05, student=True) if ppi is not None else (None, None)
        rows = []
        for layer, head in order:
            row: dict[str, Any] = {"rank": len(rows) + 1, "layer": layer, "head": head}
            row.update(_row(self.summary, layer, head, "pcs"))
            if self.summary_no_profile is not None and self.summary_delta is not None:
                row.update(_row(self.summary_no_profile, layer, head, "pcs_no_profile"))
                row.update(_row(self.summary_delta, layer, head, "delta"))
            if ppi is not None and ppi_low is not None and ppi_high is not None:
                row |= {
                    "n_predicted": ppi.n_predicted,
                    "lambda": float(ppi.lam[layer, head]),
                    "ppi": float(ppi.estimate[layer, head]),
                    "ppi_ci_low": float(ppi_low[layer, head]),
                    "ppi_ci_high": float(ppi_high[layer, head]),
                }
            if self.race_bounds is not None:
                row["race_low"] = float(self.race_bounds[0, layer, head])
                row["race_high"] = float(self.race_bounds[1, layer, head])
            if self.status is not None:
                row["status"] = STATUS_NAMES.get(int(self.status[layer, head]), "not raced")
            rows.append(row)
        return rows

    def top_k(self, k: int, by: Select | None = None) -> list[Head]:
        """The ``k`` best heads by ``by`` (see ``ranked``), as (layer, head) pairs."""
        ranked = self.ranked(by)
        if k <= 0:
            raise DpsLensError(f"k must be positive, got {k}")
        if k > len(ranked):
            raise DpsLensError(
                f"asked for the top {k} heads but only {len(ranked)} heads have finite scores; "
                f"use k <= {len(ranked)} or score more heads"
            )
        return [(row["layer"], row["head"]) for row in ranked[:k]]

    def format_top(self, k: int, by: Select | None = None) -> str:
        """The top ``k`` heads as a text table: rank, head, score (nats), its 95% interval and n."""
        specific = (by or self.default_select) == "specific"
        key, low, high = (
            ("delta", "delta_ci_low", "delta_ci_high") if specific else ("pcs", "ci_low", "ci_high")
        )
        lines = [
            f"{'rank':>4}  {'head':>8}  {'ΔPCS (nats)' if specific else 'PCS (nats)':>11}  {'95% CI':>21}  {'n':>5}"
        ]
        for row in self.ranked(by)[:k]:
            name = head_name((row["layer"], row["head"]))
            status = f"  {row['status']}" if "status" in row else ""
            lines.append(
                f"{row['rank']:>4}  {name:>8}  {row[key]:>11.5f}"
                f"  [{row[low]:>9.5f}, {row[high]:>9.5f}]  {row['n']:>5}{status}"
            )
        return "\n".join(lines)

    def ranked_csv(self, by: Select | None = None) -> str:
        rows = self.ranked(by)
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=list(rows[0]) if rows else ["rank"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()

    def tensors(self) -> dict[str, Tensor]:
        """Everything ``save`` writes to ``scores.safetensors``."""
        tensors = {
            "per_example": self.per_example.contiguous(),
            "clean_loss": self.clean_loss.contiguous(),
        }
        summaries = {
            "": self.summary,
            "no_profile_": self.summary_no_profile,
            "delta_": self.summary_delta,
        }
        for prefix, summary in summaries.items():
            if summary is not None:
                tensors.update({prefix + name: getattr(summary, name) for name in SUMMARY_FIELDS})
        for name in ("no_profile", "race_bounds", "predictions", "predictions_no_profile"):
            value = getattr(self, name)
            if value is not None:
                tensors[name] = value.contiguous()
        if self.status is not None:
            tensors["status"] = self.status
        return tensors

    def save(self, directory: str | Path) -> Path:
        """Write ``scores.safetensors`` and ``scores.json`` into ``directory`` (atomic)."""
        directory = Path(directory)
        tensors = self.tensors()
        atomic_write(directory / TENSORS_FILE, lambda tmp: save_file(tensors, tmp))
        atomic_write_json(
            directory / META_FILE,
            {
                "format_version": FORMAT_VERSION,
                "model_id": self.model_id,
                "data_hash": self.data_hash,
                "example_ids": [str(ref) for ref in self.example_ids],
                "config": self.config,
            },
        )
        return directory

    def save_reports(self, directory: str | Path, k: int, by: Select | None = None) -> None:
        """Also write ``ranked.json``, ``ranked.csv``, ``ranked.md`` and ``top_k.json`` (the top
        ``k`` heads)."""
        directory = Path(directory)
        by = by or self.default_select
        rows = self.ranked(by)
        atomic_write_json(directory / "ranked.json", rows)
        atomic_write_text(directory / "ranked.csv", self.ranked_csv(by))
        atomic_write_text(directory / "ranked.md", ranked_markdown(rows))
        atomic_write_json(
            directory / "top_k.json",
            {
                "k": k,
                "heads": [list(h) for h in self.top_k(k, by)],
                "model_id": self.model_id,
                "select": by,
            },
        )

    @classmethod
    def load(cls, directory: str | Path) -> HeadScores:
        """Load what ``save`` wrote (validated); the tensors come back bit-identical."""
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
        if not isinstance(meta, dict) or meta.get("format_version") not in READABLE_VERSIONS:
            version = meta.get("format_version") if isinstance(meta, dict) else None
            raise DataFormatError(
                f"{meta_path}: format version {version} is not supported (expected one of {READABLE_VERSIONS})"
            )
        try:
            example_ids = [ExampleRef.parse(text) for text in meta["example_ids"]]
            config = dict(meta["config"])
            model_id, data_hash = str(meta["model_id"]), str(meta["data_hash"])
            if (
                "n" not in tensors and "per_example" in tensors
            ):  # format 1: every head on every example
                tensors["n"] = (~torch.isnan(tensors["per_example"])).sum(0)
            _check_saved(tensors, len(example_ids), directory)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"{directory}: head-score files lack or mistype {exc}") from None
        scores = cls.__new__(cls)
        scores.per_example, scores.clean_loss = tensors["per_example"], tensors["clean_loss"]
        scores.model_id, scores.data_hash, scores.example_ids, scores.config = (
            model_id,
            data_hash,
            example_ids,
            config,
        )
        scores.no_profile, scores.status = tensors.get("no_profile"), tensors.get("status")
        scores.race_bounds = tensors.get("race_bounds")
        scores.predictions = tensors.get("predictions")
        scores.predictions_no_profile = tensors.get("predictions_no_profile")
        has_contrast = scores.no_profile is not None
        scores.summary = _saved_summary(tensors, "")
        scores.summary_no_profile = _saved_summary(tensors, "no_profile_") if has_contrast else None
        scores.summary_delta = _saved_summary(tensors, "delta_") if has_contrast else None
        return scores


def _row(summary: ScoreSummary, layer: int, head: int, key: str) -> dict[str, Any]:
    values = {
        key: float(summary.mean[layer, head]),
        f"{key}_stderr": float(summary.stderr[layer, head]),
        f"{key}_ci_low": float(summary.ci_low[layer, head]),
        f"{key}_ci_high": float(summary.ci_high[layer, head]),
    }
    if key == "pcs":  # the historical column names of ranked.csv
        values = {"pcs": values["pcs"], "stderr": values["pcs_stderr"], "ci_low": values["pcs_ci_low"],
                  "ci_high": values["pcs_ci_high"], "n": int(summary.n[layer, head])}  # fmt: skip
    return values


def _saved_summary(tensors: dict[str, Tensor], prefix: str) -> ScoreSummary:
    return ScoreSummary(**{name: tensors[prefix + name] for name in SUMMARY_FIELDS})


def _check_saved(tensors: dict[str, Tensor], n_ids: int, directory: Path) -> None:
    """Refuse saved scores whose parts disagree (edited or mixed-up files)."""
    per_example = tensors["per_example"]
    if per_example.dim() != 3:
        raise DataFormatError(
            f"{directory}: saved head scores are inconsistent (per_example has shape "
            f"{tuple(per_example.shape)}, not [examples, layers, heads]); rerun dps-lens discover"
        )
    n, layers_heads = per_example.shape[0], tuple(per_example.shape[1:])
    expected = {"clean_loss": (n,), "no_profile": tuple(per_example.shape), "status": layers_heads,
                "race_bounds": (2, *layers_heads), "predictions": tuple(per_example.shape),
                "predictions_no_profile": tuple(per_example.shape)}  # fmt: skip
    prefixes = ["", "no_profile_", "delta_"] if "no_profile" in tensors else [""]
    expected.update({prefix + name: layers_heads for prefix in prefixes for name in SUMMARY_FIELDS})
    problems = [
        f"{name} has shape {tuple(tensors[name].shape)}, not {shape}"
        for name, shape in expected.items()
        if (name in tensors or name in ("clean_loss", "mean"))
        and tuple(tensors[name].shape) != shape
    ]
    if n_ids != n:
        problems.append(f"{n_ids} example ids for {n} rows of per_example")
    if not problems:
        scored = ~torch.isnan(tensors["mean"])
        if not torch.allclose(
            per_example.nanmean(0)[scored], tensors["mean"][scored], atol=1e-5, rtol=1e-4
        ):
            problems.append("mean does not equal the mean of per_example")
    if problems:
        raise DataFormatError(
            f"{directory}: saved head scores are inconsistent ({'; '.join(problems)}); "
            "rerun dps-lens discover into a fresh --out directory"
        )
