# Machine benchmarks (`make bench`); not part of `all`.
from vit.plan.checks import read_config


# The loop's speed (vit.account.bench): each pre-trained model of this config and of the smoke preset at its
# pre-training shape and settings, plus ViTs with an 8x8 patch grid at 32 px at three widths, against a plain
# timm loop, all on this config's prepared sets. The paper-scale presets' models are left out: one of their
# steps takes minutes on a CPU.
SMOKE = read_config(os.path.normpath(os.path.join(workflow.basedir, "..", "configs", "smoke.yaml")))
BENCH_CASES = {name: {"data": f"results/data/{case['dataset']}", "settings": case["settings"]} for name, case in
               PLAN.bench_cases(extra=plan.BENCH_VITS, others={"smoke": plan.load(SMOKE)}).items()}


rule bench:
    input:
        sorted({f"{c['data']}/manifest.json" for c in BENCH_CASES.values()}),
    output:
        json="results/bench/bench.json",
        md="results/bench/bench.md",
    params:
        # the ViTs also in fp32/explicit, what a CPU without bf16 units runs, where this machine's rule differs
        args=render({"cases": BENCH_CASES, "forms": ["fp32/explicit"]}),
    conda:
        ENV
    log:
        "results/logs/bench.log",
    threads: workflow.cores  # alone on the machine, which the timing needs; each loop uses --threads=1
    shell:
        "python -m vit.account.bench --out={output.json} --threads=1 {params.args} > {log} 2>&1"


rule bench_prepare:
    output:
        "results/bench/prepare.json",
    conda:
        ENV
    log:
        "results/logs/bench_prepare.log",
    shell:
        "python -m vit.data.bench --root=results/bench/jpegs --out={output} > {log} 2>&1"


# The paper presets' input pipeline: images/s per core from the sharded store against torchvision's
# ImageFolder, on 50,000 generated 500 x 375 JPEGs (vit.data.bench_input); vit.account.cost reads it.
rule bench_input:
    output:
        "results/bench/input_pipeline.json",
    conda:
        ENV
    log:
        "results/logs/bench_input.log",
    threads: workflow.cores  # alone on the machine, which the timing needs
    shell:
        "python -m vit.data.bench_input --root=results/bench/input --out={output} > {log} 2>&1"
