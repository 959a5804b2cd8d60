"""p-values against permutation nulls, shared by vit.evaluate.inspect (position embeddings) and the claims
scorecard (vit.report.scorecard: attention distance)."""
from __future__ import annotations

import numpy as np


def permutation_p(observed: float, null) -> float:
    """One-sided p of a statistic at least as large as observed under its permutation null, counting the
    observed arrangement among the permutations (so never 0: (1 + #{null >= observed}) / (1 + n))."""
    null = np.asarray(null, dtype=float)
    return float((1 + np.sum(null >= observed)) / (1 + len(null)))
