"""The report's figures: which are drawn for a run, in the order the report numbers them, and drawing them
into reports/figures/ (each by one function of vit.report.plots)."""
from __future__ import annotations

from pathlib import Path

from vit.account import paper_compute
from vit.report import plots
from vit.report.results import Results, scores
from vit.report.tables import ablation_table

# paper Figs. 6 and 7, from the inspected checkpoint: (file name, plot)
INSPECT = (("attention_rollout", plots.rollout), ("embedding_filters", plots.embedding_filters),
           ("posemb_similarity", plots.posemb_similarity), ("attention_distance", plots.attention_distance))


def has_ablation(r: Results) -> bool:
    return not r.ablation.empty


def names(r: Results) -> list[str]:
    """The figures of this run, in the report's order."""
    return (["transfer", "size_ladder", "resolution"] + (["resolution_ablation"] if has_ablation(r) else [])
            + ["compute", "pretrain_curves"] + ([name for name, _ in INSPECT] if r.inspect else []))


def number(r: Results, name: str) -> int:
    """A figure's number in the report."""
    return names(r).index(name) + 1


def draw(r: Results, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    s, p = r.summary, r.plan
    sizes = s[s.upstream.isin(p.upstreams + ["scratch"])]  # not the pseudo-labelled sets
    plots.transfer(s, r.largest, r.common, folder / "transfer.png")
    plots.size_ladder(sizes, r.common, folder / "size_ladder.png", r.reference.get("figure3_data"))
    plots.resolution(s, r.largest, p.label(r.largest), folder / "resolution.png")
    plots.compute(scores(r), r.largest, folder / "compute.png", paper_compute.figure5(r.reference))
    plots.pretrain_curves(r.curves, folder / "pretrain_curves.png")
    if has_ablation(r):
        tidy, _ = ablation_table(s, r.ablation, p)
        plots.resolution_ablation(tidy, folder / "resolution_ablation.png")
    if r.inspect:
        for name, plot in INSPECT:
            plot(r.inspect["npz"], folder / f"{name}.png")
