"""Checks of numeric parameters shared by every config dataclass (API and CLI alike)."""

from __future__ import annotations

import math

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
