"""Small helpers shared by test modules."""

from contextlib import contextmanager
from pathlib import Path

import pytest


def discover_args(model: str, data: Path, out: Path, *extra: str) -> list[str]:
    """``dps-lens discover`` arguments on the CPU, without a progress bar."""
    return ["discover", "--model", model, "--device", "cpu", "--data", str(data),
            "--out", str(out), "--no-progress", *extra]  # fmt: skip


def interrupted_scan(model, examples, config, directory: Path, monkeypatch, after: int = 2) -> None:
    """Run ``score_heads`` with a checkpoint in ``directory`` and stop it (KeyboardInterrupt) right
    after its ``after``-th checkpoint save."""
    from dps_lens.scoring import score_heads
    from dps_lens.scoring.checkpoint import ScanCheckpoint

    saves = {"n": 0}
    original = ScanCheckpoint.save

    def interrupt(self):
        original(self)
        saves["n"] += 1
        if saves["n"] == after:
            raise KeyboardInterrupt

    monkeypatch.setattr(ScanCheckpoint, "save", interrupt)
    with pytest.raises(KeyboardInterrupt):
        score_heads(model, examples, config, checkpoint_dir=directory, progress=False)
    monkeypatch.undo()


@contextmanager
def head_output_removed(model, layer: int, head: int):
    """Zero head ``head``'s input rows of layer ``layer``'s attention output projection in the HF
    model under ``model`` (GPT-2 ``c_proj``, Conv1D ``[d_in, d_out]``; Llama-style ``o_proj``,
    Linear ``[d_out, d_in]``); restored on exit."""
    d_head = int(model.cfg.d_head)
    rows = slice(head * d_head, (head + 1) * d_head)
    hf = model.original_model
    if hasattr(hf, "transformer"):
        view = hf.transformer.h[layer].attn.c_proj.weight.data[rows, :]
    else:
        view = hf.model.layers[layer].self_attn.o_proj.weight.data[:, rows]
    saved = view.clone()
    view.zero_()
    try:
        yield
    finally:
        view.copy_(saved)
