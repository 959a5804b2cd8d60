# Helpers shared by the rules: config checks the schema cannot express, target lists, and rendering
# of a stage's settings as `--key=value` (vit.cli parses them back into the stage's dataclass).
import os

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError

from vit.report import departures
from vit import plan  # what the config runs (shared with vit.account.cost and vit.report)
from vit.cli import render  # dict -> shell-quoted `--key=value` words; vit.cli parses them back


config.setdefault("datasets", {})
config.setdefault("models", {})
if "vtab" in config:  # every VTAB-1k task becomes a dataset prepared from {data_root}/vtab-1k
    from vit.plan.tasks import VTAB_TASKS, vtab_task

    VTAB_TASK_LIST = [vtab_task(t) for t in config["vtab"].get("tasks") or [t.folder for t in VTAB_TASKS]]
    VTAB_DATA = [f"results/data/vtab_{t.folder}/manifest.json" for t in VTAB_TASK_LIST]
    for _t in VTAB_TASK_LIST:
        config["datasets"][f"vtab_{_t.folder}"] = {"source": "vtab1k", "task": _t.folder, "group": _t.group,
                                                  "label": _t.paper, "size": config["vtab"]["image_size"]}
EXPERIMENT = "pretrain" in config and "finetune" in config  # the pre-train -> fine-tune grid
# Released weights (pretrain.released: model -> upstream -> timm tag) are fine-tuned like our own
# checkpoints; their upstream becomes a dataset entry (never prepared) so tables can label it.
RELEASED = plan.released(config)
for (_m, _up), _spec in RELEASED.items():
    config["datasets"].setdefault(_up, {"source": "released", "group": "upstream", "label": _spec.get("label", _up),
                                        "stands_for": _spec.get("pretrained_on", _spec.get("label", _up)),
                                        "train": _spec.get("examples", 0)})
# Noisy Student: each iteration's pseudo-labelled set becomes a dataset entry, made by rule
# pseudo_label (not prepare) from its teacher's checkpoint, the labelled set and the unlabelled pool.
NOISY_STUDENT = {it["dataset"]: it for it in plan.noisy_student(config)}
for _name, _it in NOISY_STUDENT.items():
    _lab = config["datasets"].get(_it["labelled"], {})
    config["datasets"].setdefault(_name, {
        "source": "noisy_student", "group": "upstream", "train": _lab.get("train", 0),
        "label": f"{_lab.get('label', _it['labelled'])} + pseudo-labelled pool (NS iteration {_it['iteration']})",
        "stands_for": "ImageNet + pseudo-labelled JFT-300M"})


with open(os.path.join(workflow.basedir, "schemas", "config.schema.yaml")) as _f:
    TRAIN_SCHEMA = yaml.safe_load(_f)["$defs"]["train"]


def _check_config():
    """Cross-references between sections, which a JSON schema cannot check."""
    departures.check(config)  # e.g. an ImageNet-21k release whose class count contradicts `classes`
    datasets, models = config["datasets"], config["models"]
    if not EXPERIMENT:
        return

    def need(kind, name, where, known):
        if name not in known:
            raise WorkflowError(f"config: {where} names {kind} {name!r}, which is not defined under "
                                f"'{kind}s:' (defined: {', '.join(known)})")

    for model, upstreams in config["pretrain"].get("runs", {}).items():
        need("model", model, "pretrain.runs", models)
        for up in upstreams:
            need("dataset", up, f"pretrain.runs.{model}", datasets)
            need("dataset", up, "pretrain.epochs (no epochs for it)", config["pretrain"].get("epochs", {}))
    for model in config["pretrain"].get("per_model", {}):
        need("model", model, "pretrain.per_model", models)
    for model, _up in RELEASED:
        need("model", model, "pretrain.released", models)
    train_keys = set(TRAIN_SCHEMA["properties"]) | {"resolutions", "lr_grid", "dev_fraction"}
    for task, settings in config["finetune"].get("per_task", {}).items():
        if task not in config["finetune"]["tasks"]:
            raise WorkflowError(f"config: finetune.per_task names {task!r}, which is not in finetune.tasks "
                                f"({', '.join(config['finetune']['tasks'])})")
        for key in sorted(set(settings) - train_keys):
            raise WorkflowError(f"config: finetune.per_task.{task}.{key} is not a setting; "
                                f"valid: {', '.join(sorted(train_keys))}")
        for err in jsonschema.Draft202012Validator(TRAIN_SCHEMA).iter_errors(
                {k: v for k, v in settings.items() if k in TRAIN_SCHEMA["properties"]}):
            raise WorkflowError(f"config: finetune.per_task.{task}.{'.'.join(map(str, err.path))}: {err.message}")
    for task in config["finetune"]["tasks"]:
        need("dataset", task, "finetune.tasks", datasets)
        if datasets[task]["group"] == "upstream":
            raise WorkflowError(f"config: finetune.tasks names {task!r}, an upstream set; "
                                f"give it a VTAB group (natural, specialized, structured)")
    for model in config["finetune"]["from_scratch"]:
        need("model", model, "finetune.from_scratch", models)
    if "noisy_student" in config:
        ns = config["noisy_student"]
        need("model", ns["student"], "noisy_student.student", models)
        need("dataset", ns["pool"], "noisy_student.pool", datasets)
        if ns["teacher"]["upstream"] not in config["pretrain"].get("runs", {}).get(ns["teacher"]["model"], []):
            raise WorkflowError(f"config: noisy_student.teacher {ns['teacher']} is not a run of pretrain.runs "
                                f"(iteration 1's teacher is one of this config's pre-trained checkpoints)")
    checkpoints = set(plan.pretrain_runs(config)) | set(RELEASED)
    for model, ups in config["finetune"].get("posemb_ablation", {}).items():
        for up in ups:
            if (model, up) not in checkpoints:
                raise WorkflowError(f"config: finetune.posemb_ablation.{model} names {up!r}, but {model} is not "
                                    f"pre-trained on it (pretrain.runs) nor released for it (pretrain.released)")
        if not plan.is_vit(plan.model_spec(config, model)):
            raise WorkflowError(f"config: finetune.posemb_ablation names {model!r}, which has no position "
                                f"embeddings to interpolate (a ViT is needed)")
    for model, up in plan.hyperrule_runs(config):
        if (model, up) not in checkpoints:
            raise WorkflowError(f"config: finetune.hyperrule.runs.{model} names {up!r}, but {model} is not "
                                f"pre-trained on it (pretrain.runs) nor released for it (pretrain.released)")
    override = config["finetune"].get("hyperrule", {}).get("train", {})
    for err in jsonschema.Draft202012Validator(TRAIN_SCHEMA).iter_errors(override):
        raise WorkflowError(f"config: finetune.hyperrule.train.{'.'.join(map(str, err.path))}: {err.message}")

