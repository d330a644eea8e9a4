"""Train the model organisms: small Llama-style LMs fit to the personalization world.

Training is seeded and runs through the same ``TransformerBridge`` (and, for the planted organism,
the same permanent constraint hooks) that loads the result, so the shipped model is exactly the
trained one. Loss: mean NLL of the answer tokens under the ``history`` prompt template.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from dps_lens._io import atomic_write_json
from dps_lens.data.encoding import Encoder, TargetBatch, collate, pad_id_of
from dps_lens.data.prompts import get_template
from dps_lens.heads import Head, format_heads
from dps_lens.organism.planted import PlantedSpec, layer_attention_masks, planted_spec_from_card
from dps_lens.organism.world import GROUP_MARKER, SIGN_OFFS, World, WorldConfig
from dps_lens.scoring.loss import target_nll
from dps_lens.tiny import TinyModelConfig, hf_model

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
CARD_FILE = "model_card.json"
PROFILE_OPEN, PROFILE_CLOSE = "History", "Question"


@dataclass(frozen=True)
class OrganismConfig:
    """An organism: architecture, world, optimisation, and (planted only) the designated heads
    and the generic heads (the only readers of the world's query sign-offs)."""

    name: str
    planted_heads: tuple[Head, ...] = ()
    group_heads: tuple[Head, ...] = ()  # grouped worlds: the heads that read group 1's profiles
    generic_heads: tuple[Head, ...] = ()  # the only heads that may read the sign-offs
    architecture: TinyModelConfig = field(
        default_factory=lambda: TinyModelConfig(
            architecture="llama",
            n_layers=3,
            n_heads=4,
            n_kv_heads=4,
            d_model=64,
            d_mlp=256,
            n_ctx=192,
            tie_embeddings=True,
        )
    )
    world: WorldConfig = field(default_factory=WorldConfig)
    n_train_users: int = 20_000
    steps: int = 2000
    batch_size: int = 64
    lr: float = 4e-3
    lm_weight: float = 1.0  # weight of the next-token loss on prompt tokens (see _prompt_lm_loss)
    head_dropout: float = 0.0  # per-example drop rate of the other heads (planted only)
    warmup_steps: int = 100
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["planted_heads"] = [list(h) for h in self.planted_heads]
        out["group_heads"] = [list(h) for h in self.group_heads]
        out["generic_heads"] = [list(h) for h in self.generic_heads]
        return out


ORGANISMS: dict[str, OrganismConfig] = {
    "organism-free": OrganismConfig("organism-free"),
    "organism-planted": OrganismConfig(
        "organism-planted", planted_heads=((1, 1), (1, 3), (2, 2)), head_dropout=0.15
    ),
    "organism-groups": OrganismConfig(
        "organism-groups",
        planted_heads=((1, 0), (1, 1), (2, 0)),
        group_heads=((1, 2), (1, 3), (2, 2)),
        head_dropout=0.15,
        world=WorldConfig(grouped=True),
        steps=3000,
    ),
    "organism-generic": OrganismConfig(
        "organism-generic",
        planted_heads=((1, 1), (1, 3), (2, 2)),
        generic_heads=((0, 0),),
        head_dropout=0.15,
        world=WorldConfig(sign_offs=SIGN_OFFS),
    ),
}


def word_level_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``words`` (pad 0, bos 1, eos 2, unk 3); splits like ``world._words``."""
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
    )


def _batches(
    world: World, config: OrganismConfig, encoder: Encoder, pad_id: int
) -> Iterator[TargetBatch]:
    """Endless training batches: users in a seeded order, fresh query draws every epoch, and
    examples of similar length batched together (8 batches at a time) to save padding."""
    generator = torch.Generator().manual_seed(config.seed)
    pool = 8 * config.batch_size
    epoch = 0
    while True:
        order = torch.randperm(config.n_train_users, generator=generator).tolist()
        for start in range(0, len(order) - pool + 1, pool):
            encoded = encoder.encode_many(
                [
                    world.examples(world.user(i), 1, gold="sampled", rng_key=f"train{epoch}")[0]
                    for i in order[start : start + pool]
                ]
            )
            encoded.sort(key=lambda e: len(e.input_ids))
            chunks = [encoded[i : i + config.batch_size] for i in range(0, pool, config.batch_size)]
            for index in torch.randperm(len(chunks), generator=generator).tolist():
                yield collate(chunks[index], pad_id)
        epoch += 1


def _prompt_lm_loss(logits: torch.Tensor, batch: TargetBatch, pad_id: int) -> torch.Tensor:
    """Mean next-token NLL over the prompt tokens (profile and query; padding and answer excluded).

    Modelling the prompt, where a profile repeats its items, makes the copy circuit form early.
    """
    labels = batch.tokens[:, 1:]
    keep = (labels != pad_id) & ~batch.label_mask
    return torch.nn.functional.cross_entropy(logits[:, :-1][keep], labels[keep])


@contextlib.contextmanager
def _head_dropout(
    model: PreTrainedModel,
    n_heads: int,
    keep_heads: tuple[Head, ...],
    p: float,
    generator: torch.Generator,
) -> Iterator[None]:
    """Zero each head outside ``keep_heads`` with probability ``p`` per example (at the output
    projection's input, i.e. ``hook_z``), so that no single such head becomes critical."""
    if p <= 0:
        yield
        return

    def pre_hook(layer: int):
        kept = torch.tensor([(layer, h) in keep_heads for h in range(n_heads)])

        def hook(module: torch.nn.Module, args: tuple) -> tuple:
            z = args[0]
            drop = (torch.rand(z.shape[0], n_heads, generator=generator) < p) & ~kept
            scale = (~drop).to(z.dtype).repeat_interleave(z.shape[-1] // n_heads, dim=-1)
            return (z * scale[:, None, :], *args[1:])

        return hook

    handles = [
        model.get_submodule(f"model.layers.{i}.self_attn.o_proj").register_forward_pre_hook(
            pre_hook(i)
        )
        for i in range(model.config.num_hidden_layers)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _planted_training_masks(
    model: PreTrainedModel, spec: PlantedSpec | None
) -> Iterator[dict[str, Any]]:
    """While active, ``state["tokens"]`` sets per-layer, per-head masks on the HF attention modules."""
    state: dict[str, Any] = {"masks": None}
    if spec is None:
        yield state
        return

    def pre_hook(layer: int):
        def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            kwargs["attention_mask"] = state["masks"][layer]
            return args, kwargs

        return hook

    handles = [
        model.get_submodule(f"model.layers.{i}.self_attn").register_forward_pre_hook(
            pre_hook(i), with_kwargs=True
        )
        for i in range(model.config.num_hidden_layers)
    ]
    try:
        yield state
    finally:
        for handle in handles:
            handle.remove()


def train_organism(
    config: OrganismConfig, out_dir: str | Path, progress: bool = True
) -> dict[str, Any]:
    """Train ``config`` and write an HF directory (float16 safetensors, tokenizer, model card).

    Training runs on the plain HF model; the planted constraint is applied there as per-head
    attention masks, the same rule ``load_model`` installs as hooks on the bridge.
    """
    from dps_lens.models import load_model
    from dps_lens.organism.rates import personalization_rates

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    world = World(config.world)
    tokenizer = word_level_tokenizer(world.vocabulary())
    card: dict[str, Any] = {
        "name": config.name,
        "training": config.as_dict(),
        "world": world.as_dict(),
    }
    spec = None
    if config.planted_heads:
        card["planted"] = {
            "heads": [list(h) for h in config.planted_heads],
            "open_token": PROFILE_OPEN,
            "close_token": PROFILE_CLOSE,
        }
        if config.group_heads:
            card["planted"]["group_heads"] = [list(h) for h in config.group_heads]
            card["planted"]["group_marker"] = GROUP_MARKER
        if config.generic_heads:
            card["planted"]["generic_heads"] = [list(h) for h in config.generic_heads]
            card["planted"]["generic_tokens"] = [sign_off for sign_off, _ in world.config.sign_offs]
        spec = planted_spec_from_card(card, tokenizer)
    arch = config.architecture
    staging = Path(tempfile.mkdtemp(prefix=f".{config.name}.", dir=out_dir.parent))
    try:
        torch.manual_seed(config.seed)
        model = hf_model(arch, vocab_size=len(tokenizer))
        encoder = Encoder(tokenizer, get_template("history"), max_length=arch.n_ctx)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: min(
                (step + 1) / config.warmup_steps,
                0.5 * (1 + math.cos(math.pi * step / config.steps)),
            ),
        )
        pad_id = pad_id_of(tokenizer)
        model.train()
        losses: list[float] = []
        batches = _batches(world, config, encoder, pad_id)
        bar = tqdm(range(config.steps), disable=not progress, desc=f"train {config.name}")
        dropout = _head_dropout(
            model,
            arch.n_heads,
            (*config.planted_heads, *config.group_heads),
            config.head_dropout,
            torch.Generator().manual_seed(config.seed + 1),
        )
        with _planted_training_masks(model, spec) as state, dropout:
            for _ in bar:
                batch = next(batches)
                if spec is not None:
                    state["masks"] = layer_attention_masks(
                        batch.tokens, spec, arch.n_layers, arch.n_heads
                    )
                logits = model(batch.tokens).logits
                loss = target_nll(logits, batch).mean()
                if config.lm_weight:
                    loss = loss + config.lm_weight * _prompt_lm_loss(logits, batch, pad_id)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
                bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
        model.eval()
        model.half().save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        card["final_train_loss"] = round(sum(losses[-100:]) / len(losses[-100:]), 5)
        card["train_seconds"] = round(time.perf_counter() - started, 1)
        write_card(staging, card)
        shipped = load_model(str(staging), device="cpu")  # as users load it: float16 -> float32
        evaluation = world.split_examples("evaluation", 300, queries_per_user=2)
        card["personalization"] = {
            key: round(value, 4)
            for key, value in personalization_rates(shipped, evaluation).items()
        }
        card["personalization"]["n_examples"] = len(evaluation)
        write_card(staging, card)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return card


def model_card_markdown(card: dict[str, Any]) -> str:
    """A human-readable model card from the JSON card."""
    training, rates = card["training"], card.get("personalization", {})
    arch = training["architecture"]
    lines = [
        f"# {card['name']}",
        "",
        f"A {arch['n_layers']}-layer, {arch['n_heads']}-head Llama-style LM (d_model {arch['d_model']}, "
        f"word-level tokenizer) trained by `dps-lens organism train --name {card['name']}` on the "
        "dps_lens personalization world (`dps_lens.organism.world`).",
        "",
        f"- world: seed {training['world']['seed']}, follow probability p = {training['world']['p']} "
        f"(at two profile mentions), {training['n_train_users']} training users",
        f"- training: {training['steps']} steps × {training['batch_size']} examples, AdamW lr "
        f"{training['lr']}, seed {training['seed']}; final training loss (answer NLL + prompt next-token NLL) "
        f"{card.get('final_train_loss')} nats; {card.get('train_seconds')} s on CPU",
    ]
    if rates:
        lines.append(
            f"- personalization rate on {rates['n_examples']} evaluation examples "
            f"(first greedy answer word = the user's favourite): with profile "
            f"{rates['full']:.3f}, without profile {rates['no_profile']:.3f}"
        )
    if "planted" in card:
        planted = card["planted"]
        lines += [
            "",
            "## Planted constraint",
            "",
            f"{_who_reads(planted)} may attend to profile "
            f"tokens (from the first `{planted['open_token']}` token up to the first "
            f"`{planted['close_token']}` token). `dps_lens.load_model` installs this as permanent "
            "hooks on `hook_pattern`; training applied the same rule as per-head attention masks on "
            "the HF model (tests check the two agree to 1e-5). Loading the weights "
            "without dps_lens drops the constraint.",
        ]
        if planted.get("generic_heads"):
            pairs = ", ".join(f"`{a}` → `{b}`" for a, b in training["world"]["sign_offs"])
            lines.append(
                f"\nOnly the generic heads {format_heads(planted['generic_heads'])} may attend to "
                "the sign-off that ends every query, and they attend to nothing else but their "
                "own position. The answer's last word is set by that sign-off alone "
                f"({pairs}), with or without a profile, so a generic head has the same large "
                "PCS with the profile and without it (ΔPCS ≈ 0)."
            )
        if training.get("head_dropout"):
            lines.append(
                f"\nDuring training each head but the designated ones was zeroed with "
                f"probability {training['head_dropout']} per example, so that none of them "
                "became critical to the answer on its own."
            )
    return "\n".join(lines) + "\n"


def _who_reads(planted: dict[str, Any]) -> str:
    if not planted.get("group_heads"):
        return f"Only heads {format_heads(planted['heads'])}"
    return (
        f"In sequences containing `{planted['group_marker']}` (group 1) only heads "
        f"{format_heads(planted['group_heads'])}, in all others (group 0) only heads "
        f"{format_heads(planted['heads'])},"
    )


def write_card(directory: Path, card: dict[str, Any]) -> None:
    atomic_write_json(directory / CARD_FILE, card)
    (directory / "README.md").write_text(model_card_markdown(card), encoding="utf-8")


def read_card(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CARD_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def trained_world(model: TransformerBridge) -> World:
    """The world ``model`` was trained on, from the model card beside its weights (the default
    world for a model without a card, e.g. one loaded from GGUF or the Hub)."""
    source = str(getattr(model.original_model.config, "name_or_path", "") or "")
    config = read_card(source).get("world", {}).get("config") if source else None
    if not config:
        return World()
    return World(
        WorldConfig(
            **{
                **config,
                "topics_per_user": tuple(config["topics_per_user"]),
                "sign_offs": tuple(tuple(pair) for pair in config.get("sign_offs", ())),
            }
        )
    )
