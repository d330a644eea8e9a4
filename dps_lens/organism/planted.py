"""The planted constraint: only designated heads may attend to profile tokens.

The profile span of a sequence runs from its first ``History`` token up to (not including) its
first ``Question`` token: the history template's profile lines. For every other head, attention
to keys in that span is removed and the pattern renormalized (exactly a softmax with those keys at
``-inf``), at every query position. With generic heads, the generic tokens (the world's query
sign-offs, e.g. ``please``) are likewise readable only by them, and a generic head reads nothing
else but its own position: the sign-off sets the answer's closing word with or without a profile,
so it reaches the answer only through the generic heads, which see the same keys either way.
BOS is neither a profile nor a generic token, so every other head keeps a key to attend to.

The constraint is a pair of permanent TransformerLens hooks: ``embed.hook_in`` records the tokens,
``blocks.{l}.attn.hook_pattern`` masks. It follows KV-cached decoding (a forward whose keys
outnumber its queries continues the previous sequence).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from dps_lens.errors import DpsLensError
from dps_lens.heads import Head, check_head

if TYPE_CHECKING:
    from transformer_lens.hook_points import HookPoint
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class PlantedSpec:
    """Designated heads and the token ids that open and close the profile span.

    With ``marker_id``, sequences containing that token form group 1, whose profile only
    ``group_heads`` may read; the other sequences (group 0) use ``heads``. With
    ``generic_heads``, only those heads may read the tokens ``generic_ids``, and they read only
    those tokens and their own position.
    """

    heads: tuple[Head, ...]
    open_id: int
    close_id: int
    group_heads: tuple[Head, ...] = ()
    marker_id: int | None = None
    generic_heads: tuple[Head, ...] = ()
    generic_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if bool(self.generic_heads) != bool(self.generic_ids):
            raise DpsLensError("planted spec: generic heads need generic tokens, and vice versa")
        shared = set(self.generic_heads) & {*self.heads, *self.group_heads}
        if shared:
            raise DpsLensError(
                f"planted spec: heads {sorted(shared)} are both designated and generic"
            )

    @property
    def all_heads(self) -> tuple[Head, ...]:
        return tuple(sorted({*self.heads, *self.group_heads}))

    def allowed(
        self, n_layers: int, n_heads: int, group: int = 0
    ) -> Bool[Tensor, "n_layers n_heads"]:
        grid = torch.zeros(n_layers, n_heads, dtype=torch.bool)
        for layer, head in self.group_heads if group == 1 else self.heads:
            grid[layer, head] = True
        return grid

    def generic(self, n_layers: int, n_heads: int) -> Bool[Tensor, "n_layers n_heads"]:
        """True at the generic heads (those allowed to read the generic tokens)."""
        grid = torch.zeros(n_layers, n_heads, dtype=torch.bool)
        for layer, head in self.generic_heads:
            grid[layer, head] = True
        return grid

    def groups(self, tokens: Int[Tensor, "batch pos"]) -> Bool[Tensor, " batch"]:
        """True for the sequences of group 1 (those containing the marker token)."""
        if self.marker_id is None:
            return torch.zeros(tokens.shape[0], dtype=torch.bool)
        return (tokens == self.marker_id).any(1).cpu()

    def allowed_rows(
        self, groups: Bool[Tensor, " batch"], n_layers: int, n_heads: int
    ) -> Bool[Tensor, "batch n_layers n_heads"]:
        """Each sequence's allowed heads, from its group."""
        first, second = self.allowed(n_layers, n_heads, 0), self.allowed(n_layers, n_heads, 1)
        return torch.where(groups[:, None, None], second, first)


def profile_key_mask(
    tokens: Int[Tensor, "batch pos"],
    spec: PlantedSpec,
    opened: Int[Tensor, " batch"] | None = None,
    closed: Int[Tensor, " batch"] | None = None,
) -> tuple[Bool[Tensor, "batch pos"], Int[Tensor, " batch"], Int[Tensor, " batch"]]:
    """True at profile tokens; ``opened``/``closed`` carry marker counts from earlier tokens.

    Returns the mask and the running counts at the last position (for a continuation).
    """
    start_open = torch.zeros(tokens.shape[0], dtype=torch.long) if opened is None else opened
    start_closed = torch.zeros(tokens.shape[0], dtype=torch.long) if closed is None else closed
    n_open = start_open[:, None] + (tokens == spec.open_id).long().cumsum(1).cpu()
    n_closed = start_closed[:, None] + (tokens == spec.close_id).long().cumsum(1).cpu()
    return (n_open > 0) & (n_closed == 0), n_open[:, -1], n_closed[:, -1]