_check_config()

ENV = "../envs/vit.yaml"

PRETRAIN_RUNS = plan.pretrain_runs(config) if EXPERIMENT else []
FINETUNE_RUNS = plan.finetune_runs(config) if EXPERIMENT else []
INSPECT_RUNS = plan.inspect_runs(config) if EXPERIMENT else []
ABLATION_RUNS = plan.posemb_ablation_runs(config) if EXPERIMENT else []
HYPERRULE_RUNS = plan.hyperrule_runs(config) if EXPERIMENT else []


def launch(wildcards, resources):
    """`python`, or torchrun with one process per GPU when the profile gives the job several
    (single node; torch.distributed DDP, NCCL on GPUs). A job with GPUs starts through vit.train.gpus, which
    gives it free devices of its own (CUDA_VISIBLE_DEVICES): `--resources gpu=N` on a workstation runs
    GPU jobs side by side, none sharing a device."""
    gpus = int(resources.get("gpu", 0) or 0)
    run = f"torchrun --standalone --nnodes=1 --nproc_per_node={gpus}" if gpus > 1 else "python"
    return f"python -m vit.train.gpus --count={gpus} -- {run}" if gpus else run


def model_spec(model):
    return plan.model_spec(config, model)


def prepare_args(wildcards):
    spec = {k: v for k, v in config["datasets"][wildcards.dataset].items() if k not in ("label", "stands_for")}
    if spec["source"] in ("vtab1k", "imagenet", "imagefolder", "torchvision", "fashion_mnist"):
        spec["data_root"] = config["data_root"]
    return render(spec)


def prepare_threads(wildcards):
    """Image sources decode in parallel worker processes; procedural sources use one core."""
    external = ("vtab1k", "imagenet", "imagefolder", "torchvision")
    return 4 if config["datasets"][wildcards.dataset]["source"] in external else 1


def pretrain_args(wildcards):
    settings = plan.pretrain_settings(config, wildcards.model, wildcards.upstream)
    tags = {"model": wildcards.model, "upstream": wildcards.upstream, "stage": "pretrain"}
    return render(dict(settings, model=wildcards.model, model_args=model_spec(wildcards.model), tags=tags))


def finetune_inputs(wildcards):
    inputs = {"tasks": [f"results/data/{t}/manifest.json" for t in config["finetune"]["tasks"]]}
    if (wildcards.model, wildcards.upstream) in RELEASED:
        inputs["init"] = f"results/released/{wildcards.model}/{wildcards.upstream}/checkpoint.pt"
    elif wildcards.upstream != "scratch":
        inputs["init"] = f"results/pretrain/{wildcards.model}/{wildcards.upstream}/checkpoint.pt"
    return inputs


