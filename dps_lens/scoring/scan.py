"""A head scan's settings (``ScanConfig``), its state, and the registry of scan methods.

A scan method plans the forward passes of a scan: given the ``ScanState`` it yields ``Work``
items, each a set of (example, head) cells and the function that scores them in one forward
pass. The runner (``score_heads``) skips cells already in the checkpoint, checkpoints after every
item and shows progress, whatever the method. A method may yield lazily and look at the
checkpoint's values so far (racing does, to drop heads between rounds).
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from jaxtyping import Int
from simple_parsing import field as flag_field
from torch import Tensor

from dps_lens.checks import check_float
from dps_lens.data.encoding import EncodedExample, Encoder
from dps_lens.data.example import PreferenceExample
from dps_lens.errors import DpsLensError
from dps_lens.heads import Head
from dps_lens.interventions import Ablation, ablation_names, ablation_parameters, get_ablation
from dps_lens.scoring.checkpoint import ScanCheckpoint
from dps_lens.scoring.patching import DIRECTIONS

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

COMPOSITE_METHODS = ("hybrid",)
"""Scan methods that combine registered ones (see ``score_heads``)."""
PREDICTED_METHODS = ("ppi-racing",)
"""Registered scan methods that race on attribution's predictions of every cell (scored first)."""


def scan_method_names() -> tuple[str, ...]:
    """Every scan method: the registered planners and the composite ones."""
    return (*SCAN_METHODS, *COMPOSITE_METHODS)


def parse_batch_size(text: str) -> int:
    """``auto`` (0: from free memory) or a positive integer."""
    return 0 if text == "auto" else int(text)


@dataclass(frozen=True)
class ScanConfig:
    """Settings of a head scan.

    ``method``: ``exact`` (ablation, the definition of PCS), ``racing`` (exact, but examples
    come in rounds and heads already certain to be in or out of the top ``k`` stop being
    scored), ``attribution`` (first-order estimate, ``ig_steps`` > 0 for integrated gradients),
    ``hybrid`` (attribution ranks every head, the top ``hybrid_top`` are scored exactly) or
    ``activation-patching`` (profile vs no-profile run, ``direction`` noising or denoising).
    ``contrast="no-profile"`` also scores every head on each example's no-profile prompt, for
    ΔPCS = PCS(profile) − PCS(no profile); ``select`` picks the top-K set (and racing's ranked
    quantity) by PCS or by ΔPCS (``specific``).
    ``batch_size`` is the number of (example × head) rows per forward pass (examples per batch
    for attribution); 0 picks it from free memory, and a larger size than fits in free memory
    is lowered (``auto_batch_size``). ``heads`` restricts the scan to some heads (default: all).
    """

    # how a head is intervened on: a registered ablation (zero, mean, uniform, emphasis, ...)
    mode: str = "zero"
    # strength of a parameterised mode (emphasis: attention kept off the profile, PASTA's 0.01;
    # amplify: z times 1 + alpha); default: the mode's own
    alpha: float | None = None
    # ablation rows per forward pass, or auto (from free memory)
    batch_size: int = flag_field(default=16, type=parse_batch_size)
    seed: int = 0  # seed of the bootstrap and of racing's example order
    n_bootstrap: int = 1000  # bootstrap resamples of every interval
    template: str = "history"  # prompt template: history, chat or no-profile
    max_length: int | None = None  # token limit per example (default: the model's context)
    # only these heads (default all)
    heads: tuple[Head, ...] | None = flag_field(default=None, cmd=False)
    method: str = "exact"  # exact, racing, attribution, hybrid or activation-patching
    ig_steps: int = 0  # attribution: integrated-gradient steps (0: plain attribution patching)
    graddrop: bool = False  # attribution: AtP*'s GradDrop (one backward pass per layer), magnitudes
    hybrid_top: int = 20  # hybrid: heads rescored exactly after attribution
    direction: str = "noising"  # activation patching: noising or denoising
    # also score each head without the profile (ΔPCS)
    contrast: Literal["none", "no-profile"] = "none"
    # rank the top-K set by PCS, or by ΔPCS (needs the contrast)
    select: Literal["pcs", "specific"] = "pcs"
    k: int = 10  # size of the top-K head set (racing decides membership of this set)
    delta: float = 0.05  # racing: probability that some in/out decision is wrong
    round_size: int = 8  # racing: examples in the first round; later rounds double those seen
    # racing: each round to every undecided head, to the k with the highest upper bounds, or to
    # LUCB's pair (the weakest of the current top k and the strongest of the rest)
    race_allocation: Literal["uniform", "boundary", "lucb"] = "uniform"
    # racing: t-union (t-intervals, union bound over heads and rounds) or asymptotic-cs
    # (a confidence sequence valid at every look)
    bounds: Literal["t-union", "asymptotic-cs"] = "t-union"
    # racing: indifference zone, in nats or a share of the K-th head's estimate ("10%"); a head
    # may be called in when within it of the K-th
    epsilon: str = "0"

    def __post_init__(self) -> None:
        if self.alpha is not None and "alpha" not in ablation_parameters(self.mode):
            takes = [name for name in ablation_names() if "alpha" in ablation_parameters(name)]
            raise DpsLensError(
                f"--alpha applies to modes {', '.join(takes)}, not {self.mode!r}; drop --alpha"
            )
        self.ablation()  # raises, naming the registered modes or the bad parameter
        if self.method not in scan_method_names():
            raise DpsLensError(
                f"unknown method {self.method!r}; use one of {', '.join(scan_method_names())}"
            )
        if self.direction not in DIRECTIONS:
            raise DpsLensError(
                f"unknown direction {self.direction!r}; use {' or '.join(DIRECTIONS)}"
            )
        if self.batch_size < 0 or self.hybrid_top < 1 or self.ig_steps < 0:
            raise DpsLensError(
                "batch_size must be >= 0 (0: auto), hybrid_top >= 1 and ig_steps >= 0"
            )
        if self.k < 1 or self.round_size < 2:
            raise DpsLensError(
                f"k must be >= 1 and round_size >= 2, got k={self.k}, round_size={self.round_size}"
            )
        check_float("delta", self.delta, low=0, high=1, low_open=True)
        if self.select == "specific" and self.contrast != "no-profile":
            raise DpsLensError("select='specific' ranks by ΔPCS: it needs contrast='no-profile'")
        if self.graddrop and self.ig_steps:
            raise DpsLensError("GradDrop and integrated gradients are alternatives: choose one")
        contrasts = ("exact", "racing", "attribution", *PREDICTED_METHODS)
        if self.contrast == "no-profile" and self.method not in contrasts:
            raise DpsLensError(
                f"the no-profile contrast needs method {', '.join(contrasts)}, not {self.method!r}"
            )
        self.epsilon_value(1.0)  # checks the syntax

    def epsilon_value(self, kth_estimate: float) -> float:
        """The indifference zone in nats, given the K-th head's estimate (for a ``"p%"`` zone)."""
        text = self.epsilon.strip()
        try:
            value = (
                float(text[:-1]) / 100 * max(kth_estimate, 0.0)
                if text.endswith("%")
                else float(text)
            )
        except ValueError:
            raise DpsLensError(
                f"--epsilon takes nats (0.01) or a share of the K-th head's estimate (10%), got {self.epsilon!r}"
            ) from None
        check_float("--epsilon", value, low=0)
        return value

    def ablation(self) -> Ablation:
        """The configured intervention: ``mode`` with ``alpha`` when given."""
        return get_ablation(self.mode, **({} if self.alpha is None else {"alpha": self.alpha}))

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["heads"] = None if self.heads is None else [list(h) for h in self.heads]
        return out


