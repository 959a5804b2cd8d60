rule prepare:
    output:
        "results/data/{dataset}/manifest.json",
    params:
        args=prepare_args,
        out=subpath(output[0], parent=True),
    conda:
        ENV
    log:
        "results/logs/prepare/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare/{dataset}.tsv"
    threads: prepare_threads
    shell:
        "python -m vit.prepare --name={wildcards.dataset} --out={params.out} {params.args} > {log} 2>&1"
