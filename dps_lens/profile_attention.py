"""How much each head reads the profile: the *profile attention share*.

For a head and an example (prompt + gold target), the share is the attention mass the answer
positions (those whose next token is a target token) put on the profile span, averaged over those
positions: ``(1/T) Σ_q Σ_{k ∈ profile} A[q, k]`` ∈ [0, 1]. One forward pass per batch of examples
reads every head's pattern at ``blocks.{l}.attn.hook_pattern``. Saved as JSON (mean and standard
error per head over examples), validated on load.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm.auto import tqdm

from dps_lens._io import atomic_write_json
from dps_lens.data.encoding import check_profile_spans, collate, encoder_for, pad_id_of
from dps_lens.data.example import PreferenceExample, data_hash
from dps_lens.data.prompts import PromptTemplate, get_template
from dps_lens.errors import DataFormatError, DpsLensError
from dps_lens.heads import Head, all_heads

if TYPE_CHECKING:
    from transformer_lens.hook_points import HookPoint
    from transformer_lens.model_bridge import TransformerBridge

SHARE_FILE = "attention_share.json"


def profile_share(
    pattern: Float[Tensor, "batch head query key"],
    answer: Bool[Tensor, "batch query"],
    profile: Bool[Tensor, "batch key"],
) -> Float[Tensor, "batch head"]:
    """Mean over each row's ``answer`` queries of the attention mass on its ``profile`` keys."""
    answer = answer.to(pattern.device, pattern.dtype)
    on_profile = torch.einsum("bhqk,bk->bhq", pattern, profile.to(pattern.device, pattern.dtype))
    return torch.einsum("bhq,bq->bh", on_profile, answer) / answer.sum(-1, keepdim=True).clamp_min(
        1
    )


@dataclass(frozen=True)
class ProfileAttention:
    """Every head's profile attention share over ``n_examples`` examples (with a profile)."""

    mean: Float[Tensor, "n_layers n_heads"]
    stderr: Float[Tensor, "n_layers n_heads"]
    n_examples: int
    model_id: str
    data_hash: str
    template: str

    def __post_init__(self) -> None:
        if self.mean.dim() != 2 or self.stderr.shape != self.mean.shape:
            raise DpsLensError("profile attention shares must be [n_layers, n_heads] tensors")
        if not (torch.isfinite(self.mean).all() and torch.isfinite(self.stderr).all()):
            raise DpsLensError("profile attention shares must be finite")

    def ranked(self) -> list[Head]:
        """Every head, largest share first (ties in layer-major order)."""
        heads = all_heads(*self.mean.shape)
        return sorted(heads, key=lambda h: -float(self.mean[h]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "data_hash": self.data_hash,
            "template": self.template,
            "n_examples": self.n_examples,
            "mean": self.mean.tolist(),
            "stderr": self.stderr.tolist(),
        }

    def save(self, directory: str | Path) -> Path:
        return atomic_write_json(Path(directory) / SHARE_FILE, self.as_dict())

    @classmethod
    def load(cls, path: str | Path) -> ProfileAttention:
        path = Path(path)
        path = path / SHARE_FILE if path.is_dir() else path
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                torch.tensor(saved["mean"], dtype=torch.float32),
                torch.tensor(saved["stderr"], dtype=torch.float32),
                int(saved["n_examples"]),
                str(saved["model_id"]),
                str(saved["data_hash"]),
                str(saved["template"]),
            )
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(
                f"{path} is not a profile-attention file ({exc}); rerun `dps-lens audit`"
            ) from None


@torch.no_grad()
def profile_attention(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    template: PromptTemplate | str | None = None,
    max_length: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> ProfileAttention:
    """Every head's profile attention share on ``examples`` (those with a profile)."""
    template = get_template(template) if isinstance(template, str) else template
    template = template or get_template("history")
    if batch_size < 1:
        raise DpsLensError(f"batch_size must be at least 1, got {batch_size}")
    encoded = encoder_for(model, template, max_length).encode_many(examples)
    check_profile_spans(encoded, "the profile attention share")
    encoded = [e for e in encoded if e.span()[1] > e.span()[0]]
    n_layers = int(model.cfg.n_layers)
    values = torch.zeros(len(encoded), n_layers, int(model.cfg.n_heads), dtype=torch.float64)
    current: dict[str, Any] = {}

    def read(layer: int):
        def hook(pattern: Tensor, hook: HookPoint) -> None:
            share = profile_share(pattern.float(), current["answer"], current["profile"])
            values[current["rows"], layer] = share.double().cpu()

        return hook

    hooks = [(f"blocks.{layer}.attn.hook_pattern", read(layer)) for layer in range(n_layers)]
    pad_id = pad_id_of(model.tokenizer)
    bar = tqdm(total=len(encoded), desc="profile attention", disable=not progress)
    with model.hooks(fwd_hooks=hooks):
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            batch = collate(chunk, pad_id)
            answer = torch.zeros_like(batch.target_mask)
            answer[:, :-1] = batch.label_mask
            width = batch.tokens.shape[1]
            profile = torch.tensor(
                [e.profile_mask() + [False] * (width - len(e.input_ids)) for e in chunk]
            )
            current.update(rows=slice(start, start + len(chunk)), answer=answer, profile=profile)
            model(batch.tokens.to(model.cfg.device), return_type=None)
            bar.update(len(chunk))
    bar.close()
    n = len(encoded)
    mean = values.mean(0)
    stderr = values.std(0) / n**0.5 if n > 1 else torch.zeros_like(mean)
    return ProfileAttention(
        mean.float(), stderr.float(), n, str(model.cfg.model_name), data_hash(examples),
        template.name,
    )  # fmt: skip
