# Helpers shared by the rules: config checks the schema cannot express, target lists, and rendering
# of a stage's settings as `--key=value` (vit.cli parses them back into the stage's dataclass).
from snakemake.exceptions import WorkflowError

from vit.cli import render  # dict -> shell-quoted `--key=value` words; vit.cli parses them back


def _check_config():
    """Cross-references between sections, which a JSON schema cannot check."""
    datasets, models = config["datasets"], config["models"]

    def need(kind, name, where, known):
        if name not in known:
            raise WorkflowError(f"config: {where} names {kind} {name!r}, which is not defined under "
                                f"'{kind}s:' (defined: {', '.join(known)})")

    for model, upstreams in config["pretrain"]["runs"].items():
        need("model", model, "pretrain.runs", models)
        for up in upstreams:
            need("dataset", up, f"pretrain.runs.{model}", datasets)
            need("dataset", up, "pretrain.epochs (no epochs for it)", config["pretrain"]["epochs"])
    for task in config["finetune"]["tasks"]:
        need("dataset", task, "finetune.tasks", datasets)
        if datasets[task]["group"] == "upstream":
            raise WorkflowError(f"config: finetune.tasks names {task!r}, an upstream set; "
                                f"give it a VTAB group (natural, specialized, structured)")
    for model in config["finetune"]["from_scratch"]:
        need("model", model, "finetune.from_scratch", models)


_check_config()

ENV = "../envs/vit.yaml"

PRETRAIN_RUNS = [(m, up) for m, ups in config["pretrain"]["runs"].items() for up in ups]
FINETUNE_RUNS = PRETRAIN_RUNS + [(m, "scratch") for m in config["finetune"]["from_scratch"]]


def model_spec(model):
    """The model's timm spec, without the keys that only label it in reports."""
    return {k: v for k, v in config["models"][model].items() if k not in ("label", "paper_row")}


def prepare_args(wildcards):
    spec = {k: v for k, v in config["datasets"][wildcards.dataset].items() if k not in ("label", "stands_for")}
    return render(spec)


def pretrain_args(wildcards):
    settings = dict(config["pretrain"]["train"], epochs=config["pretrain"]["epochs"][wildcards.upstream])
    tags = {"model": wildcards.model, "upstream": wildcards.upstream, "stage": "pretrain"}
    return render(dict(settings, model=wildcards.model, model_args=model_spec(wildcards.model), tags=tags))


def finetune_inputs(wildcards):
    inputs = {"tasks": [f"results/data/{t}/manifest.json" for t in config["finetune"]["tasks"]]}
    if wildcards.upstream != "scratch":
        inputs["init"] = f"results/pretrain/{wildcards.model}/{wildcards.upstream}/checkpoint.pt"
    return inputs


def finetune_args(wildcards, input):
    grid = {"tasks": config["finetune"]["tasks"], "resolutions": config["finetune"]["resolutions"],
            "seeds": config["seeds"]}
    if wildcards.upstream == "scratch":
        grid["model_args"] = model_spec(wildcards.model)
    else:
        grid["init"] = input.init
    return render(dict(grid, **config["finetune"]["train"]))


def pretrain_files(name):
    return [f"results/pretrain/{m}/{up}/{name}" for m, up in PRETRAIN_RUNS]


def finetune_files():
    return [f"results/finetune/{m}/{up}/runs.json" for m, up in FINETUNE_RUNS]


def benchmark_files():
    return ([f"results/benchmarks/pretrain/{m}-{up}.tsv" for m, up in PRETRAIN_RUNS]
            + [f"results/benchmarks/finetune/{m}-{up}.tsv" for m, up in FINETUNE_RUNS])


FIGURES = ["transfer", "size_ladder", "resolution", "compute", "pretrain_curves"]