@dataclass
class Work:
    """One forward pass's worth of cells and how to score them."""

    cells: list[tuple[int, Head]]
    compute: Callable[[], Tensor]


@dataclass(frozen=True)
class ScanState:
    """What a scan method plans its forward passes from. Rows ``0..n-1`` of ``encoded`` are the
    examples with their profile; with the no-profile contrast rows ``n..2n-1`` are the same
    examples without it. ``order`` lists the rows to score, shortest first."""

    model: "TransformerBridge"
    examples: Sequence[PreferenceExample]
    encoder: Encoder
    encoded: list[EncodedExample]
    heads: list[Head]
    order: list[int]
    config: ScanConfig
    pad_id: int
    means: Tensor | None
    checkpoint: ScanCheckpoint
    status: Int[Tensor, "n_layers n_heads"]  # racing's decisions (``STATUS_NAMES``), -1: not raced
    # makes the cells every rank finished visible in ``checkpoint``: a planner that adapts to the
    # values (racing) calls it before reading them; a no-op in a single process
    share: Callable[[], None] = field(default=lambda: None)
    # ppi-racing: attribution's estimate of every cell, rows as ``encoded``'s
    predictions: Tensor | None = None
    # racing: each head's bounds at its latest look (NaN: not raced)
    race_low: Tensor = field(default_factory=lambda: torch.empty(0))
    race_high: Tensor = field(default_factory=lambda: torch.empty(0))
    # racing: called with the decisions after every look (benchmarks trace a race with it)
    on_look: Callable[[dict[Head, int]], None] | None = None

    @property
    def n_examples(self) -> int:
        return len(self.examples)


ScanPlanner = Callable[[ScanState], Iterable[Work]]
SCAN_METHODS: dict[str, ScanPlanner] = {}


def register_scan_method(name: str) -> Callable[[ScanPlanner], ScanPlanner]:
    """Decorator: make the planner available as ``ScanConfig(method=name)`` and ``--method name``."""

    def register(planner: ScanPlanner) -> ScanPlanner:
        SCAN_METHODS[name] = planner
        return planner

    return register
