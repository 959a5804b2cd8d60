# Helpers shared by the rules: the config's plan (vit.plan: schema, defaults, implied datasets and
# cross-checks, once), target lists, and rendering of a stage's settings as `--key=value` (vit.cli
# parses them back into the stage's dataclass). Parsing stays torch-free: vit.plan imports no torch.
from vit import plan
from vit.cli import render  # dict -> shell-quoted `--key=value` words

PLAN = plan.load(config)
config = PLAN.config  # rules that read `config` see the resolved one (defaults, implied datasets)
EXPERIMENT = PLAN.experiment  # the pre-train -> fine-tune grid
ENV = "../envs/vit.yaml"

VTAB_TASK_LIST = PLAN.vtab_tasks
VTAB_DATA = [f"results/data/vtab_{t.folder}/manifest.json" for t in VTAB_TASK_LIST]
RELEASED = PLAN.released
NOISY_STUDENT = PLAN.pseudo_sets  # pseudo-labelled set -> its Noisy Student iteration
# prepare's `dataset` wildcard: every name but the pseudo-labelled sets (rule pseudo_label); the lookahead
# sees the rest of the path too ("ns1_x/manifest.json"), so a name ends at a non-word character
PREPARED = f"(?!(?:{'|'.join(NOISY_STUDENT)})(?![A-Za-z0-9_]))[A-Za-z0-9_]+" if NOISY_STUDENT else "[A-Za-z0-9_]+"
TASK_DATA = [f"results/data/{t}/manifest.json" for t in PLAN.finetune_tasks]
# the report's figures; the paper's Figs. 6-7 need a ViT, the resolution ablation its config entry
FIGURES = (["transfer", "size_ladder", "resolution", "compute", "pretrain_curves"]
           + (["attention_rollout", "embedding_filters", "posemb_similarity", "attention_distance"]
              if PLAN.inspect_runs else []) + (["resolution_ablation"] if PLAN.posemb_ablation_runs else []))


def launch(wildcards, resources):
    """`python`, or torchrun with one process per GPU when the profile gives the job several (one node).
    vit.train.gpus gives a GPU job free devices of its own, so `--resources gpu=N` runs them side by side."""
    gpus = int(resources.get("gpu", 0) or 0)
    run = f"torchrun --standalone --nnodes=1 --nproc_per_node={gpus}" if gpus > 1 else "python"
    return f"python -m vit.train.gpus --count={gpus} -- {run}" if gpus else run


def checkpoint_path(model, upstream):
    kind = "released" if (model, upstream) in RELEASED else "pretrain"
    return f"results/{kind}/{model}/{upstream}/checkpoint.pt"


def prepare_args(wildcards):
    return render(PLAN.prepare_settings(wildcards.dataset))


def prepare_threads(wildcards):
    # image sources decode in parallel worker processes; procedural sources use one core
    return 4 if PLAN.dataset(wildcards.dataset)["source"] in plan.IMAGE_SOURCES else 1


def pseudo_label_inputs(wildcards):
    it = NOISY_STUDENT[wildcards.dataset]
    return {"teacher": checkpoint_path(*it["teacher"]), "labelled": f"results/data/{it['labelled']}/manifest.json",
            "pool": f"results/data/{it['pool']}/manifest.json"}


def chain_priority(wildcards):
    return 1 if PLAN.on_chain(wildcards.model, wildcards.upstream) else 0


def pretrain_args(wildcards):
    return render(PLAN.pretrain_job(wildcards.model, wildcards.upstream))


def released_args(wildcards):
    spec = RELEASED[(wildcards.model, wildcards.upstream)]
    return render({k: spec[k] for k in ("weights", "file") if k in spec})


def finetune_inputs(wildcards):
    # from scratch: no checkpoint
    init = {} if wildcards.upstream == "scratch" else {"init": checkpoint_path(wildcards.model, wildcards.upstream)}
    return {"tasks": TASK_DATA, **init}


def finetune_args(wildcards, input):
    return render(PLAN.finetune_job(wildcards.model, wildcards.upstream, input.get("init")))


def ablation_args(wildcards, input):
    return render(PLAN.ablation_job(wildcards.model, wildcards.upstream, wildcards.mode, input.init))


def hyperrule_args(wildcards, input):
    return render(dict(PLAN.hyperrule_args(), init=input.init))


def inspect_inputs(wildcards):
    data, _split = PLAN.inspect_images(wildcards.model, wildcards.upstream)
    return {"ckpt": checkpoint_path(wildcards.model, wildcards.upstream), "data": f"results/data/{data}/manifest.json"}


def inspect_split(wildcards):
    return PLAN.inspect_images(wildcards.model, wildcards.upstream)[1]


def pretrain_files(name):
    return [f"results/pretrain/{m}/{up}/{name}" for m, up in PLAN.pretrain_runs]


def finetune_files():
    return [f"results/finetune/{m}/{up}/runs.json" for m, up in PLAN.finetune_runs]


def ablation_files():
    return [f"results/ablation/posemb_{mode}/{m}/{up}/runs.json" for m, up, mode in PLAN.posemb_ablation_runs]


def hyperrule_files():
    return [f"results/hyperrule/{m}/{up}/runs.json" for m, up in PLAN.hyperrule_runs]


def inspect_files():
    return [f"results/inspect/{m}/{up}/inspect.npz" for m, up in PLAN.inspect_runs]


def benchmark_files():
    return ([f"results/benchmarks/pretrain/{m}-{up}.tsv" for m, up in PLAN.pretrain_runs]
            + [f"results/benchmarks/finetune/{m}-{up}.tsv" for m, up in PLAN.finetune_runs]
            + [f"results/benchmarks/finetune_posemb_{mode}/{m}-{up}.tsv" for m, up, mode in PLAN.posemb_ablation_runs]
            + [f"results/benchmarks/finetune_hyperrule/{m}-{up}.tsv" for m, up in PLAN.hyperrule_runs])


def all_targets():
    targets = ["results/summary.parquet", "reports/report.md", "reports/table2.md"] if EXPERIMENT else []
    return targets + (["reports/vtab.md"] if "vtab" in config else [])