def prepared_pattern():
    """prepare's `dataset` wildcard: every name but the pseudo-labelled sets (rule pseudo_label)."""
    # the lookahead sees the rest of the path too ("ns1_x/manifest.json"), so a name ends at a non-word character
    return "(?!(?:" + "|".join(NOISY_STUDENT) + ")(?![A-Za-z0-9_]))[A-Za-z0-9_]+" if NOISY_STUDENT else "[A-Za-z0-9_]+"


def pseudo_label_inputs(wildcards):
    it = NOISY_STUDENT[wildcards.dataset]
    return {"teacher": checkpoint_path(*it["teacher"]), "labelled": f"results/data/{it['labelled']}/manifest.json",
            "pool": f"results/data/{it['pool']}/manifest.json"}


def checkpoint_path(model, upstream):
    kind = "released" if (model, upstream) in RELEASED else "pretrain"
    return f"results/{kind}/{model}/{upstream}/checkpoint.pt"


def inspect_inputs(wildcards):
    """The checkpoint, and images to look at: the upstream's val split where we prepared the upstream
    set, else the first downstream task's test split (released weights)."""
    up = wildcards.upstream
    data = up if (wildcards.model, up) not in RELEASED else config["finetune"]["tasks"][0]
    return {"ckpt": checkpoint_path(wildcards.model, up), "data": f"results/data/{data}/manifest.json"}


def inspect_split(wildcards):
    return "val" if (wildcards.model, wildcards.upstream) not in RELEASED else config["finetune"]["train"]["test_split"]


def ablation_args(wildcards):
    """The main grid above the checkpoint's resolution, with the other interpolation mode."""
    grid = plan.finetune_grid(config)
    res = plan.pretrain_resolution(config, wildcards.model, wildcards.upstream)
    grid["resolutions"] = [r for r in grid["resolutions"] if r != res]
    return render(dict(grid, **dict(config["finetune"]["train"], posemb_interp=wildcards.mode),
                       init=checkpoint_path(wildcards.model, wildcards.upstream)))


def hyperrule_args(wildcards):
    """The main grid's tasks and seeds with the BiT-HyperRule's settings (vit.train.finetune --recipe)."""
    return render(dict(plan.hyperrule_args(config), init=checkpoint_path(wildcards.model, wildcards.upstream)))


def finetune_args(wildcards, input):
    # tasks x resolutions x seeds, and Table 4's dev-split learning-rate choice and per-task settings
    grid = plan.finetune_grid(config)
    if wildcards.upstream == "scratch":
        grid["model_args"] = model_spec(wildcards.model)
    else:
        grid["init"] = input.init
    return render(dict(grid, **config["finetune"]["train"]))


def released_args(wildcards):
    spec = RELEASED[(wildcards.model, wildcards.upstream)]
    return render({k: spec[k] for k in ("weights", "file") if k in spec})


def pretrain_files(name):
    return [f"results/pretrain/{m}/{up}/{name}" for m, up in PRETRAIN_RUNS]


def finetune_files():
    return [f"results/finetune/{m}/{up}/runs.json" for m, up in FINETUNE_RUNS]


def benchmark_files():
    return ([f"results/benchmarks/pretrain/{m}-{up}.tsv" for m, up in PRETRAIN_RUNS]
            + [f"results/benchmarks/finetune/{m}-{up}.tsv" for m, up in FINETUNE_RUNS]
            + [f"results/benchmarks/finetune_posemb_{mode}/{m}-{up}.tsv" for m, up, mode in ABLATION_RUNS]
            + [f"results/benchmarks/finetune_hyperrule/{m}-{up}.tsv" for m, up in HYPERRULE_RUNS])


def ablation_files():
    return [f"results/ablation/posemb_{mode}/{m}/{up}/runs.json" for m, up, mode in ABLATION_RUNS]


def hyperrule_files():
    return [f"results/hyperrule/{m}/{up}/runs.json" for m, up in HYPERRULE_RUNS]


def inspect_files():
    return [f"results/inspect/{m}/{up}/inspect.npz" for m, up in INSPECT_RUNS]


# the report's figures; the paper's Figs. 6-7 need a ViT, the resolution ablation its config entry
FIGURES = (["transfer", "size_ladder", "resolution", "compute", "pretrain_curves"]
           + (["attention_rollout", "embedding_filters", "posemb_similarity", "attention_distance"]
              if INSPECT_RUNS else [])
           + (["resolution_ablation"] if ABLATION_RUNS else []))


def bench_args():
    """Each model of the preset at its pre-training shape."""
    train = config.get("pretrain", {}).get("train", {})
    shape = {"img_size": train.get("img_size", 32), "batch_size": train.get("batch_size", 128)}
    return render(dict(models={m: model_spec(m) for m in config["models"]}, **shape))


def all_targets():
    targets = ["results/summary.parquet", "reports/report.md", "reports/table2.md"] if EXPERIMENT else []
    if "vtab" in config:
        targets.append("reports/vtab.md")
    return targets
