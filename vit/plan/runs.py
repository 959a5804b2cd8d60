"""The Plan of a resolved config: what runs (pre-training, fine-tuning, ablations, Noisy Student) and each
job's settings, derived from the config in one place. Torch-free. `vit.plan.load` builds it.
"""
from __future__ import annotations

from dataclasses import dataclass

from vit.plan.tasks import VTAB_TASKS, VtabTask, vtab_task

LABEL_KEYS = ("label", "paper_row")  # model keys that only label a model in tables
POSEMB_INTERP = ("bicubic", "bilinear_corners")  # vit.models.resample_pos_embed's modes
# sources of real images under data_root (vit.data.prepare decodes them in worker processes)
IMAGE_SOURCES = ("vtab1k", "imagenet", "imagefolder", "torchvision")
DATA_ROOT_SOURCES = (*IMAGE_SOURCES, "fashion_mnist")  # sources that read files under data_root
# the Snakemake rule that runs each training stage (workflow/rules/train.smk, vtab.smk), by the stage
# names vit.account.cost prices its jobs under
RULES = {"pretrain": "pretrain", "finetune": "finetune", "ablation": "finetune_posemb",
         "hyperrule": "finetune_hyperrule", "vtab_sweep": "vtab_sweep", "vtab_final": "vtab_final"}


