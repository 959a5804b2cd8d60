# The VTAB-1k protocol (paper App. B.1.1): sweep on train800 -> val200, select one setting for all
# tasks by the mean val200 score, retrain on train800+val200, score test, report beside Table 9.
# Included only when config.yaml has a `vtab:` section.


def vtab_args(wildcards, input):
    """The VTAB-1k fine-tuning grid: sweep (one setting on train800 -> val200) or final (the selected
    setting on train800+val200 -> test)."""
    v = config["vtab"]
    grid = {"tasks": [f"vtab_{t.folder}" for t in VTAB_TASK_LIST], "resolutions": [v["resolution"]],
            "init": input.init, "model": v["model"], "upstream": "vtab"}
    if "setting" in wildcards.keys():
        split = {"seeds": [v["seeds"][0]], "train_split": "train800", "test_split": "val200"}
        return render(dict(grid, **v["train"], **v["sweep"][int(wildcards.setting)], **split))
    split = {"seeds": v["seeds"], "train_split": "train800+val200", "test_split": "test",
             "settings_file": input.selected}
    return render(dict(grid, **v["train"], **split))


rule vtab_sweep:
    input:
        init=config["vtab"]["checkpoint"],
        tasks=VTAB_DATA,
    output:
        "results/vtab/{model}/sweep/s{setting}/runs.json",
    params:
        args=vtab_args,
        out=subpath(output[0], parent=True),
    conda:
        ENV
    log:
        "results/logs/vtab_sweep/{model}-s{setting}.log",
    benchmark:
        "results/benchmarks/vtab_sweep/{model}-s{setting}.tsv"
    threads: 1
    shell:
        "exec python -m vit.train.finetune --out={params.out} --threads={threads} {params.args} > {log} 2>&1"


rule vtab_select:
    localrule: True
    input:
        expand("results/vtab/{{model}}/sweep/s{setting}/runs.json", setting=range(len(config["vtab"]["sweep"]))),
    output:
        "results/vtab/{model}/selected.json",
    params:
        settings=render({"settings": config["vtab"]["sweep"]}),
    conda:
        ENV
    log:
        "results/logs/vtab_select/{model}.log",
    benchmark:
        "results/benchmarks/vtab_select/{model}.tsv"
    shell:
        "python -m vit.evaluate.vtab --out={output} {params.settings} {input} > {log} 2>&1"


rule vtab_final:
    input:
        init=config["vtab"]["checkpoint"],
        tasks=VTAB_DATA,
        selected="results/vtab/{model}/selected.json",
    output:
        "results/vtab/{model}/final/runs.json",
    params:
        args=vtab_args,
        out=subpath(output[0], parent=True),
    conda:
        ENV
    log:
        "results/logs/vtab_final/{model}.log",
    benchmark:
        "results/benchmarks/vtab_final/{model}.tsv"
    threads: 1
    shell:
        "exec python -m vit.train.finetune --out={params.out} --threads={threads} {params.args} > {log} 2>&1"


rule vtab_report:
    localrule: True
    input:
        final=f"results/vtab/{config['vtab']['model']}/final/runs.json",
        selected=f"results/vtab/{config['vtab']['model']}/selected.json",
    output:
        md=report("reports/vtab.md", caption="../report/vtab.rst", category="VTAB-1k"),
        table=f"results/vtab/{config['vtab']['model']}/vtab.parquet",
    params:
        model=config["vtab"]["model"],
        paper_row=render({"paper_row": config["vtab"].get("paper_row", "")}),  # "" = no verdicts
    conda:
        ENV
    log:
        "results/logs/vtab_report.log",
    benchmark:
        "results/benchmarks/vtab_report/vtab_report.tsv"
    shell:
        "python -m vit.report.vtab --selected={input.selected} --out={output.md} --table={output.table} "
        "--model={params.model} {params.paper_row} {input.final} > {log} 2>&1"