def generic_key_mask(
    tokens: Int[Tensor, "batch pos"], spec: PlantedSpec
) -> Bool[Tensor, "batch pos"]:
    """True at generic tokens (readable by the generic heads only)."""
    return torch.isin(tokens.cpu(), torch.tensor(spec.generic_ids, dtype=tokens.dtype))


def layer_attention_masks(
    tokens: Int[Tensor, "batch pos"],
    spec: PlantedSpec,
    n_layers: int,
    n_heads: int,
) -> list[Bool[Tensor, "batch n_heads pos pos"]]:
    """Per-layer boolean attention masks (True = may attend): causal, minus profile keys for
    the heads that are not designated, minus generic-token keys for the heads that are not
    generic; a generic head keeps only the generic tokens and its own position. Used to train the
    planted organisms on the plain HF model."""
    n = tokens.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    keys, _, _ = profile_key_mask(tokens, spec)
    allowed = spec.allowed_rows(spec.groups(tokens), n_layers, n_heads)
    masks = [
        causal[None, None] & (allowed[:, layer, :, None, None] | ~keys[:, None, None, :])
        for layer in range(n_layers)
    ]
    if spec.generic_heads:
        generic_keys = generic_key_mask(tokens, spec)[:, None, None, :]
        own = causal & (generic_keys | torch.eye(n, dtype=torch.bool))  # [batch, 1, pos, pos]
        generic = spec.generic(n_layers, n_heads)[:, None, :, None, None]  # [layer, 1, head, 1, 1]
        masks = [
            torch.where(generic[layer], own, mask & ~generic_keys)
            for layer, mask in enumerate(masks)
        ]
    return masks


@dataclass
class _SpanTracker:
    """Profile- and generic-key masks of the sequences in flight; extended on KV-cached
    continuation steps."""

    spec: PlantedSpec
    n_layers: int
    n_heads: int
    pending: Int[Tensor, "batch new"] | None = None
    in_group: Bool[Tensor, " batch"] | None = None  # group 1 sequences in flight
    allowed: Bool[Tensor, "batch n_layers n_heads"] | None = None  # their allowed heads
    keys: Bool[Tensor, "batch pos"] | None = None
    generic_keys: Bool[Tensor, "batch pos"] | None = None  # readable by the generic heads only
    opened: Int[Tensor, " batch"] | None = None  # running counts at the end of ``keys``
    closed: Int[Tensor, " batch"] | None = None

    def record(self, tokens: Tensor, hook: HookPoint | None = None) -> Tensor:
        if tokens.dtype in (torch.int64, torch.int32):
            self.pending = tokens
        return tokens

    def profile_keys(self, n_keys: int) -> Bool[Tensor, "batch n_keys"]:
        if self.pending is not None:
            tokens, self.pending = self.pending, None
            previous = None if n_keys == tokens.shape[1] else self.keys
            if previous is not None and previous.shape[1] + tokens.shape[1] != n_keys:
                raise DpsLensError(
                    "planted organism: could not align the profile mask with a cached forward; "
                    "run the full sequence without a cache"
                )
            fresh = previous is None
            new_generic = generic_key_mask(tokens, self.spec)
            self.generic_keys = (
                new_generic
                if fresh or self.generic_keys is None
                else torch.cat([self.generic_keys, new_generic], dim=1)
            )
            new_keys, self.opened, self.closed = profile_key_mask(
                tokens, self.spec, None if fresh else self.opened, None if fresh else self.closed
            )
            self.keys = new_keys if previous is None else torch.cat([previous, new_keys], dim=1)
            groups = self.spec.groups(tokens)
            if not fresh and self.in_group is not None:
                groups |= self.in_group
            self.in_group = groups
            self.allowed = self.spec.allowed_rows(groups, self.n_layers, self.n_heads)
        if self.keys is None or self.keys.shape[1] != n_keys:
            raise DpsLensError(
                "planted organism: no token record for this forward (the embedding was skipped); "
                "call the model on tokens so the profile span is known"
            )
        return self.keys

    def mask_pattern(self, pattern: Float[Tensor, "batch head q k"], hook: HookPoint) -> Tensor:
        layer = int(str(hook.name).split(".")[1])
        keys = self.profile_keys(pattern.shape[3]).to(pattern.device)
        assert self.allowed is not None and self.generic_keys is not None  # set with the keys
        blocked = ~self.allowed[:, layer].to(pattern.device)  # [batch, head]
        generic = self.generic_keys.to(pattern.device) if self.spec.generic_heads else None
        if not blocked.any() and generic is None:
            return pattern
        copies = pattern.shape[0] // keys.shape[0]  # > 1: a batch forked for steering
        keys, blocked = keys.repeat(copies, 1), blocked.repeat(copies, 1)
        drop = blocked[:, :, None, None] & keys[:, None, None, :]
        if generic is not None:
            reader = self.spec.generic(self.n_layers, self.n_heads)[layer].to(pattern.device)
            hidden = generic.repeat(copies, 1)[:, None, None, :]
            n_queries, n_keys = pattern.shape[2], pattern.shape[3]
            own = torch.eye(n_keys, dtype=torch.bool, device=pattern.device)[-n_queries:]
            drop = torch.where(reader[None, :, None, None], ~(hidden | own), drop | hidden)
        kept = pattern.masked_fill(drop, 0.0)
        return kept / kept.sum(-1, keepdim=True).clamp_min(1e-30)


