"""One function per figure; each reads only the tidy tables built by vit.report (or the arrays of
vit.evaluate.inspect) and writes one PNG."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: reports are built on machines without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from vit.logs import read_npz, redo  # noqa: E402

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


def size_ladder(summary: pd.DataFrame, resolution: int, path, paper: dict | None = None) -> None:
    """Paper Fig. 3: transfer accuracy against the size of the pre-training set, ViT against ResNet;
    with `paper` (reference.yaml figure3_data) the paper's ViT numbers in a panel beside ours."""
    scores = per_seed_mean(summary[summary.resolution == resolution])
    pre = scores[scores.upstream != "scratch"].sort_values("upstream_rank")
    fig, axes = plt.subplots(1, 2 if paper else 1, figsize=(11.5 if paper else 6.5, 4.2), squeeze=False)
    ax = axes[0, 0]
    # seaborn divides the dodge by (models - 1)
    sns.pointplot(data=pre, x="upstream_label", y="top1", hue="model_label", errorbar="sd",
                  dodge=0.2 if pre.model_label.nunique() > 1 else False,
                  markers="o", ax=ax, order=list(dict.fromkeys(pre.upstream_label)))
    scratch = scores[scores.upstream == "scratch"].groupby("model_label")["top1"].mean()
    palette = dict(zip(pre.model_label.unique(), sns.color_palette()))
    for label, value in scratch.items():
        ax.axhline(value, ls="--", lw=1, color=palette.get(label, "grey"), label=f"{label}, from scratch")
    ax.set(xlabel="pre-training set (growing size)", ylabel="mean test top-1 over tasks (%)",
           title=f"Ours: pre-training set size -> transfer ({resolution} px)")
    ax.legend(title=None, fontsize=8)
    if paper:
        d = pd.DataFrame([{"pre-training set": ds, "model": m, "top1": v}
                          for ds, row in paper["imagenet_transfer"].items() for m, v in row.items() if v is not None])
        sns.pointplot(data=d, x="pre-training set", y="top1", hue="model", markers="o", ax=axes[0, 1],
                      palette="rocket")
        axes[0, 1].set(xlabel="pre-training set (paper)", ylabel="ImageNet top-1 (%), paper",
                       title="Paper (Table 5 = Fig. 3; ViT only)")
        axes[0, 1].legend(title=None, fontsize=8)
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


def compute(scores: pd.DataFrame, largest: str, path, paper: pd.DataFrame | None = None) -> None:
    """Paper Fig. 5: transfer accuracy against pre-training compute on the largest upstream set, one point
    per model (mean and sd over seeds), one line per family through its model sizes; against measured
    FLOPs and against measured core-seconds (what the run cost on this machine). With `paper`
    (vit.account.paper_compute.figure5: family, exaflops, average5) the paper's points in a third panel."""
    paper = paper if paper is not None and len(paper) else None
    fig, axes = plt.subplots(1, 3 if paper is not None else 2, figsize=(16 if paper is not None else 11, 4.2),
                             squeeze=False)
    ours = scores[(scores.pretrain_pflops > 0) & (scores.upstream == largest)]
    if ours.empty:
        return _nothing(fig, axes[0, 0], path, "no pre-training runs in this preset (released weights only)")
    for ax, x, xlabel in ((axes[0, 0], "pretrain_pflops", "pre-training compute (PFLOPs, measured)"),
                          (axes[0, 1], "pretrain_core_s", "pre-training core-seconds (measured)")):
        sns.lineplot(data=ours.sort_values(x), x=x, y="top1", hue="family", style="model_label", markers=True,
                     dashes=False, errorbar="sd", err_style="bars", sort=False, ax=ax, legend=ax is axes[0, 0])
        sns.lineplot(data=ours.groupby(["family", "model"], as_index=False)[[x, "top1"]].mean().sort_values(x),
                     x=x, y="top1", hue="family", ax=ax, legend=False, alpha=0.5)
        ax.set(xlabel=xlabel, ylabel="mean test top-1 over tasks (%)", title="Ours: transfer vs pre-training cost")
    axes[0, 0].legend(fontsize=6.5, loc="best")
    if paper is not None:
        sns.scatterplot(data=paper, x="exaflops", y="average5", hue="family", style="family", s=60, ax=axes[0, 2])
        axes[0, 2].set_xscale("log")
        axes[0, 2].set(xlabel="pre-training exaFLOPs (paper, Table 6)", ylabel="Average-5 top-1 (%), paper",
                       title="Paper (Fig. 5 / Table 6, JFT-300M)")
        axes[0, 2].legend(title=None, fontsize=8)
    _save(fig, path)


