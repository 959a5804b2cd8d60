rule prepare:
    output:
        "results/data/{dataset}/manifest.json",
    params:
        args=prepare_args,
        out=subpath(output[0], parent=True),
    wildcard_constraints:
        dataset=prepared_pattern(),
    conda:
        ENV
    log:
        "results/logs/prepare/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare/{dataset}.tsv"
    threads: prepare_threads
    shell:
        "python -m vit.data.prepare --name={wildcards.dataset} --out={params.out} {params.args} > {log} 2>&1"


# Noisy Student (config `noisy_student`): iteration i's teacher pseudo-labels the unlabelled pool; the
# labelled set plus the kept, class-balanced pool images become a prepared dataset for the student.
rule pseudo_label:
    input:
        unpack(pseudo_label_inputs),
    output:
        "results/data/{dataset}/manifest.json",
    params:
        args=lambda w: render({k: v for k, v in config["noisy_student"].items() if k in ("threshold", "per_class", "labels")}),
        out=subpath(output[0], parent=True),
        labelled=lambda w, input: os.path.dirname(input.labelled),
        pool=lambda w, input: os.path.dirname(input.pool),
    wildcard_constraints:
        dataset="|".join(NOISY_STUDENT) or "(?!)",
    conda:
        ENV
    log:
        "results/logs/pseudo_label/{dataset}.log",
    benchmark:
        "results/benchmarks/pseudo_label/{dataset}.tsv"
    threads: 1
    resources:
        gpu=0,
    shell:
        "python -m vit.data.pseudo_label --teacher={input.teacher} --labelled={params.labelled} "
        "--unlabelled={params.pool} --out={params.out} --threads={threads} {params.args} > {log} 2>&1"
