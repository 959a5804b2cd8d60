"""Claim (d)'s arithmetic: each family's frontier of pre-training compute against transfer accuracy, the
compute a family needs for an accuracy, and the ViT family's accuracy gap at equal compute, as a test."""
from __future__ import annotations

import math

import numpy as np

from vit.report import stats
from vit.report.stats import Test

DRAWS = 2000  # parametric bootstrap draws of (d)'s compute ratio


def compute_to_reach(compute: list[float], acc: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The pre-training compute a family needs for `target` accuracy, per row of `acc` (draws x models, the
    models' pre-training compute in `compute`): its frontier (the best accuracy at or below each compute),
    linear in log compute between its models, where it first reaches target (nan where it never does)."""
    order = np.argsort(compute)
    logc = np.log(np.asarray(compute, dtype=float)[order])
    front = np.maximum.accumulate(np.atleast_2d(acc)[:, order], axis=1)
    reached = front >= np.asarray(target, dtype=float)[:, None]
    rows, j = np.arange(len(front)), reached.argmax(axis=1)
    before = np.maximum(j - 1, 0)
    a0, a1 = front[rows, before], front[rows, j]
    frac = np.where(j == 0, 0.0, (target - a0) / np.where(a1 > a0, a1 - a0, 1.0))
    need = np.exp(logc[before] + frac * (logc[j] - logc[before]))
    return np.where(reached.any(axis=1), need, np.nan)


def frontier_gap(arms: dict[str, list[tuple[float, Test]]]) -> Test | None:
    """How far the ViT family's accuracy stands above the ResNet family's at equal pre-training compute: every
    model of one family whose compute lies within the other family's range, against the other's accuracy
    there (linear in log compute between its two nearest models), averaged (ViT minus ResNet). A linear
    combination of independent arm means, so its SE is sqrt(sum w² se²) and its df Welch-Satterthwaite's;
    None where the families' compute ranges do not overlap."""
    terms: list[tuple[float, Test]] = []  # (weight, arm) of every term of the average
    count = 0
    for own, other, sign in (("vit", "resnet", 1.0), ("resnet", "vit", -1.0)):
        pts = sorted(arms[other], key=lambda x: x[0])
        for c, t in arms[own]:
            for (c0, t0), (c1, t1) in zip(pts, pts[1:]):
                if c0 <= c <= c1:
                    w = (math.log(c) - math.log(c0)) / (math.log(c1) - math.log(c0)) if c1 > c0 else 0.0
                    terms += [(sign, t), (-sign * (1 - w), t0), (-sign * w, t1)]
                    count += 1
                    break
    if not count:
        return None
    terms = [(w / count, t) for w, t in terms if w]
    mean = sum(w * t.mean for w, t in terms)
    var = {id(t): (t, 0.0) for _, t in terms}
    for w, t in terms:  # one arm may enter several terms: its weights add before squaring
        var[id(t)] = (t, var[id(t)][1] + w)
    parts = [(w**2 * t.se**2, t.df) for t, w in var.values()]
    se = math.sqrt(sum(v for v, _ in parts))
    df = se**4 / sum(v**2 / d for v, d in parts if v > 0) if se > 0 else sum(d for _, d in parts)
    return Test(mean, se, df, min(t.n for t, _ in var.values()), stats.PRETRAIN if all(
        t.level == stats.PRETRAIN for t, _ in var.values()) else stats.FINETUNE)


def log_ratio(arms: dict[str, list[tuple[float, np.ndarray]]]) -> np.ndarray:
    """log(ResNet compute / ViT compute) to reach the accuracy both families reach (the lower of their
    best), per draw of the arms' accuracies (each family: [(compute, accuracies per draw)])."""
    acc = {f: np.stack([a for _, a in v], axis=1) for f, v in arms.items()}
    target = np.minimum(acc["vit"].max(axis=1), acc["resnet"].max(axis=1))
    need = {f: compute_to_reach([c for c, _ in v], acc[f], target) for f, v in arms.items()}
    return np.log(need["resnet"] / need["vit"])


def nearest_pair(arms: dict[str, list[tuple[float, Test]]]) -> tuple[Test, bool]:
    """Where the families' compute ranges do not overlap (e.g. one model each): the ViT model and the ResNet
    model nearest in log compute, as (ViT minus ResNet accuracy, whether the ViT used no more compute).
    With more compute never worse, a ViT more accurate on no more compute reaches the ResNet's accuracy with
    less; a ViT on more compute can only be shown worse."""
    (cv, v), (cr, r) = min(((a, b) for a in arms["vit"] for b in arms["resnet"]),
                           key=lambda ab: abs(math.log(ab[0][0]) - math.log(ab[1][0])))
    return stats.welch(v, r), cv <= cr

