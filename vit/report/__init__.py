"""The report of a run (the last stage): `python -m vit.report.summary` writes results/summary.parquet,
one row per evaluated run; `python -m vit.report` reads it and writes reports/ (vit.report.write: the
sections of report.md in order, table2.md, tables.html, figures); `python -m vit.report.vtab` writes the
VTAB-1k report. Paper numbers come from vit/reference.yaml and are labelled as the paper's."""
