"""The report's files: reports/table2.md (the paper's Table 2 mirrored), reports/report.md (its sections
in order), reports/tables.html (the result tables for Snakemake's HTML report) and reports/figures/*.png."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from vit.logs import atomic_write_bytes
from vit.report import accounting, figures, sections
from vit.report.costs import cost_table, jobs_table
from vit.report.results import Results
from vit.report.tables import ablation_table, group_table, hyperrule_table, ns_table, ssl_table, task_table

# report.md, top to bottom; each returns its section's Markdown lines (none where the run has no data for it)
SECTIONS = (sections.intro, sections.scorecard_section, sections.table2_section, sections.transfer,
            sections.vtab_aggregate, sections.size_ladder, sections.resolution, sections.hyperrule,
            sections.noisy_student, sections.self_supervised, accounting.compute, sections.learned,
            accounting.accounting, accounting.departures_section, accounting.provenance)


def markdown(r: Results) -> str:
    return "\n".join(line for section in SECTIONS for line in section(r))


def _optional_tables(r: Results) -> list[tuple[str, pd.DataFrame]]:
    """The tables of the extra experiments a preset may run (empty ones are left out)."""
    s, p = r.summary, r.plan
    tables = [("Resolution ablation", ablation_table(s, r.ablation, p)[1]),
              ("Self-supervised pre-training (sec. 4.6)", ssl_table(s, p)[0]),
              ("Noisy Student iterations", ns_table(s, r.pretrain, p, r.ns_info, r.common)),
              ("BiT-HyperRule", hyperrule_table(s, r.hyperrule, p))]
    return [(title, t) for title, t in tables if len(t)]


def html(r: Results) -> str:
    """The result tables as HTML, for Snakemake's report (workflow/report/tables.rst)."""
    s, p = r.summary, r.plan
    tables = ([("Claims scorecard", sections.claims(r)), ("Transfer per task", task_table(s, p)),
               ("VTAB-style aggregate", group_table(r.vtab, p))] + _optional_tables(r)
              + [("Pre-training runs", accounting.pretrain_runs(r)), ("Compute, measured", cost_table(r.compute)),
                 ("Snakemake job records", jobs_table(r.jobs)),
                 ("The paper's runs at paper scale", accounting.paper_scale(r))])
    parts = ["<html><body><h1>Tables</h1>"]
    for title, table in tables:
        parts += [f"<h2>{title}</h2>", table.to_html(index=False)]
    return "\n".join(parts + ["</body></html>"])


def write(r: Results, reports: Path) -> str:
    """Writes every file of the report into `reports`; returns report.md's text."""
    reports.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(reports / "table2.md", sections.table2_md(r).encode())
    figures.draw(r, reports / "figures")
    text = markdown(r)
    atomic_write_bytes(reports / "report.md", text.encode())
    atomic_write_bytes(reports / "tables.html", html(r).encode())
    return text
