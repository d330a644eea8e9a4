"""Small helpers shared by test modules."""

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
