"""Checks shared by every config dataclass (API and CLI alike): numeric parameters, model ids."""

from __future__ import annotations

import math
from pathlib import Path

from dps_lens.errors import DpsLensError


def check_float(
    name: str,
    value: float | None,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> None:
    """Raise naming ``name`` unless ``value`` is None or a finite number within the bounds."""
    if value is None:
        return
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DpsLensError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise DpsLensError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value:g}")
    if high is not None and value > high:
        raise DpsLensError(f"{name} must be <= {high:g}, got {value:g}")


def check_positive(name: str, value: int | None) -> None:
    """Raise naming ``name`` unless ``value`` is None or a positive integer."""
    if value is not None and value <= 0:
        raise DpsLensError(f"{name} must be a positive integer, got {value}")


def same_model(a: str, b: str) -> bool:
    """Whether two model ids (registered names or paths) name the same model."""
    if a == b:
        return True
    path_a, path_b = Path(a).expanduser(), Path(b).expanduser()
    return path_a.exists() and path_b.exists() and path_a.resolve() == path_b.resolve()
