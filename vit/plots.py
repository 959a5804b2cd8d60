"""One function per figure; each reads only the tidy tables built by vit.report and writes one PNG."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: reports are built on machines without a display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


def _save(fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def per_seed_mean(summary: pd.DataFrame) -> pd.DataFrame:
    """VTAB-style score of each fine-tuning seed: the mean over tasks (so the spread is across seeds)."""
    keys = ["model", "model_label", "upstream", "upstream_label", "upstream_rank", "resolution", "seed"]
    return summary.groupby(keys, dropna=False)["top1"].mean().reset_index()


def transfer(summary: pd.DataFrame, upstream: str, resolution: int, path) -> None:
    """Table 2 as a picture: every model on every task, pre-trained on the largest upstream set,
    beside the same architectures trained from scratch."""
    d = summary[(summary.resolution == resolution) & summary.upstream.isin([upstream, "scratch"])].copy()
    d["run"] = d.model_label + d.upstream.map(lambda u: " (scratch)" if u == "scratch" else "")
    fig, ax = plt.subplots(figsize=(10, 4.2))
    sns.barplot(data=d, x="task_label", y="top1", hue="run", errorbar="sd", ax=ax, palette="tab10")
    ax.set(xlabel="", ylabel="test top-1 (%)", title=f"Transfer at {resolution} px (mean ± sd over seeds)")
    ax.legend(title=None, fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    _save(fig, path)


def size_ladder(summary: pd.DataFrame, resolution: int, path) -> None:
    """Paper Fig. 3: transfer accuracy against the size of the pre-training set, ViT against ResNet."""
    scores = per_seed_mean(summary[summary.resolution == resolution])
    pre = scores[scores.upstream != "scratch"].sort_values("upstream_rank")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    # seaborn divides the dodge by (models - 1)
    sns.pointplot(data=pre, x="upstream_label", y="top1", hue="model_label", errorbar="sd",
                  dodge=0.2 if pre.model_label.nunique() > 1 else False,
                  markers="o", ax=ax, order=list(dict.fromkeys(pre.upstream_label)))
    scratch = scores[scores.upstream == "scratch"].groupby("model_label")["top1"].mean()
    palette = dict(zip(pre.model_label.unique(), sns.color_palette()))
    for label, value in scratch.items():
        ax.axhline(value, ls="--", lw=1, color=palette.get(label, "grey"), label=f"{label}, from scratch")
    ax.set(xlabel="pre-training set (growing size)", ylabel="mean test top-1 over tasks (%)",
           title=f"Pre-training set size -> transfer ({resolution} px)")
    ax.legend(title=None, fontsize=8)
    _save(fig, path)


def resolution(summary: pd.DataFrame, upstream: str, upstream_label: str, path) -> None:
    """Paper sec. 3.2: fine-tuning at a higher resolution than pre-training, position embeddings
    resampled in 2D."""
    d = summary[summary.upstream == upstream]
    g = sns.catplot(data=d, x="task_label", y="top1", hue="resolution", col="model_label", kind="bar",
                    errorbar="sd", height=3.6, aspect=1.1, palette="crest")
    g.set_axis_labels("", "test top-1 (%)").set_titles("{col_name}")
    for ax in g.axes.flat:
        ax.tick_params(axis="x", rotation=30)
    g.figure.suptitle(f"Fine-tuning resolution (pre-trained at the lower one on {upstream_label})", y=1.03)
    g.savefig(path, dpi=110)
    plt.close(g.figure)


def compute(scores: pd.DataFrame, path) -> None:
    """Paper Fig. 5: transfer accuracy against pre-training compute, per model family."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    scores = scores[scores.pretrain_pflops > 0]
    if scores.empty:
        return _nothing(fig, ax, path, "no pre-training runs in this preset (released weights only)")
    sns.lineplot(data=scores, x="pretrain_pflops", y="top1", hue="model_label", style="model_label",
                 markers=True, dashes=False, errorbar="sd", ax=ax)
    ax.set_xscale("log")
    ax.set(xlabel="pre-training compute (PFLOPs, measured)", ylabel="mean test top-1 over tasks (%)",
           title="Transfer vs pre-training compute")
    ax.legend(title=None, fontsize=8)
    _save(fig, path)


def pretrain_curves(curves: pd.DataFrame, path) -> None:
    """Pre-training loss of every run (train loss, EMA) against images seen."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    if curves.empty:
        return _nothing(fig, ax, path, "no pre-training runs in this preset (released weights only)")
    d = pd.DataFrame({"images_seen": curves.images_seen, "loss": curves.loss, "model": curves.model_label,
                      "pre-trained on": curves.upstream_label})
    sns.lineplot(data=d, x="images_seen", y="loss", hue="model", style="pre-trained on", ax=ax)
    ax.set(xlabel="images seen", ylabel="training loss (EMA)", title="Pre-training curves")
    ax.legend(fontsize=8)
    _save(fig, path)


def _nothing(fig, ax, path, why: str) -> None:
    """A figure the report links to, saying why it has no data in this preset."""
    ax.axis("off")
    ax.text(0.5, 0.5, why, ha="center", va="center")
    _save(fig, path)
