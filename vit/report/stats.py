"""The scorecard's rule: a 95 % test at its degrees of freedom, over the units that vary independently.

Units. A number of ours is a mean over runs, and runs fine-tuned from one pre-trained checkpoint share
its pre-training draw: another pre-training seed moves a checkpoint's transfer by several times the
spread of its fine-tuning seeds (docs/forms.md). So an arm's unit is its pre-training seed where it has
several (the unit's value: the mean over that checkpoint's fine-tuning seeds, and over tasks where the
comparison is of the mean over tasks), and its fine-tuning seed where it has one. From scratch every
seed is a fresh initialisation, so the fine-tuning seed is the whole draw; a pre-trained arm with one
checkpoint leaves the pre-training variation out, and its test says so (`Test.level`).

Tests. A difference of two arms is judged by Student's t at its degrees of freedom:
- paired over units where the two arms are the same checkpoints fine-tuned two ways (resolution,
  recipe), so that what a unit shares cancels; df = n - 1;
- Welch's t otherwise (different models or upstream sets), df by Welch-Satterthwaite.
A claim with a direction is tested one-sided at 95 % (`ALPHA`); a difference "counts" where p < ALPHA.
"Catches up" is an equivalence: the difference's 90 % interval (two one-sided 95 % tests, TOST) inside
+-`MARGIN` points. A claim that combines k tests (models, checkpoints) holds where every test counts (an
intersection-union test keeps the 5 % level) and holds in part where some test counts at ALPHA / k
(Bonferroni), so that on data with no effect "holds" or "partly" comes up in at most 5 % of runs
(tests/test_scorecard.py measures it on 1,000 synthetic draws).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps


ALPHA = 0.05
MARGIN = 2.0  # points of top-1: "the ViT catches up" = the lead's 90 % interval inside +-MARGIN

PRETRAIN, FINETUNE = "pre-training seeds", "fine-tuning seeds"


def units(runs: pd.DataFrame, value: str = "top1") -> tuple[pd.Series, str]:
    """An arm's unit values and what a unit is: per pre-training seed where the runs hold several
    (column `pretrain_seed`), else per fine-tuning seed (`seed`); each the mean over the rest (fine-tuning
    seeds, tasks), averaged level by level so that an unbalanced arm weights its units alike."""
    v = runs[value].to_numpy(float)
    seed = runs["seed"].to_numpy(float)
    pre = runs["pretrain_seed"].to_numpy(float) if "pretrain_seed" in runs else np.full(len(v), np.nan)
    if len(np.unique(pre[~np.isnan(pre)])) >= 2:
        pairs, inv = np.unique(np.stack([pre, seed], 1), axis=0, return_inverse=True)
        per_run = np.bincount(inv.ravel(), v) / np.bincount(inv.ravel())  # mean per (pre-training, fine-tuning) seed
        return _means(pairs[:, 0], per_run), PRETRAIN
    return _means(seed, v), FINETUNE


def _means(keys: np.ndarray, values: np.ndarray) -> pd.Series:
    """Mean of values per key, indexed by key (numpy: the scorecard's synthetic tests call this 10^5 times)."""
    uniq, inv = np.unique(keys, return_inverse=True)
    return pd.Series(np.bincount(inv.ravel(), values) / np.bincount(inv.ravel()), index=uniq)


@dataclass(frozen=True)
class Test:
    """A mean difference (or a mean) with its standard error and Student's t degrees of freedom; df is nan
    where a side has fewer than 2 units (its noise is unknown: it cannot be judged)."""
    mean: float
    se: float
    df: float
    n: int          # units behind it (the fewer of two sides)
    level: str      # what a unit is (PRETRAIN or FINETUNE; "mixed" where two sides differ)
    paired: bool = False

    @property
    def judged(self) -> bool:
        return self.n >= 2 and math.isfinite(self.df)

    @property
    def p(self) -> float:
        """One-sided p-value of mean > 0 (nan when not judged; 0 or 1 where every unit agrees exactly)."""
        if not self.judged:
            return math.nan
        if self.se == 0:
            return 0.0 if self.mean > 0 else 1.0 if self.mean < 0 else 0.5
        return float(sps.t.sf(self.mean / self.se, self.df))

    def counts(self, alpha: float = ALPHA) -> bool:
        """The difference is positive at one-sided level alpha."""
        return self.judged and self.p < alpha

    def against(self, alpha: float = ALPHA) -> bool:
        """The difference is negative at one-sided level alpha (the claim's opposite is detected)."""
        return self.judged and self.p > 1 - alpha

    def interval(self, confidence: float = 0.9) -> tuple[float, float]:
        """Two-sided interval; at 90 % its ends are the two one-sided 95 % bounds (TOST)."""
        if not self.judged:
            return math.nan, math.nan
        h = sps.t.ppf(0.5 + confidence / 2, self.df) * self.se
        return self.mean - h, self.mean + h

    def within(self, margin: float = MARGIN, alpha: float = ALPHA) -> bool:
        """Equivalent to zero within +-margin: both one-sided tests at alpha reject |difference| >= margin."""
        lo, hi = self.interval(1 - 2 * alpha)
        return self.judged and -margin < lo and hi < margin

    def __neg__(self) -> Test:
        return Test(-self.mean, self.se, self.df, self.n, self.level, self.paired)

    def __str__(self) -> str:
        if not self.judged:
            return f"{self.mean:+.1f} ({self.n} {self.level.split()[0]} seed{'s' * (self.n != 1)}, no SE)"
        return f"{self.mean:+.1f} ± {self.se:.1f} (p {self.p:.2f})"


def one_arm(values: pd.Series, level: str) -> Test:
    """The mean of unit values with its SE (sd with ddof=1 over sqrt(n)) and n - 1 df."""
    n = len(values)
    se = values.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
    return Test(float(values.mean()), float(se), float(n - 1) if n > 1 else math.nan, n, level)


def difference(a: pd.DataFrame, b: pd.DataFrame, paired: bool = False, value: str = "top1") -> Test:
    """mean(a) - mean(b) over their units. `paired`: the two arms are the same checkpoints fine-tuned two
    ways, so units match one to one (it falls back to Welch where their unit sets differ)."""
    (ua, la), (ub, lb) = units(a, value), units(b, value)
    level = la if la == lb else "mixed"
    if paired and la == lb and ua.index.is_unique and set(ua.index) == set(ub.index):
        d = one_arm(ua - ub.reindex(ua.index), level)
        return Test(d.mean, d.se, d.df, d.n, level, paired=True)
    return welch(one_arm(ua, la), one_arm(ub, lb), level)


def welch(a: Test, b: Test, level: str | None = None) -> Test:
    """a - b for independent estimates: SE = sqrt(se_a² + se_b²), df by Welch-Satterthwaite."""
    n = min(a.n, b.n)
    se = math.hypot(a.se, b.se)
    if not (a.judged and b.judged):
        return Test(a.mean - b.mean, se, math.nan, n, level or a.level)
    df = se**4 / (a.se**4 / a.df + b.se**4 / b.df) if se > 0 else a.df + b.df
    return Test(a.mean - b.mean, se, df, n, level or (a.level if a.level == b.level else "mixed"))


HOLDS, PARTLY, NOT_DETECTED, FAILS = "holds", "partly", "not detected", "does not hold"
UNTESTED, UNJUDGED = "not tested", "cannot be judged"


def combine(tests: list[Test], alpha: float = ALPHA) -> str:
    """One claim's verdict from its k directional tests (`combine_p`); cannot be judged where a test rests
    on fewer than 2 units."""
    if tests and not all(t.judged for t in tests):
        n = min(t.n for t in tests)
        return f"{UNJUDGED}: {n} seed{'s' * (n != 1)}"
    return combine_p([(t.p, 1 - t.p) for t in tests], alpha)


def combine_p(ps: list[tuple[float, float]], alpha: float = ALPHA) -> str:
    """A verdict from k checks, each as (p of the claimed direction, p of the opposite): holds where every
    check passes at alpha (an intersection-union test: the level stays alpha), partly where some passes at
    alpha / k (Bonferroni), does not hold where none does and some opposite passes at alpha / k, else not
    detected."""
    if not ps:
        return UNTESTED
    k = len(ps)
    if all(p < alpha for p, _ in ps):
        return HOLDS
    if any(p < alpha / k for p, _ in ps):
        return PARTLY
    return FAILS if any(q < alpha / k for _, q in ps) else NOT_DETECTED


def single(test: Test, alpha: float = ALPHA) -> str:
    """The verdict of one directional test."""
    return combine([test], alpha)


def rule_text(alpha: float = ALPHA, margin: float = MARGIN) -> str:
    """The rule as the report prints it above the scorecard."""
    pct = round(100 * (1 - alpha))
    return (f"Every verdict is a {pct} % test, one-sided in the claim's direction: Student's t at its degrees "
            f"of freedom, over independent units: an arm's pre-training seeds where it has several (each the mean "
            f"of its fine-tuning seeds), else its fine-tuning seeds (then the pre-training variation is not in "
            f"the error bar, and the row says so). The same checkpoints fine-tuned two ways are paired; other "
            f"arms are compared by Welch's t. Differences are quoted as mean ± SE (one-sided p). A claim over k "
            f"models or checkpoints holds where each test passes at {alpha:g}, partly where one passes at "
            f"{alpha:g}/k; 'not detected' means no effect beyond noise, 'does not hold' the opposite beyond "
            f"noise. 'Catches up' is an equivalence: the difference's 90 % interval inside ±{margin:g} points "
            f"(two one-sided tests at {alpha:g}). Statistics without seeds (attention, position embeddings) are "
            f"tested against permutation or untrained-network nulls.")