def resolution_ablation(table: pd.DataFrame, path) -> None:
    """The resolution ablation: one bar per (resolution, position-embedding interpolation) and task."""
    fig, ax = plt.subplots(figsize=(10, 4.2))
    sns.barplot(data=table, x="task_label", y="top1", hue="setting", errorbar="sd", ax=ax, palette="crest")
    ax.set(xlabel="", ylabel="test top-1 (%)", title="ViT fine-tuned at the pre-training resolution and above it")
    ax.legend(title=None, fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    _save(fig, path)


def pretrain_curves(curves: pd.DataFrame, path) -> None:
    """Pre-training loss against images seen, one panel per model: train loss (EMA, solid) and val loss
    (dashed, at each evaluation), one colour per upstream set, so a small set's overfitting (val rising
    while train falls) shows beside the large set's curves."""
    if curves.empty:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        return _nothing(fig, ax, path, "no pre-training runs in this preset (released weights only)")
    d = pd.DataFrame({"images seen": curves.images_seen, "loss": curves.loss, "model": curves.model_label,
                      "pre-trained on": curves.upstream_label, "split": curves.split,
                      "rank": curves.upstream_rank})
    order = d.sort_values("rank")["pre-trained on"].unique()
    models = list(dict.fromkeys(d.sort_values("model").model))
    g = sns.relplot(data=d, x="images seen", y="loss", hue="pre-trained on", hue_order=order, style="split",
                    style_order=["train", "val"], col="model", col_order=models, col_wrap=min(3, len(models)),
                    kind="line", height=2.8, aspect=1.25, facet_kws={"sharey": False})
    g.set_titles("{col_name}", size=8)
    g.set_axis_labels("images seen", "loss")
    for ax in g.axes.flat:
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
    g.figure.subplots_adjust(right=0.98, hspace=0.35, wspace=0.25)  # relplot leaves room for its legend
    sns.move_legend(g, "upper left", bbox_to_anchor=(0.99, 0.95), fontsize=8)
    g.figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(g.figure)


def _nothing(fig, ax, path, why: str) -> None:
    """A figure the report links to, saying why it has no data in this preset."""
    ax.axis("off")
    ax.text(0.5, 0.5, why, ha="center", va="center")
    _save(fig, path)


# ----------------------------------------------------------------------------- what the ViT learned
# Paper sec. 4.5 (Fig. 6 and 7), from the inspect.npz that vit.evaluate.inspect writes (a path or its arrays).
def _npz(d):
    return read_npz(d, redo(d, "inspect rule")) if isinstance(d, str) or hasattr(d, "__fspath__") else d


def rollout(d, path) -> None:
    """Paper Fig. 6: sample images over their attention rollout maps (class token to patches)."""
    d = _npz(d)
    imgs, maps = d["images"], d["rollout"]
    n = len(imgs)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.4), squeeze=False)
    for i in range(n):
        m = maps[i] / max(float(maps[i].max()), 1e-12)  # each map on its own scale, as in the paper
        axes[0, i].imshow(imgs[i])
        axes[1, i].imshow(imgs[i])
        axes[1, i].imshow(m, cmap="inferno", alpha=0.6, vmin=0, vmax=1)
        axes[0, i].set_title(f"label {int(d['labels'][i])}", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("Attention rollout: input (top), class-token attention over the patches (bottom)", fontsize=9)
    _save(fig, path)


def embedding_filters(d, path) -> None:
    """Paper Fig. 7 left: principal components of the patch-embedding filters, each min-max scaled."""
    d = _npz(d)
    comps, var = d["filters"], d["filter_variance"]
    cols = 7
    rows = -(-len(comps) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.25 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, c in enumerate(comps):
        img = np.moveaxis(c, 0, -1)
        img = (img - img.min()) / max(float(img.max() - img.min()), 1e-12)
        ax = axes.flat[i]
        ax.imshow(img if img.shape[-1] == 3 else img[..., 0], cmap=None if img.shape[-1] == 3 else "gray",
                  interpolation="nearest")
        ax.set_title(f"{100 * var[i]:.1f}%", fontsize=7)
    fig.suptitle("RGB embedding filters (principal components, % variance)", fontsize=9)
    _save(fig, path)


def posemb_similarity(d, path) -> None:
    """Paper Fig. 7 centre: tile (i, j) = cosine similarity of patch (i, j)'s position embedding with
    every other patch's, on one colour scale."""
    d = _npz(d)
    sim = d["posemb_similarity"]
    gh, gw = sim.shape[:2]
    side = max(0.55, 4.0 / max(gh, gw))  # small grids get bigger tiles, so the figure stays readable
    fig, axes = plt.subplots(gh, gw, figsize=(side * gw + 1.8, side * gh + 0.9), squeeze=False)
    for i in range(gh):
        for j in range(gw):
            im = axes[i, j].imshow(sim[i, j], cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
            axes[i, j].axis("off")
    fig.colorbar(im, ax=axes, shrink=0.8, label="cosine similarity")
    fig.suptitle("Position embedding similarity (row, column of the input patch)", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # not _save: tight_layout fights the shared colour bar
    plt.close(fig)


def attention_distance(d, path) -> None:
    """Paper Fig. 7 right: mean attention distance of every head against network depth, with the
    distance that uniform attention over all patches would give."""
    d = _npz(d)
    dist = d["attention_distance"]  # (layers, heads)
    layers, heads = dist.shape
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    colours = sns.color_palette("husl", heads)
    uniform = float(d["uniform_distance"])
    for h in range(heads):
        ax.scatter(range(1, layers + 1), dist[:, h], s=14, color=colours[h], label=f"head {h + 1}", zorder=3)
    ax.axhline(uniform, ls="--", lw=1, color="grey", label="uniform attention")
    ax.set(xlabel="network depth (layer)", ylabel="mean attention distance (pixels)",
           title=f"Attention distance ({int(d['img_size'])} px input)",
           ylim=(0, 1.1 * max(uniform, float(dist.max()))))
    ax.xaxis.get_major_locator().set_params(integer=True)
    if heads <= 16:
        ax.legend(fontsize=6, ncol=2, loc="lower right")
    _save(fig, path)
