"""Head scoring: PCS by ablation (exact, racing), its estimates (attribution, hybrid, activation
patching) and the no-profile contrast, with per-example values and uncertainty."""

from dps_lens.scoring.head_scores import HeadScores
from dps_lens.scoring.loss import forward_nll, target_nll
from dps_lens.scoring.pcs import score_heads
from dps_lens.scoring.racing import fewest_race_evaluations
from dps_lens.scoring.scan import (
    SCAN_METHODS,
    ScanConfig,
    ScanState,
    Work,
    register_scan_method,
    scan_method_names,
)
from dps_lens.scoring.stats import ScoreSummary, summarize

__all__ = [
    "SCAN_METHODS",
    "HeadScores",
    "ScanConfig",
    "ScanState",
    "ScoreSummary",
    "Work",
    "fewest_race_evaluations",
    "forward_nll",
    "register_scan_method",
    "scan_method_names",
    "score_heads",
    "summarize",
    "target_nll",
]