# `make bench`'s ViTs beside the configs' own: an 8x8 patch grid at 32 px (patch 4) at three widths
BENCH_VITS = {f"vit4_d{d}": {"arch": "vit", "patch_size": 4, "embed_dim": d, "depth": 6, "num_heads": d // 32}
              for d in (64, 128, 192)}


@dataclass(frozen=True)
class Plan:
    """A config resolved by `load`: `config` is the config with its defaults filled and the datasets it
    implies added (read it, never change it); the run lists and settings below are derived from it."""
    config: dict

    @property
    def experiment(self) -> bool:
        """Whether the config runs the pre-train -> fine-tune grid (else only VTAB-1k or benchmarks)."""
        return "pretrain" in self.config and "finetune" in self.config

    def dataset(self, name: str) -> dict:
        return self.config["datasets"][name]

    def label(self, dataset: str) -> str:
        """A dataset's name in tables."""
        return self.config["datasets"].get(dataset, {}).get("label", dataset)

    def model_label(self, model: str) -> str:
        """A model's name in tables."""
        return self.config["models"].get(model, {}).get("label", model)

    def model_spec(self, model: str) -> dict:
        """The model's spec for vit.models.create, without the keys that only label it."""
        return {k: v for k, v in self.config["models"][model].items() if k not in LABEL_KEYS}

    def is_vit(self, model: str) -> bool:
        """A plain ViT (patch tokens + learned position embeddings): what vit.evaluate.inspect can look
        into, and what has position embeddings to interpolate."""
        spec = self.model_spec(model)
        arch, name = spec.get("arch"), str(spec.get("name", ""))
        return (arch == "vit" or (arch == "paper" and name.startswith("ViT"))
                or (arch == "timm" and name.startswith(("vit_", "deit_")) and "_r26_" not in name
                    and "_r50_" not in name))

    def prepare_settings(self, name: str) -> dict:
        """vit.data.prepare's settings for a dataset: its entry without the table-only keys, and
        data_root for the sources that read files under it."""
        spec = {k: v for k, v in self.config["datasets"][name].items() if k not in ("label", "stands_for")}
        if spec["source"] in DATA_ROOT_SOURCES:
            spec["data_root"] = self.config["data_root"]
        return spec

    @property
    def finetune_tasks(self) -> list[str]:
        return self.config.get("finetune", {}).get("tasks", [])

    @property
    def vtab_tasks(self) -> list[VtabTask]:
        """The tasks the `vtab:` section runs: its `tasks`, or all 19 (none without the section)."""
        if "vtab" not in self.config:
            return []
        return [vtab_task(t) for t in self.config["vtab"].get("tasks") or [t.folder for t in VTAB_TASKS]]

    # ----------------------------------------------------------------------------- what runs

    @property
    def pretrain_runs(self) -> list[tuple[str, str]]:
        """(model, upstream) pairs pre-trained here: pretrain.runs, then the Noisy Student students."""
        runs = self.config.get("pretrain", {}).get("runs", {})
        return [(m, up) for m, ups in runs.items() for up in ups] + [(it["student"], it["dataset"])
                                                                     for it in self.noisy_student]

    @property
    def noisy_student(self) -> list[dict]:
        """The Noisy Student iterations (config `noisy_student`; Xie et al. 2020): iteration i pseudo-labels
        the pool with its teacher into dataset `ns<i>_<labelled>` (labelled set + pseudo-labelled images,
        vit.data.pseudo_label) and pre-trains the student on it; the student is the next iteration's
        teacher. Iteration 1's teacher is a checkpoint of pretrain.runs."""
        ns = self.config.get("noisy_student")
        if not ns:
            return []
        labelled = ns["teacher"]["upstream"]
        teacher, out = (ns["teacher"]["model"], labelled), []
        for i in range(1, ns.get("iterations", 2) + 1):
            name = f"ns{i}_{labelled}"
            out.append({"iteration": i, "dataset": name, "teacher": teacher, "student": ns["student"],
                        "labelled": labelled, "pool": ns["pool"]})
            teacher = (ns["student"], name)
        return out

    def on_chain(self, model: str, upstream: str) -> bool:
        """Whether a checkpoint is on the Noisy Student chain (teacher -> pseudo-labels -> student -> ...), the
        DAG's longest sequence of jobs, which the workflow starts first so that it does not end the run alone."""
        return any((model, upstream) in (it["teacher"], (it["student"], it["dataset"])) for it in self.noisy_student)

    @property
    def pseudo_sets(self) -> dict[str, dict]:
        """Noisy Student's pseudo-labelled dataset name -> its iteration (see `noisy_student`)."""
        return {it["dataset"]: it for it in self.noisy_student}

    @property
    def released(self) -> dict[tuple[str, str], dict]:
        """(model, upstream) -> released weights spec (pretrain.released), fine-tuned instead of pre-trained."""
        return {(m, up): spec for m, ups in self.config.get("pretrain", {}).get("released", {}).items()
                for up, spec in ups.items()}

    @property
    def checkpoints(self) -> list[tuple[str, str]]:
        """(model, upstream) of every checkpoint there is to fine-tune: pre-trained here or released."""
        return list(dict.fromkeys(self.pretrain_runs + list(self.released)))

    @property
    def finetune_runs(self) -> list[tuple[str, str]]:
        """(model, upstream) pairs whose fine-tuning grid runs: our checkpoints, released weights, and the
        from-scratch baselines (upstream "scratch")."""
        return (self.pretrain_runs + list(self.released)
                + [(m, "scratch") for m in self.config.get("finetune", {}).get("from_scratch", [])])

    @property
    def upstreams(self) -> list[str]:
        """Upstream sets, pre-trained on here or behind released weights, smallest first."""
        pseudo = self.pseudo_sets  # a student's set is not an upstream size
        names = {up for _, up in self.pretrain_runs if up not in pseudo} | {up for _, up in self.released}
        return sorted(names, key=lambda u: (self.config["datasets"][u].get("train", 0), u))

    @property
    def inspect_runs(self) -> list[tuple[str, str]]:
        """(model, upstream) of every supervised ViT on its largest upstream set: the paper's Figs. 6-7 come
        from its biggest supervised pre-training (JFT-300M); ours from the largest set each ViT saw."""
        order = self.upstreams
        largest: dict[str, str] = {}
        for model, up in self.pretrain_runs + list(self.released):
            if up not in order or self.self_supervised(model) or not self.is_vit(model):
                continue
            if order.index(up) >= order.index(largest.get(model, up)):
                largest[model] = up
        return sorted(largest.items())

    @property
    def fewshot_runs(self) -> list[tuple[str, str]]:
        """(model, upstream) of the pre-training checkpoints probed with few-shot linear classifiers
        (pretrain.fewshot: models; paper Fig. 4's measure of the size ladder)."""
        wanted = self.config.get("pretrain", {}).get("fewshot", [])
        return [(m, up) for m, up in self.pretrain_runs if m in wanted]

    @property
    def posemb_ablation_runs(self) -> list[tuple[str, str, str]]:
        """(model, upstream, mode) of the resolution ablation (finetune.posemb_ablation: model -> upstreams):
        the same fine-tunes above the pre-training resolution with every other position-embedding
        interpolation mode than the main runs'."""
        ft = self.config.get("finetune", {})
        main = ft.get("train", {}).get("posemb_interp", "bicubic")
        return [(m, up, mode) for m, ups in ft.get("posemb_ablation", {}).items() for up in ups
                for mode in POSEMB_INTERP if mode != main]

    @property
    def hyperrule_runs(self) -> list[tuple[str, str]]:
        """(model, upstream) fine-tuned a second time with the BiT-HyperRule (finetune.hyperrule.runs):
        BiT's own recipe, behind Table 2's BiT row (App. B.1.1 runs ResNets with both setups)."""
        runs = self.config.get("finetune", {}).get("hyperrule", {}).get("runs", {})
        return [(m, up) for m, ups in runs.items() for up in ups]

    # ----------------------------------------------------------------------------- settings

    def self_supervised(self, model: str) -> bool:
        """Pre-trained without labels (pretrain.per_model objective other than classify; paper sec. 4.6)."""
        own = self.config.get("pretrain", {}).get("per_model", {}).get(model, {})
        return own.get("objective", "classify") != "classify"

    def pretrain_settings(self, model: str, upstream: str) -> dict:
        """vit.train settings of one pre-training run: pretrain.train, the upstream's epochs, then the
        model's own values (pretrain.per_model: Table 3's per-model learning rates, epochs)."""
        pre, ns = self.config["pretrain"], self.pseudo_sets
        own = pre.get("per_model", {}).get(model, {})
        if upstream in ns:  # a student: the labelled set's epochs, with the student's noise settings
            student = self.config["noisy_student"]
            soft = {"soft_targets": True} if student.get("labels") == "soft" else {}
            return {**pre["train"], "epochs": pre["epochs"][ns[upstream]["labelled"]], **own, **soft,
                    **student.get("train", {}), **self._pretrain_seed}
        return {**pre["train"], "epochs": pre["epochs"][upstream], **own, **self._pretrain_seed}

    @property
    def _pretrain_seed(self) -> dict:
        """pretrain.seed, passed only where it is not the default 0: the runs of the default seed keep the
        settings, and so the hashes and results, they had before the key existed."""
        seed = self.config["pretrain"].get("seed", 0)
        return {"seed": seed} if seed else {}

    def pretrain_resolution(self, model: str, upstream: str) -> int:
        """The resolution a checkpoint was trained at (released weights: their `img_size`, 224 by default)."""
        spec = self.released.get((model, upstream))
        if spec is not None:
            return spec.get("img_size", 224)
        return self.pretrain_settings(model, upstream).get("img_size", 224)

    def finetune_resolutions(self, model: str, upstream: str) -> list[int]:
        """The resolutions a checkpoint's grid fine-tunes at: every one of finetune.resolutions, or only the
        lowest (the pre-training resolution) where finetune.higher_resolutions_for is given and does not
        list (model, upstream): above it a ViT's step costs 2-3x, and only claim (c) and Table 2 read it."""
        ft = self.config["finetune"]
        only = ft.get("higher_resolutions_for")
        if only is None or upstream in only.get(model, []):
            return list(ft["resolutions"])
        return [min(ft["resolutions"])]

    @property
    def transfer_resolution(self) -> int:
        """The resolution that comparisons across checkpoints read (the size ladder, the frontier, claims b
        and d): the highest where every checkpoint is fine-tuned at every resolution, else the lowest,
        which every checkpoint has."""
        ft = self.config["finetune"]
        return min(ft["resolutions"]) if "higher_resolutions_for" in ft else max(ft["resolutions"])

    def finetune_grid(self) -> dict:
        """The vit.train.finetune settings shared by every fine-tuned checkpoint (besides --init)."""
        ft = self.config["finetune"]
        grid = {"tasks": ft["tasks"], "resolutions": ft["resolutions"], "seeds": self.config["seeds"]}
        grid.update({k: ft[k] for k in ("lr_grid", "dev_fraction", "per_task") if k in ft})
        return grid

    def hyperrule_args(self) -> dict:
        """vit.train.finetune settings of a HyperRule fine-tune besides --init: the main grid's tasks, seeds
        and finetune.train (splits, checkpointing), with the rule's schedule over them; finetune.hyperrule's
        `resolutions` replace the rule's resolution and its `train` settings override the rule's."""
        ft = self.config["finetune"]
        hr = ft["hyperrule"]
        args = {"tasks": ft["tasks"], "seeds": self.config["seeds"], "recipe": "bit_hyperrule",
                "recipe_variant": hr.get("variant", "code"), "recipe_override": hr.get("train", {}), **ft["train"]}
        # a task's own splits still apply (Pets trains on trainval); its Table 4 schedule does not; a task the
        # main grid does not augment keeps its images whole (BiT's rule: no crop or flip that breaks the labels)
        per_task = ft.get("per_task", {})
        kept = {t: {k: v for k, v in per_task.get(t, {}).items() if k.endswith("_split")} for t in ft["tasks"]}
        for t in ft["tasks"]:
            if per_task.get(t, {}).get("augment", ft["train"].get("augment", "none")) == "none":
                kept[t]["augment"] = "none"
        if any(kept.values()):
            args["per_task"] = {t: s for t, s in kept.items() if s}
        if hr.get("resolutions"):
            args["resolutions"] = hr["resolutions"]
        return args

    def stated_splits(self, task: str, train_split: str) -> dict:
        """A task's split sizes as its config entry states them (datasets.<task>.train/val/test), before
        anything is prepared: `train` also counts whichever split the task trains on (Pets: trainval).
        What vit.account.cost and vit.report.departures hand to vit.data.split_size in place of a
        prepared manifest."""
        d = self.config.get("datasets", {}).get(task, {})
        counts = {k: d[k] for k in ("train", "val", "test") if d.get(k)}
        if "train" in counts:
            counts.update({name: d["train"] for name in (p.split("[")[0] for p in train_split.split("+"))
                           if name not in counts})
        return counts

    # ----------------------------------------------------------------------------- a job's settings
    # (the workflow renders them as the stage's `--key=value` words; it adds the paths)

    def pretrain_job(self, model: str, upstream: str) -> dict:
        """vit.train.loop's settings of one pre-training job."""
        tags = {"model": model, "upstream": upstream, "stage": "pretrain"}
        return dict(self.pretrain_settings(model, upstream), model=model, model_args=self.model_spec(model),
                    tags=tags)

    def finetune_job(self, model: str, upstream: str, init: str = "") -> dict:
        """vit.train.finetune's settings of one checkpoint's grid (tasks x resolutions x seeds, Table 4's
        dev-split learning-rate choice, per-task settings); from scratch without `init`."""
        grid = dict(self.finetune_grid(), resolutions=self.finetune_resolutions(model, upstream))
        if upstream == "scratch":
            grid["model_args"] = self.model_spec(model)
        else:
            grid["init"] = init
        return dict(grid, **self.finetune_train(model))

    def finetune_train(self, model: str) -> dict:
        """finetune.train with the model's own values over it (finetune.per_model)."""
        ft = self.config["finetune"]
        return {**ft["train"], **ft.get("per_model", {}).get(model, {})}

    def ablation_job(self, model: str, upstream: str, mode: str, init: str) -> dict:
        """The resolution ablation's job: the main grid above the checkpoint's resolution, with the
        interpolation mode `mode`."""
        grid = dict(self.finetune_grid(), resolutions=self.finetune_resolutions(model, upstream))
        res = self.pretrain_resolution(model, upstream)
        grid["resolutions"] = [r for r in grid["resolutions"] if r != res]
        return dict(grid, **dict(self.finetune_train(model), posemb_interp=mode), init=init)

    def inspect_images(self, model: str, upstream: str) -> tuple[str, str]:
        """(dataset, split) vit.evaluate.inspect looks at for a checkpoint: the upstream's val split
        where the upstream set is prepared here, else (released weights) the first task's test split."""
        if (model, upstream) in self.released:
            return self.finetune_tasks[0], self.config["finetune"]["train"]["test_split"]
        return upstream, "val"

    def pseudo_label_settings(self) -> dict:
        """vit.data.pseudo_label's settings (noisy_student: threshold, per_class, labels)."""
        ns = self.config.get("noisy_student", {})
        return {k: v for k, v in ns.items() if k in ("threshold", "per_class", "labels")}

    def bench_cases(self, extra: dict | None = None, others: dict | None = None) -> dict:
        """vit.account.bench's cases: each pre-trained model at its pre-training shape with its largest run's
        settings, on that run's prepared upstream set (a Noisy Student on its labelled set, hard labels:
        the pseudo-labelled set exists only once its teacher is trained); `extra` adds models by spec
        (name -> spec), trained with the first model's settings; `others` (name -> Plan) adds another
        preset's cases as `<name>_<model>`, on this plan's first upstream set. Each case names its
        dataset; the workflow adds the path."""
        cases = {}
        for model, upstream in self.pretrain_runs:  # later runs of a model are on larger sets: the last wins
            data = self.pseudo_sets[upstream]["labelled"] if upstream in self.pseudo_sets else upstream
            settings = {k: v for k, v in self.pretrain_job(model, upstream).items() if k not in ("tags", "soft_targets")}
            cases[model] = {"dataset": data, "settings": settings}
        if not cases:
            return {}
        first = next(iter(cases.values()))
        for name, spec in (extra or {}).items():
            cases[name] = {"dataset": first["dataset"], "settings": dict(first["settings"], model=name, model_args=spec)}
        for preset, other in (others or {}).items():
            cases.update({f"{preset}_{name}": dict(case, dataset=first["dataset"])
                          for name, case in other.bench_cases().items()})
        return cases
