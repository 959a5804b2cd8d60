# Pre-training and fine-tuning run the same loop (vit.train); fine-tuning groups one checkpoint's
# task x resolution x seed grid in one process (vit.train.finetune) because Python + torch start-up (~5 s)
# costs more than a laptop-scale fine-tune. Resumable state is kept outside the declared outputs.
# threads: 1 because these small models scale poorly across cores: on 2 cores, two 1-thread jobs side
# by side train ~18 % more images per second than one 2-thread job (docs/cpu_performance.md); each job sets
# torch to exactly its {threads}. Raise it with --set-threads pretrain=N finetune=N for big models.
# On a cluster the slurm profile gives pretrain / finetune N GPUs and `launch` starts one torchrun
# process per GPU (workflow/profiles/slurm); locally resources.gpu is 0 and the job is plain python.
# `exec`: the job's shell becomes the stage, so Snakemake waits for the stage itself. SLURM signals every
# process of a job step and a shell dies of SIGTERM at once, which would end the job while the stage is
# still saving its state (docs/reliability.md).


# Released weights from the Hugging Face hub (timm tags): a local rule, as compute nodes are often
# offline; set `file:` in the config to import a copy made elsewhere.
rule import_weights:
    localrule: True
    output:
        ckpt="results/released/{model}/{upstream}/checkpoint.pt",
        summary="results/released/{model}/{upstream}/summary.json",
    params:
        args=released_args,
        out=subpath(output.ckpt, parent=True),
    conda:
        ENV
    log:
        "results/logs/import_weights/{model}-{upstream}.log",
    benchmark:
        "results/benchmarks/import_weights/{model}-{upstream}.tsv"
    shell:
        "python -m vit.models.weights --out={params.out} {params.args} > {log} 2>&1"


rule pretrain:
    input:
        data="results/data/{upstream}/manifest.json",
    output:
        ckpt="results/pretrain/{model}/{upstream}/checkpoint.pt",
        summary="results/pretrain/{model}/{upstream}/summary.json",
    params:
        args=pretrain_args,
        launch=launch,
        data=subpath(input.data, parent=True),
        out=subpath(output.ckpt, parent=True),
    conda:
        ENV
    log:
        "results/logs/pretrain/{model}-{upstream}.log",
    benchmark:
        "results/benchmarks/pretrain/{model}-{upstream}.tsv"
    threads: 1
    priority: chain_priority  # the Noisy Student chain first (vit.plan.Plan.on_chain)
    resources:
        gpu=0,
    shell:
        "exec {params.launch} -m vit.train --data={params.data} --out={params.out} --threads={threads} {params.args} > {log} 2>&1"


rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        "results/finetune/{model}/{upstream}/runs.json",
    params:
        args=finetune_args,
        launch=launch,
        out=subpath(output[0], parent=True),
    conda:
        ENV
    log:
        "results/logs/finetune/{model}-{upstream}.log",
    benchmark:
        "results/benchmarks/finetune/{model}-{upstream}.tsv"
    threads: 1
    priority: chain_priority
    resources:
        gpu=0,
    shell:
        "exec {params.launch} -m vit.train.finetune --model={wildcards.model} --upstream={wildcards.upstream} --out={params.out} "
        "--threads={threads} {params.args} > {log} 2>&1"


rule fewshot:
    input:
        ckpt="results/pretrain/{model}/{upstream}/checkpoint.pt",
        tasks=TASK_DATA,
    output:
        "results/fewshot/{model}/{upstream}.json",
    params:
        data=render({"data": [f"results/data/{t}" for t in PLAN.finetune_tasks]}),
    conda:
        ENV
    log:
        "results/logs/fewshot/{model}-{upstream}.log",
    benchmark:
        "results/benchmarks/fewshot/{model}-{upstream}.tsv"
    threads: 1
    shell:
        "python -m vit.evaluate.fewshot --checkpoint={input.ckpt} {params.data} --train_split=train+val --test_split=test "
        "--threads={threads} --out={output} > {log} 2>&1"


# The resolution ablation (report: "Fine-tuning resolution"): the grid above the checkpoint's
# resolution again, with the other position-embedding interpolation mode (finetune.posemb_ablation).
use rule finetune as finetune_posemb with:
    output:
        "results/ablation/posemb_{mode}/{model}/{upstream}/runs.json",
    params:
        args=ablation_args,
        launch=launch,
        out=subpath(output[0], parent=True),
    wildcard_constraints:
        mode="|".join(plan.POSEMB_INTERP),
    log:
        "results/logs/ablation/posemb_{mode}-{model}-{upstream}.log",
    benchmark:
        "results/benchmarks/finetune_posemb_{mode}/{model}-{upstream}.tsv"


# BiT's own fine-tuning recipe (finetune.hyperrule): the checkpoint's task x seed grid again with the
# BiT-HyperRule's schedule, batch, learning rate, MixUp and resolution (vit.plan.recipes.bit_hyperrule), behind
# Table 2's BiT row; the main grid keeps one protocol for every model so that comparisons stay like for like.
use rule finetune as finetune_hyperrule with:
    output:
        "results/hyperrule/{model}/{upstream}/runs.json",
    params:
        args=hyperrule_args,
        launch=launch,
        out=subpath(output[0], parent=True),
    log:
        "results/logs/hyperrule/{model}-{upstream}.log",
    benchmark:
        "results/benchmarks/finetune_hyperrule/{model}-{upstream}.tsv"
