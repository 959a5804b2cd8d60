# Evaluate -> account -> summarize -> report, and the inspection of the ViTs (paper Figs. 6-7).


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
    benchmark:
        "results/benchmarks/evaluate/evaluate.tsv"
    shell:
        "python -m vit.evaluate.collect --out={params.out} {input} > {log} 2>&1"


# The matmul peak that MFU is taken against, measured once per results folder. It asks for every core
# so that nothing runs beside it; on a cluster the profile gives it one GPU of the training partition.
rule peak:
    output:
        "results/compute/peak.json",
    conda:
        ENV
    log:
        "results/logs/peak.log",
    benchmark:
        "results/benchmarks/peak/peak.tsv"
    threads: workflow.cores
    resources:
        gpu=0,
    shell:
        "python -m vit.account.peak --out={output} --threads={threads} > {log} 2>&1"


rule account:
    localrule: True
    input:
        peak="results/compute/peak.json",
        pretrain=pretrain_files("summary.json"),
        finetune=finetune_files() + ablation_files() + hyperrule_files(),
        benchmarks=benchmark_files(),
    output:
        runs="results/compute/compute.parquet",
        jobs="results/compute/jobs.parquet",
    conda:
        ENV
    log:
        "results/logs/account.log",
    benchmark:
        "results/benchmarks/account/account.tsv"
    shell:
        "python -m vit.account.compute --out={output.runs} --peak={input.peak} {input.pretrain} {input.finetune} "
        "{input.benchmarks} > {log} 2>&1"


# The paper's Figs. 6-7 (attention rollout, embedding filters, position-embedding similarity, mean
# attention distance) from each ViT's checkpoint on its largest upstream set.
rule inspect:
    input:
        unpack(inspect_inputs),
    output:
        npz="results/inspect/{model}/{upstream}/inspect.npz",
        json="results/inspect/{model}/{upstream}/inspect.json",
    params:
        data=subpath(input.data, parent=True),
        split=inspect_split,
        launch=launch,
        out=subpath(output.npz, parent=True),
    conda:
        ENV
    log:
        "results/logs/inspect/{model}-{upstream}.log",
    benchmark:
        "results/benchmarks/inspect/{model}-{upstream}.tsv"
    threads: 1
    resources:
        gpu=0,
    shell:
        "{params.launch} -m vit.evaluate.inspect --checkpoint={input.ckpt} --data={params.data} --split={params.split} "
        "--out={params.out} --threads={threads} > {log} 2>&1"


# One row per evaluated run with its labels, pre-training and compute: what the report's sections read.
rule summarize:
    localrule: True
    input:
        runs="results/eval/runs.parquet",
        pretrain=pretrain_files("summary.json"),
    output:
        "results/summary.parquet",
    params:
        config=render({"config": config}),
    conda:
        ENV
    log:
        "results/logs/summarize.log",
    benchmark:
        "results/benchmarks/summarize/summarize.tsv"
    shell:
        "python -m vit.report.summary --runs={input.runs} --out={output} {params.config} {input.pretrain} > {log} 2>&1"


rule report:
    localrule: True
    input:
        summary="results/summary.parquet",
        vtab="results/eval/vtab.parquet",
        compute="results/compute/compute.parquet",
        jobs="results/compute/jobs.parquet",
        peak="results/compute/peak.json",
        ablation=ablation_files(),
        hyperrule=hyperrule_files(),
        inspect=inspect_files(),
        ns=[f"results/data/{d}/manifest.json" for d in NOISY_STUDENT],
        fewshot=[f"results/fewshot/{m}/{up}.json" for m, up in PLAN.fewshot_runs],
        pretrain=pretrain_files("summary.json"),
    output:
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
        # the lists of run files are known at parse time: the same words as the inputs above
        inputs=render({"ablation": ablation_files(), "hyperrule": hyperrule_files(), "inspect": inspect_files(),
                       "ns_manifests": [f"results/data/{d}/manifest.json" for d in NOISY_STUDENT],
                       "fewshot": [f"results/fewshot/{m}/{up}.json" for m, up in PLAN.fewshot_runs]}),
        reports=subpath(output.report, parent=True),
    conda:
        ENV
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report/report.tsv"
    shell:
        "python -m vit.report --summary={input.summary} --vtab={input.vtab} --compute={input.compute} "
        "--jobs={input.jobs} --peak={input.peak} --reports={params.reports} "
        "{params.config} {params.inputs} {input.pretrain} > {log} 2>&1"
