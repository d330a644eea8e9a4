"""Per-head profile directions for the head shift (``shift``), in the manner of ITI.

For every head ``h``: ``θ_h`` is the unit vector along the mean difference of ``z_h`` (its
``hook_z`` vector) with the profile minus without it, at the answer positions (those whose next
token is a gold target token) of a set of examples; ``σ_h`` is the standard deviation of the
projections ``z_h · θ_h`` over all those positions, with and without the profile pooled (ITI's
``proj_val_std``). One forward pass per prompt, moments accumulated in float64, so memory does
not grow with the number of examples.

Saved as ``directions.safetensors`` (beside a discovery's head set), validated on load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from dps_lens._io import atomic_write
from dps_lens.checks import same_model
from dps_lens.data.encoding import collate, encoder_for, pad_id_of
from dps_lens.data.example import PreferenceExample, data_hash
from dps_lens.data.prompts import PromptTemplate, get_template
from dps_lens.errors import DataFormatError, DpsLensError
from dps_lens.interventions.mask import model_shape

if TYPE_CHECKING:
    from transformer_lens.hook_points import HookPoint
    from transformer_lens.model_bridge import TransformerBridge

DIRECTIONS_FILE = "directions.safetensors"
FORMAT_VERSION = "1"
_FIX = "recompute it with `dps-lens directions --heads DIR --data FILE` on this model"


@dataclass(frozen=True, eq=False)
class HeadDirections:
    """``directions[l, h]``: ``θ_h`` (unit, or 0 where the two runs never differ); ``scale[l, h]``:
    ``σ_h`` (in the units of ``z``). ``n_positions``: answer positions per run they come from."""

    directions: Float[Tensor, "n_layers n_heads d_head"]
    scale: Float[Tensor, "n_layers n_heads"]
    model_id: str
    data_hash: str
    n_examples: int
    n_positions: int
    template: str

    def __post_init__(self) -> None:
        d, s = self.directions, self.scale
        if d.dim() != 3 or tuple(s.shape) != tuple(d.shape[:2]):
            raise DpsLensError(
                f"head directions must be [n_layers, n_heads, d_head] with a scale of "
                f"[n_layers, n_heads], got {tuple(d.shape)} and {tuple(s.shape)}"
            )
        if not (torch.isfinite(d).all() and torch.isfinite(s).all()) or (s < 0).any():
            raise DpsLensError("head directions and scales must be finite, scales >= 0")
        norms = d.double().norm(dim=-1)
        if not bool(((norms - 1).abs() < 1e-4).logical_or(norms == 0).all()):
            raise DpsLensError("every head direction must be a unit vector (or zero)")

    def digest(self) -> str:
        """SHA-256 of the tensors: the identity of a head-shift run in saved results."""
        from dps_lens.interventions.ablation import tensor_digest

        return tensor_digest(self.directions, self.scale)

    def check_model(self, model: TransformerBridge) -> None:
        """Refuse directions computed on another model or for another shape."""
        shape = (*model_shape(model), int(model.cfg.d_head))
        if tuple(self.directions.shape) != shape:
            raise DpsLensError(
                f"head directions have shape {tuple(self.directions.shape)} but the model has "
                f"{shape} (n_layers, n_heads, d_head); {_FIX}"
            )
        if not same_model(self.model_id, str(model.cfg.model_name)):
            raise DpsLensError(
                f"head directions were computed on model {self.model_id!r}, not "
                f"{str(model.cfg.model_name)!r}; {_FIX}"
            )

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/directions.safetensors`` (atomic)."""
        meta = {
            "format_version": FORMAT_VERSION,
            "model_id": self.model_id,
            "data_hash": self.data_hash,
            "n_examples": str(self.n_examples),
            "n_positions": str(self.n_positions),
            "template": self.template,
        }
        tensors = {"directions": self.directions.contiguous(), "scale": self.scale.contiguous()}
        path = Path(directory) / DIRECTIONS_FILE
        return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))

    @classmethod
    def load(cls, path: str | Path) -> HeadDirections:
        """Read a directions file (or the one in a directory), validated."""
        path = Path(path)
        if path.is_dir():
            path = path / DIRECTIONS_FILE
        if not path.is_file():
            raise DpsLensError(f"no head directions at {path}; compute them: {_FIX}")
        try:
            tensors = load_file(path)
            with safe_open(path, "pt") as handle:
                meta = handle.metadata() or {}
            if meta.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format version {meta.get('format_version')!r}")
            return cls(
                tensors["directions"].float(),
                tensors["scale"].float(),
                str(meta["model_id"]),
                str(meta["data_hash"]),
                int(meta["n_examples"]),
                int(meta["n_positions"]),
                str(meta["template"]),
            )
        except (SafetensorError, OSError, KeyError, ValueError) as exc:
            raise DataFormatError(f"{path} is not a head-directions file ({exc}); {_FIX}") from None


