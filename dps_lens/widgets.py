"""``HeadToggler``: an ipywidgets panel to mask heads by hand and watch the model change.

The state and the readouts live in plain Python (``toggle``, ``set_heads``, ``top_k``,
``random_k``, ``clear``, ``gamma`` → ``readout``), so they are testable without a browser; the
widget (``HeadToggler.widget()``, or displaying the object) is a grid of buttons, one per head,
coloured by PCS (× marks a masked head), bound to that state. Plain ipywidgets: it works in
JupyterLab, Notebook and VS Code with no front-end extension.
"""

from __future__ import annotations

import html
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from plotly.colors import sample_colorscale

from dps_lens.data.encoding import collate, encoder_for
from dps_lens.data.example import PreferenceExample
from dps_lens.data.prompts import PromptTemplate, get_template
from dps_lens.errors import DpsLensError
from dps_lens.heads import Head, check_head, draw_random_heads, format_heads, head_name
from dps_lens.interventions import HeadMask, ablate_heads
from dps_lens.plots.style import DIVERGING
from dps_lens.scoring.head_scores import HeadScores
from dps_lens.scoring.loss import label_positions, target_nll
from dps_lens.steering import dps, generate, plain

if TYPE_CHECKING:
    import ipywidgets
    from transformer_lens.model_bridge import TransformerBridge

    from dps_lens.steering import Steering


@dataclass(frozen=True)
class TokenChange:
    """A next-token probability under the clean model and under the current mask."""

    token: str
    clean: float
    masked: float


@dataclass(frozen=True)
class Readout:
    """What the current mask does to the example.

    ``target_logprob_delta``: change in log p(gold target | prompt), nats (masked − clean);
    ``top_changes``: next-token probabilities after the prompt that moved most;
    ``continuation``: greedy text under the mask (γ = 0) or DPS-steered text (γ > 0).
    """

    heads: tuple[Head, ...]
    gamma: float
    continuation: str
    clean_continuation: str
    target_logprob_delta: float
    top_changes: tuple[TokenChange, ...]


