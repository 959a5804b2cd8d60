"""The report stage: tables and figures of a run, beside the paper's numbers (from vit/reference.yaml;
every paper number is labelled as the paper's).

    python -m vit.report --summary=results/summary.parquet --vtab=results/eval/vtab.parquet \
        --compute=results/compute/compute.parquet --reports=reports '--config={...}' \
        results/pretrain/*/*/summary.json

Reads results/summary.parquet of the summarize stage (vit.report.summary); writes reports/table2.md,
reports/report.md, reports/tables.html and reports/figures/*.png (vit.report.write).
"""
from __future__ import annotations

from pathlib import Path

from vit import cli
from vit.report import results, write


def main(cfg: results.Config) -> str:
    if not (cfg.summary and cfg.vtab and cfg.compute and cfg.config):
        raise cli.ConfigError("--summary, --vtab, --compute and --config are required")
    r = results.load(cfg)
    text = write.write(r, Path(cfg.reports))
    print(f"{len(r.summary)} runs from {cfg.summary}; reports in {cfg.reports}/")
    return text


if __name__ == "__main__":
    cli.main_guard(main, results.Config)
