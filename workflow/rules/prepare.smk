rule prepare:
    output:
        "results/data/{dataset}/manifest.json",
    params:
        args=prepare_args,
        out=subpath(output[0], parent=True),
    wildcard_constraints:
        dataset=PREPARED,
    conda:
        ENV
    log:
        "results/logs/prepare/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare/{dataset}.tsv"
    threads: prepare_threads
    shell:
        "exec python -m vit.data.prepare --name={wildcards.dataset} --out={params.out} {params.args} > {log} 2>&1"


# Noisy Student (config `noisy_student`): iteration i's teacher pseudo-labels the unlabelled pool; the
# labelled set plus the kept, class-balanced pool images become a prepared dataset for the student.
rule pseudo_label:
    input:
        unpack(pseudo_label_inputs),
    output:
        "results/data/{dataset}/manifest.json",
    params:
        args=render(PLAN.pseudo_label_settings()),
        out=subpath(output[0], parent=True),
        labelled=subpath(input.labelled, parent=True),
        pool=subpath(input.pool, parent=True),
    wildcard_constraints:
        dataset="|".join(NOISY_STUDENT) or "(?!)",
    conda:
        ENV
    log:
        "results/logs/pseudo_label/{dataset}.log",
    benchmark:
        "results/benchmarks/pseudo_label/{dataset}.tsv"
    threads: 1
    priority: 1  # on the Noisy Student chain (vit.plan.Plan.on_chain)
    resources:
        gpu=0,
    shell:
        "python -m vit.data.pseudo_label --teacher={input.teacher} --labelled={params.labelled} "
        "--unlabelled={params.pool} --out={params.out} --threads={threads} {params.args} > {log} 2>&1"
