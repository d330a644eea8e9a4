"""Head scoring: exact PCS by ablation, with per-example values and uncertainty."""

from dps_lens.scoring.head_scores import HeadScores
from dps_lens.scoring.loss import forward_nll, target_nll
from dps_lens.scoring.pcs import ScanConfig, score_heads
from dps_lens.scoring.stats import ScoreSummary, summarize

__all__ = [
    "HeadScores",
    "ScanConfig",
    "ScoreSummary",
    "forward_nll",
    "score_heads",
    "summarize",
    "target_nll",
]
