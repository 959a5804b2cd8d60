"""The closing sections of reports/report.md: compute against transfer (paper Fig. 5), the compute
accounting (paper sec. 4.4, Table 6), the departures from the paper and the provenance of the numbers."""
from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version

import pandas as pd

from vit.account import paper_compute
from vit.logs import config_hash
from vit.report.costs import cost_table, estimate_vs_measured, flop_check, jobs_table, peak_text
from vit.report.departures import departures
from vit.report import forms
from vit.report.figures import number
from vit.report.results import Results
from vit.report.tables import pretrain_runs_table

PACKAGES = ("torch", "torchvision", "timm", "numpy", "pandas", "pyarrow", "matplotlib", "seaborn", "snakemake")


def pretrain_runs(r: Results) -> pd.DataFrame:
    """The pre-training runs table; FLOPs per image at pretrain.train's resolution."""
    return pretrain_runs_table(r.pretrain, r.plan.config["pretrain"]["train"].get("img_size", 32))


def paper_scale(r: Results) -> pd.DataFrame:
    """The paper's runs at paper scale (vit.account.paper_compute), at the assumed utilisation."""
    return paper_compute.paper_compute(r.reference, r.mfu)


def compute(r: Results) -> list[str]:
    return [
        "## Compute (paper Fig. 5)", "", "![compute](figures/compute.png)", "",
        f"*Figure {number(r, 'compute')}. Ours, left and centre: mean transfer accuracy at {r.common} px "
        f"(mean and sd over seeds) of each model pre-trained on {r.plan.label(r.largest)}, against measured "
        "pre-training FLOPs and against measured core-seconds; one line per family through its model sizes. "
        "Right, the paper's Table 6 (the data of its Fig. 5): Average-5 transfer against pre-training "
        "exaFLOPs on JFT-300M. Further left and higher is more compute-efficient (claim d, which also counts "
        "the smaller upstream sets).*", "",
        "![pre-training curves](figures/pretrain_curves.png)", "",
        f"*Figure {number(r, 'pretrain_curves')}. Pre-training loss against images seen, one panel per model: "
        f"train loss (solid) and val loss (dashed) on each upstream set. Every set is seen for the same number "
        f"of images, so the small sets are seen for many epochs; where a run's val loss rises, keep_best keeps "
        f"the weights of its best validation (the table's `weights kept`).*", "",
        pretrain_runs(r).to_markdown(index=False, floatfmt=".4g"), ""]


def accounting(r: Results) -> list[str]:
    c, jobs = r.compute, jobs_table(r.jobs)
    n_ft, n_pre = int((c.stage == "finetune").sum()), int((c.stage == "pretrain").sum())
    return [
        "## Compute accounting (paper sec. 4.4, Table 6)", "",
        "### Measured, per stage and model", "",
        cost_table(c).to_markdown(index=False, floatfmt=".4g"), "",
        f"Fine-tuning: {n_ft} runs (the ablation included); pre-training: {n_pre} runs. Times are of "
        "training steps only (evaluation and the first steps of each process excluded); `GFLOP_per_s` and "
        "`MFU_pct` are medians over runs; FLOPs per image are forward + backward. " + peak_text(r.peak), "",
        flop_check(c), ""] + estimate_vs_measured(r.plan, c, r.peak) + [
        "Whole jobs as Snakemake's `benchmark:` directive recorded them (wall time includes Python start-up, "
        "data loading and evaluation; several jobs shared the cores):", "",
        jobs.to_markdown(index=False, floatfmt=".4g") if len(jobs) else "(no benchmark records)", "",
        "### The paper's runs, at paper scale", "",
        paper_compute.markdown(paper_scale(r), r.mfu), ""]


def departures_section(r: Results) -> list[str]:
    return departures(r.plan, r.reference) + [""]


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def provenance(r: Results) -> list[str]:
    """The config's hash, the code's commits, package versions and the training machine. The report's own
    commit (`r.here`) leaves out reports/ (see vit.logs.git_commit)."""
    here, peak = r.here, r.peak
    envs = [json.loads(e) for e in r.pretrain.env] or [here]
    commits = sorted({e.get("git_commit") for e in envs})
    env = dict(envs[0], host=envs[0].get("host") or peak.get("env", {}).get("host"))
    machine = ["platform", "processor", "cpu_count", "device", "host"]
    return ["## Provenance", "",
            f"- config: hash `{config_hash(r.plan.config)}` (the workflow's whole config, as the report rule "
            "received it)",
            f"- code: this report by git `{here['git_commit']}`; the pre-training runs by "
            + ", ".join(f"`{c}`" for c in commits) + " (each run's own commit is in its summary.json)",
            f"- packages: python `{here['python']}`, " + ", ".join(f"{p} `{_version(p)}`" for p in PACKAGES),
            "- machine of the training runs: " + ", ".join(f"{k} `{env.get(k)}`" for k in machine)
            + (f"; measured matmul peak {max(peak['cpu_fp32_gflops'].values()):.0f} GFLOP/s fp32"
               if peak.get("cpu_fp32_gflops") else ""),
            "- step forms (vit.train.forms: a fixed rule per device kind, or VIT_STEP_FORM) and machines of the "
            "fine-tuned runs and their checkpoints:", "", _forms(r), "",
            "- every number above comes from `results/` of this run (`results/summary.parquet`, "
            "`results/compute/compute.parquet`, `results/compute/jobs.parquet`, `results/inspect/`); paper "
            "numbers come from `vit/reference.yaml` and are labelled as the paper's.", ""]


def _forms(r: Results) -> str:
    table = forms.form_table(r.summary, r.plan)
    return table.to_markdown(index=False) if len(table) else "  not recorded (runs made before the form was)"