class HeadToggler:
    """Mask heads of ``model`` on one ``example`` and read the effect.

    ``scores`` colour the grid and give the top-K heads; ``max_new_tokens`` bounds the
    continuations; ``extra_stop_ids`` end them early (e.g. the ids of ``.`` and ``!``).
    """

    def __init__(
        self,
        model: TransformerBridge,
        example: PreferenceExample,
        scores: HeadScores | None = None,
        template: PromptTemplate | str = "history",
        max_new_tokens: int = 16,
        extra_stop_ids: Sequence[int] = (),
        n_changes: int = 5,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.example = example
        self.scores = scores
        self.n_layers, self.n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
        if scores is not None and (scores.n_layers, scores.n_heads) != (
            self.n_layers,
            self.n_heads,
        ):
            raise DpsLensError(
                f"scores are for a {scores.n_layers}×{scores.n_heads} model but the model has "
                f"{self.n_layers}×{self.n_heads} heads; pass the scores of this model"
            )
        self.template = get_template(template) if isinstance(template, str) else template
        self.max_new_tokens = max_new_tokens
        self.extra_stop_ids = tuple(extra_stop_ids)
        self.n_changes = n_changes
        self._random = random.Random(seed)
        encoder = encoder_for(model, self.template, int(model.cfg.n_ctx) - max_new_tokens)
        encoded = encoder.encode(example)
        self._batch = collate([encoded], pad_id=0)
        self.heads: set[Head] = set()
        self.gamma = 0.0
        self._clean_logits, self._clean_nll = self._forward()
        self._clean_text = self._continue(None)
        self._listeners: list[Callable[[Readout], None]] = []
        self.readout = self._read()

    # ---- state ---------------------------------------------------------------------------
    def toggle(self, layer: int, head: int) -> Readout:
        """Mask the head if it is unmasked, unmask it otherwise."""
        check_head(layer, head, self.n_layers, self.n_heads)
        self.heads ^= {(layer, head)}
        return self._changed()

    def set_heads(self, heads: Iterable[Sequence[int]]) -> Readout:
        chosen = {(int(l), int(h)) for l, h in heads}
        for layer, head in chosen:
            check_head(layer, head, self.n_layers, self.n_heads)
        self.heads = chosen
        return self._changed()

    def clear(self) -> Readout:
        return self.set_heads([])

    def top_k(self, k: int) -> Readout:
        """Mask the ``k`` heads with the highest PCS (needs ``scores``)."""
        if self.scores is None:
            raise DpsLensError("top-K needs head scores: pass scores=HeadScores.load(...)")
        return self.set_heads(self.scores.top_k(k))

    def random_k(self, k: int) -> Readout:
        """Mask ``k`` heads drawn at random (seeded per toggler)."""
        n_total = self.n_layers * self.n_heads
        if not 0 < k <= n_total:
            raise DpsLensError(f"k must be in 1..{n_total}, got {k}")
        seed = self._random.getrandbits(32)
        return self.set_heads(draw_random_heads((), self.n_layers, self.n_heads, seed, k))

    def set_gamma(self, gamma: float) -> Readout:
        """γ = 0 shows the masked model itself; γ > 0 shows DPS generation with these heads."""
        if not gamma >= 0:
            raise DpsLensError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        return self._changed()

    # ---- model ---------------------------------------------------------------------------
    @torch.no_grad()
    def _forward(self) -> tuple[torch.Tensor, float]:
        """Next-token logits at the prompt end and the target NLL (nats), under the mask."""
        batch = self._batch.to(self.model.cfg.device)
        positions = label_positions(batch)  # the first one is the prompt's last token
        with ablate_heads(self.model, self._mask()):
            logits = self.model(batch.tokens, return_type="logits", logits_to_keep=positions)
        nll = target_nll(logits, batch, positions)
        return logits[0, 0].float().cpu(), float(nll.sum())

    def _mask(self) -> HeadMask:
        return HeadMask.from_heads(sorted(self.heads), self.n_layers, self.n_heads)

    def _continue(self, steering: Steering | None) -> str:
        return generate(
            self.model,
            [self.example],
            steering or plain(),
            max_new_tokens=self.max_new_tokens,
            template=self.template,
            extra_stop_ids=self.extra_stop_ids,
        ).texts[0]

    def _read(self) -> Readout:
        if not self.heads:
            logits, nll, text = self._clean_logits, self._clean_nll, self._clean_text
        else:
            logits, nll = self._forward()
            if self.gamma > 0:
                text = self._continue(dps(self.model, sorted(self.heads), self.gamma))
            else:
                with ablate_heads(self.model, self._mask()):
                    text = self._continue(None)
        return Readout(
            heads=tuple(sorted(self.heads)),
            gamma=self.gamma,
            continuation=text,
            clean_continuation=self._clean_text,
            target_logprob_delta=self._clean_nll - nll,
            top_changes=self._changes(logits),
        )

    def _changes(self, logits: torch.Tensor) -> tuple[TokenChange, ...]:
        clean, masked = self._clean_logits.softmax(-1), logits.softmax(-1)
        candidates = torch.cat([clean.topk(20).indices, masked.topk(20).indices]).unique()
        moved = (masked[candidates] - clean[candidates]).abs()
        order = candidates[moved.argsort(descending=True)][: self.n_changes]
        decode = self.model.tokenizer.decode
        return tuple(
            TokenChange(decode([int(i)]), float(clean[i]), float(masked[i])) for i in order
        )

    def _changed(self) -> Readout:
        self.readout = self._read()
        for listener in self._listeners:
            listener(self.readout)
        return self.readout

    # ---- view ----------------------------------------------------------------------------
    def render_readout(self, readout: Readout | None = None) -> str:
        """The readout as an HTML snippet (what the widget shows under the grid)."""
        r = readout or self.readout
        heads = format_heads(r.heads) or "none"
        mode = f"DPS, γ = {r.gamma:g}" if r.gamma > 0 and r.heads else "masked model"
        rows = "".join(
            f"<tr><td><code>{html.escape(repr(c.token))}</code></td><td>{c.clean:.3f}</td>"
            f"<td>{c.masked:.3f}</td><td>{c.masked - c.clean:+.3f}</td></tr>"
            for c in r.top_changes
        )
        return (
            f"<div style='font-family: Helvetica, Arial, sans-serif; font-size: 13px'>"
            f"<b>masked heads</b>: {heads}<br>"
            f"<b>clean</b>: {html.escape(r.clean_continuation)}<br>"
            f"<b>{mode}</b>: {html.escape(r.continuation)}<br>"
            f"<b>Δ log p(target)</b>: {r.target_logprob_delta:+.3f} nats<br>"
            "<table><tr><th>next token</th><th>p clean</th><th>p masked</th><th>Δp</th></tr>"
            f"{rows}</table></div>"
        )

    def _relative_pcs(self, layer: int, head: int) -> float:
        """PCS over the largest |PCS|, in [-1, 1] (0 without scores)."""
        if self.scores is None:
            return 0.0
        mean = self.scores.mean.nan_to_num(0)
        return float(mean[layer, head]) / (float(mean.abs().max()) or 1.0)

    def _colour(self, layer: int, head: int) -> str:
        return str(sample_colorscale(DIVERGING, [0.5 + 0.5 * self._relative_pcs(layer, head)])[0])

    def _strong(self, layer: int, head: int) -> bool:
        return abs(self._relative_pcs(layer, head)) > 0.6

    def widget(self) -> ipywidgets.VBox:
        """The ipywidgets panel: head grid, γ slider, top-K / random-K / clear, live readout."""
        import ipywidgets as w

        buttons: dict[Head, ipywidgets.Button] = {}
        cells: list[ipywidgets.DOMWidget] = [w.HTML("")]
        cells += [w.HTML(f"<b>H{h}</b>") for h in range(self.n_heads)]
        for layer in range(self.n_layers):
            cells.append(w.HTML(f"<b>L{layer}</b>"))
            for head in range(self.n_heads):
                pcs = (
                    ""
                    if self.scores is None
                    else f", PCS {float(self.scores.mean[layer, head]):.3f}"
                )
                button = w.Button(
                    description="×" if (layer, head) in self.heads else "",
                    tooltip=f"{head_name((layer, head))}{pcs}",
                    layout=w.Layout(width="34px", height="26px", padding="0"),
                )
                button.style.button_color = self._colour(layer, head)
                button.style.font_weight = "bold"
                button.style.text_color = "white" if self._strong(layer, head) else "black"
                button.on_click(lambda _, l=layer, h=head: self.toggle(l, h))
                buttons[(layer, head)] = button
                cells.append(button)
        grid = w.GridBox(
            cells, layout=w.Layout(grid_template_columns=f"40px repeat({self.n_heads}, 36px)")
        )
        k = w.BoundedIntText(value=3, min=1, max=self.n_layers * self.n_heads, description="K")
        gamma = w.FloatSlider(value=self.gamma, min=0.0, max=4.0, step=0.25, description="γ")
        top = w.Button(description="top-K", disabled=self.scores is None)
        rand, clear = w.Button(description="random-K"), w.Button(description="clear")
        top.on_click(lambda _: self.top_k(k.value))
        rand.on_click(lambda _: self.random_k(k.value))
        clear.on_click(lambda _: self.clear())
        gamma.observe(
            lambda change: change["new"] != self.gamma and self.set_gamma(change["new"]),
            names="value",
        )
        readout = w.HTML(self.render_readout())

        def sync(result: Readout) -> None:
            for head, button in buttons.items():
                button.description = "×" if head in result.heads else ""
            gamma.value = result.gamma
            readout.value = self.render_readout(result)

        self._listeners.append(sync)
        self.buttons = buttons
        return w.VBox([grid, w.HBox([k, top, rand, clear]), gamma, readout])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())
