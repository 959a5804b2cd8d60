rule evaluate:
    localrule: True
    input:
        finetune_files(),
    output:
        runs="results/eval/runs.parquet",
        vtab="results/eval/vtab.parquet",
    params:
        out=subpath(output.runs, parent=True),
    conda:
        ENV
    log:
        "results/logs/evaluate.log",
    shell:
        "python -m vit.evaluate --out={params.out} {input} > {log} 2>&1"


rule account:
    localrule: True
    input:
        pretrain=pretrain_files("summary.json"),
        finetune=finetune_files(),
        benchmarks=benchmark_files(),
    output:
        runs="results/compute/compute.parquet",
        jobs="results/compute/jobs.parquet",
    conda:
        ENV
    log:
        "results/logs/account.log",
    shell:
        "python -m vit.account --out={output.runs} {input} > {log} 2>&1"


rule report:
    localrule: True
    input:
        runs="results/eval/runs.parquet",
        vtab="results/eval/vtab.parquet",
        compute="results/compute/compute.parquet",
        pretrain=pretrain_files("summary.json"),
    output:
        summary="results/summary.parquet",
        table2="reports/table2.md",
        report="reports/report.md",
        tables=report("reports/tables.html", caption="../report/tables.rst", category="Tables"),
        figures=report(
            expand("reports/figures/{fig}.png", fig=FIGURES),
            caption="../report/figures.rst",
            category="Figures",
        ),
    params:
        config=render({"config": config}),
        reports=subpath(output.report, parent=True),
    conda:
        ENV
    log:
        "results/logs/report.log",
    shell:
        "python -m vit.report --runs={input.runs} --vtab={input.vtab} --compute={input.compute} "
        "--summary={output.summary} --reports={params.reports} {params.config} {input.pretrain} > {log} 2>&1"