@torch.no_grad()
def head_directions(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    template: PromptTemplate | str | None = None,
    max_length: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> HeadDirections:
    """Every head's profile direction and projection spread over ``examples`` (see the module)."""
    if not examples:
        raise DpsLensError("head directions need at least one example")
    if batch_size < 1:
        raise DpsLensError(f"batch_size must be at least 1, got {batch_size}")
    template = get_template(template) if isinstance(template, str) else template
    template = template or get_template("history")
    if not template.include_profile:
        raise DpsLensError("head directions contrast the prompt with and without its profile: "
                           "use a template that includes the profile")  # fmt: skip
    encoder = encoder_for(model, template, max_length)
    runs = {
        "profile": encoder.encode_many(examples),
        "bare": replace(encoder, template=template.without_profile()).encode_many(examples),
    }
    if not any(e.n_profile_items for e in runs["profile"]):
        raise DpsLensError("head directions need examples with a profile; every profile is empty")
    n_layers, n_heads = model_shape(model)
    d_head = int(model.cfg.d_head)
    sums = {run: torch.zeros(n_layers, n_heads, d_head, dtype=torch.float64) for run in runs}
    outer = torch.zeros(n_layers, n_heads, d_head, d_head, dtype=torch.float64)
    current: dict[str, Any] = {}

    def accumulate(layer: int):
        def hook(z: Tensor, hook: HookPoint) -> None:
            picked = z[current["positions"].to(z.device)].double().cpu()  # [n, head, d_head]
            sums[current["run"]][layer] += picked.sum(0)
            outer[layer] += torch.einsum("nhd,nhe->hde", picked, picked)

        return hook

    pad_id = pad_id_of(model.tokenizer)
    hooks = [(f"blocks.{layer}.attn.hook_z", accumulate(layer)) for layer in range(n_layers)]
    n_positions = 0
    bar = tqdm(total=2 * len(examples), desc="head directions", disable=not progress)
    with model.hooks(fwd_hooks=hooks):
        for run, encoded in runs.items():
            for start in range(0, len(encoded), batch_size):
                batch = collate(encoded[start : start + batch_size], pad_id)
                positions = torch.zeros_like(batch.target_mask)
                positions[:, :-1] = batch.label_mask  # positions whose next token is a target
                current.update(run=run, positions=positions)
                model(batch.tokens.to(model.cfg.device), return_type=None)
                n_positions += int(positions.sum()) if run == "profile" else 0
                bar.update(len(batch.tokens))
    bar.close()
    difference = (sums["profile"] - sums["bare"]) / n_positions
    norms = difference.norm(dim=-1, keepdim=True)
    directions = torch.where(norms > 0, difference / norms.clamp_min(1e-300), 0.0)
    mean = (sums["profile"] + sums["bare"]) / (2 * n_positions)
    covariance = outer / (2 * n_positions) - torch.einsum("lhd,lhe->lhde", mean, mean)
    variance = torch.einsum("lhd,lhde,lhe->lh", directions, covariance, directions)
    return HeadDirections(
        directions=directions.float(),
        scale=variance.clamp_min(0).sqrt().float(),
        model_id=str(model.cfg.model_name),
        data_hash=data_hash(examples),
        n_examples=len(examples),
        n_positions=n_positions,
        template=template.name,
    )
