"""A config's checks, run once by `vit.plan.load`: the JSON schema (vit/plan/config.schema.yaml, with
its defaults filled in as Snakemake's `validate` does), then the cross-references between sections that a
schema cannot express. Every failure is a vit.errors.ConfigError naming the key and the fix. `read_config`
reads a config file (a damaged one is a vit.errors.DataError naming it), for the workflow and the stages.
"""
from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import jsonschema

from vit.errors import ConfigError, DataError
from vit.logs import read_yaml
from vit.plan.runs import Plan

# ImageNet-21k releases and their class counts: the paper's "21k classes, 14M images" fits fall11
RELEASES = {"fall11": 21_841, "winter21": 19_167}
PER_TASK_KEYS = ("resolutions", "lr_grid", "dev_fraction")  # finetune.per_task keys beyond a train setting


def schema() -> dict:
    """The config's JSON schema, shipped in the package beside this module."""
    return read_yaml(resources.files("vit.plan").joinpath("config.schema.yaml"),
                     "restore it with `git checkout vit/plan/config.schema.yaml` (or reinstall the package: "
                     "`pip install -e .`)")


def read_config(path: str) -> dict:
    """A config file (config.yaml, configs/<preset>.yaml) as a dict, not yet checked (`vit.plan.load` does
    that); a file that is not YAML, or not a mapping, is a DataError that names it. So is one that ends
    mid-line: YAML cut short often still parses, into a config without its last sections, which would
    run less than asked without a word."""
    fix = f"fix it, or restore it with `git checkout {path}` (`git diff {path}` shows what changed)"
    config = read_yaml(path, fix)
    if not Path(path).read_bytes().endswith(b"\n"):
        raise DataError(f"{path}: damaged or truncated (it ends mid-line, as a file cut short does; if it was "
                        f"written so, end it with a newline); {fix}")
    return config


def _with_defaults(validator_class):
    """A validator that fills each absent property's schema default (a copy) before validating it:
    what snakemake.utils.validate does with set_default=True."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if "default" in prop:
                    instance.setdefault(name, copy.deepcopy(prop["default"]))
        yield from validate_properties(validator, properties, instance, subschema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _where(error) -> str:
    return ".".join(map(str, error.absolute_path)) or "(top level)"


def validate(config: dict) -> None:
    """Check `config` against the schema and fill the schema's defaults into it (in place)."""
    full = schema()
    errors = list(_with_defaults(jsonschema.Draft202012Validator)(full).iter_errors(config))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        fix = ""
        if err.validator == "additionalProperties" and "properties" in err.schema:
            fix = f"; valid keys: {', '.join(err.schema['properties'])}"
        raise ConfigError(f"config: {_where(err)}: {err.message}{fix} (vit/plan/config.schema.yaml)")


def cross_check(plan: Plan) -> None:
    """The cross-references between sections; the run lists are only checked where the config runs the
    pre-train -> fine-tune grid."""
    _check_releases(plan.config)
    if not plan.experiment:
        return
    _check_pretrain(plan)
    _check_finetune(plan)
    _check_noisy_student(plan)
    _check_second_fine_tunes(plan)


def _need(kind: str, name: str, where: str, known) -> None:
    if name not in known:
        raise ConfigError(f"config: {where} names {kind} {name!r}, which is not defined under "
                          f"'{kind}s:' (defined: {', '.join(known)})")


def _check_releases(config: dict) -> None:
    """An ImageNet-21k release that contradicts the class count."""
    for name, d in config.get("datasets", {}).items():
        release, classes = d.get("release"), d.get("classes")
        if release is None:
            continue
        if release not in RELEASES:
            raise ConfigError(f"datasets.{name}.release={release!r}: expected one of {', '.join(RELEASES)}")
        if classes is not None and classes != RELEASES[release]:
            other = [r for r, n in RELEASES.items() if n == classes]
            raise ConfigError(f"datasets.{name}: release {release} has {RELEASES[release]:,} classes, not "
                              f"classes: {classes}; set classes: {RELEASES[release]}"
                              + (f" or release: {other[0]}" if other else ""))