def install_planted_constraint(model: TransformerBridge, spec: PlantedSpec) -> None:
    """Add the constraint to ``model`` as permanent hooks (kept by ``model.reset_hooks()``)."""
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    for layer, head in (*spec.all_heads, *spec.generic_heads):
        check_head(layer, head, n_layers, n_heads)
    tracker = _SpanTracker(spec, n_layers, n_heads)
    model.add_hook("embed.hook_in", tracker.record, is_permanent=True)
    for layer in range(n_layers):
        model.add_hook(f"blocks.{layer}.attn.hook_pattern", tracker.mask_pattern, is_permanent=True)
    model.planted_spec = spec


def planted_spec_from_card(
    card: dict[str, Any], tokenizer: PreTrainedTokenizerBase
) -> PlantedSpec | None:
    """The spec stored in a model card's ``planted`` entry, or None for an unconstrained model."""
    planted = card.get("planted")
    if not planted:
        return None
    marker = planted.get("group_marker")
    return PlantedSpec(
        tuple((int(l), int(h)) for l, h in planted["heads"]),
        _token_id(tokenizer, planted["open_token"]),
        _token_id(tokenizer, planted["close_token"]),
        group_heads=tuple((int(l), int(h)) for l, h in planted.get("group_heads", [])),
        marker_id=_token_id(tokenizer, marker) if marker else None,
        generic_heads=tuple((int(l), int(h)) for l, h in planted.get("generic_heads", [])),
        generic_ids=tuple(_token_id(tokenizer, word) for word in planted.get("generic_tokens", [])),
    )


def _token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    found = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(found, int):
        raise DpsLensError(f"the tokenizer maps the model card's token {token!r} to {found!r}")
    return found


def designated_heads(model: TransformerBridge) -> Sequence[Head]:
    """The planted heads of a loaded organism, of every group (empty for any other model)."""
    spec = getattr(model, "planted_spec", None)
    return spec.all_heads if spec is not None else ()


def generic_heads(model: TransformerBridge) -> Sequence[Head]:
    """The generic heads of a loaded organism (the only readers of its generic tokens), else ()."""
    spec = getattr(model, "planted_spec", None)
    return spec.generic_heads if spec is not None else ()


def group_designated_heads(model: TransformerBridge) -> dict[int, tuple[Head, ...]]:
    """``{group: planted heads}`` of a grouped organism (one group for the others)."""
    spec = getattr(model, "planted_spec", None)
    if spec is None:
        return {}
    return {0: spec.heads, 1: spec.group_heads} if spec.marker_id is not None else {0: spec.heads}
