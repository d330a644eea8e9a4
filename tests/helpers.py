"""Small helpers shared by test modules."""

from pathlib import Path


def discover_args(model: str, data: Path, out: Path, *extra: str) -> list[str]:
    """``dps-lens discover`` arguments on the CPU, without a progress bar."""
    return ["discover", "--model", model, "--device", "cpu", "--data", str(data),
            "--out", str(out), "--no-progress", *extra]  # fmt: skip
