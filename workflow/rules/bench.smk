# Machine benchmarks (`make bench`); not part of `all`.


rule bench:
    output:
        json="results/bench/bench.json",
        md="results/bench/bench.md",
    params:
        args=render(PLAN.bench_settings()),
    conda:
        ENV
    log:
        "results/logs/bench.log",
    threads: 2
    shell:
        "python -m vit.account.bench --out={output.json} --threads={threads} {params.args} > {log} 2>&1"


rule bench_prepare:
    output:
        "results/bench/prepare.json",
    conda:
        ENV
    log:
        "results/logs/bench_prepare.log",
    shell:
        "python -m vit.data.bench --root=results/bench/jpegs --out={output} > {log} 2>&1"