def _check_pretrain(plan: Plan) -> None:
    pre, datasets, models = plan.config["pretrain"], plan.config["datasets"], plan.config["models"]
    for model, upstreams in pre.get("runs", {}).items():
        _need("model", model, "pretrain.runs", models)
        for up in upstreams:
            _need("dataset", up, f"pretrain.runs.{model}", datasets)
            _need("dataset", up, "pretrain.epochs (no epochs for it)", pre.get("epochs", {}))
    for model in pre.get("per_model", {}):
        _need("model", model, "pretrain.per_model", models)
    for model, _up in plan.released:
        _need("model", model, "pretrain.released", models)


def _check_finetune(plan: Plan) -> None:
    ft, datasets = plan.config["finetune"], plan.config["datasets"]
    train = schema()["$defs"]["train"]
    valid = set(train["properties"]) | set(PER_TASK_KEYS)
    for task, settings in ft.get("per_task", {}).items():
        if task not in ft["tasks"]:
            raise ConfigError(f"config: finetune.per_task names {task!r}, which is not in finetune.tasks "
                              f"({', '.join(ft['tasks'])})")
        for key in sorted(set(settings) - valid):
            raise ConfigError(f"config: finetune.per_task.{task}.{key} is not a setting; "
                              f"valid: {', '.join(sorted(valid))}")
        for err in jsonschema.Draft202012Validator(train).iter_errors(
                {k: v for k, v in settings.items() if k in train["properties"]}):
            raise ConfigError(f"config: finetune.per_task.{task}.{_where(err)}: {err.message}")
    for task in ft["tasks"]:
        _need("dataset", task, "finetune.tasks", datasets)
        if datasets[task]["group"] == "upstream":
            raise ConfigError(f"config: finetune.tasks names {task!r}, an upstream set; "
                              f"give it a VTAB group (natural, specialized, structured)")
    for model in ft["from_scratch"]:
        _need("model", model, "finetune.from_scratch", plan.config["models"])
    for model in ft.get("per_model", {}):
        _need("model", model, "finetune.per_model", plan.config["models"])
    runs = set(plan.finetune_runs)
    for model, ups in ft.get("higher_resolutions_for", {}).items():
        for up in ups:
            if (model, up) not in runs:
                raise ConfigError(f"config: finetune.higher_resolutions_for.{model} names {up!r}, but {model} is not "
                                  f"fine-tuned from it; fine-tuned checkpoints of {model}: "
                                  f"{', '.join(u for m, u in sorted(runs) if m == model) or 'none'}")


def _check_noisy_student(plan: Plan) -> None:
    ns = plan.config.get("noisy_student")
    if not ns:
        return
    _need("model", ns["student"], "noisy_student.student", plan.config["models"])
    _need("dataset", ns["pool"], "noisy_student.pool", plan.config["datasets"])
    if ns["teacher"]["upstream"] not in plan.config["pretrain"].get("runs", {}).get(ns["teacher"]["model"], []):
        raise ConfigError(f"config: noisy_student.teacher {ns['teacher']} is not a run of pretrain.runs "
                          f"(iteration 1's teacher is one of this config's pre-trained checkpoints)")


def _check_second_fine_tunes(plan: Plan) -> None:
    """The resolution ablation and the BiT-HyperRule fine-tune checkpoints that exist here; the ablation
    needs position embeddings to interpolate."""
    checkpoints = set(plan.checkpoints)
    for model, ups in plan.config["finetune"].get("posemb_ablation", {}).items():
        for up in ups:
            if (model, up) not in checkpoints:
                raise ConfigError(f"config: finetune.posemb_ablation.{model} names {up!r}, but {model} is not "
                                  f"pre-trained on it (pretrain.runs) nor released for it (pretrain.released)")
        if not plan.is_vit(model):
            raise ConfigError(f"config: finetune.posemb_ablation names {model!r}, which has no position "
                              f"embeddings to interpolate (a ViT is needed)")
    for model, up in plan.hyperrule_runs:
        if (model, up) not in checkpoints:
            raise ConfigError(f"config: finetune.hyperrule.runs.{model} names {up!r}, but {model} is not "
                              f"pre-trained on it (pretrain.runs) nor released for it (pretrain.released)")
    for model in plan.config["pretrain"].get("fewshot", []):
        if model not in plan.config["pretrain"].get("runs", {}):
            raise ConfigError(f"config: pretrain.fewshot names {model!r}, which pretrain.runs does not pre-train "
                              f"(its checkpoints are what the probes read)")
