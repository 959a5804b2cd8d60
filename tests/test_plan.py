"""vit.plan.load, the one reading of a config: every preset loads; the schema and each cross-check stop a
bad config with a ConfigError naming the key; defaults are filled, the implied datasets added, and the
argument is left as it was."""
from __future__ import annotations

import copy
import json

import pytest
import yaml

from conftest import REPO
from vit import plan
from vit.errors import ConfigError

PRESETS = ["config.yaml", *sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").glob("*.yaml"))]


def preset(name: str = "configs/smoke.yaml") -> dict:
    return yaml.safe_load((REPO / name).read_text())


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_and_stays_unchanged(name):
    config = preset(name)
    before = copy.deepcopy(config)
    p = plan.load(config)
    assert config == before  # load works on a copy
    assert p.config is not config and p.config["data_root"] and p.config["seeds"]
    # a stage gets the plan's config from the workflow (--config) and loads it again: the same plan
    again = json.loads(json.dumps(p.config))
    assert plan.load(again).config == p.config and list(plan.load(again).config["datasets"]) == list(p.config["datasets"])


def test_defaults_are_filled():
    config = preset()
    for key in ("data_root", "seeds"):
        config.pop(key, None)
    del config["finetune"]["from_scratch"], config["noisy_student"]["iterations"]
    p = plan.load(config)
    assert p.config["data_root"] == "data" and p.config["seeds"] == [0, 1]
    assert p.config["finetune"]["from_scratch"] == [] and p.config["noisy_student"]["iterations"] == 2
    assert p.config["finetune"]["hyperrule"]["variant"] == "code"
    vtab = plan.load(preset("configs/vtab.yaml")).config["vtab"]
    assert (vtab["image_size"], vtab["resolution"]) == (384, 384)
    # a default is a copy: filling one config leaves the next one's default alone
    p.config["seeds"].append(7)
    assert plan.load(config).config["seeds"] == [0, 1]


def test_implied_datasets_are_added():
    smoke = plan.load(preset())
    assert smoke.dataset("ns1_shapes_l")["source"] == "noisy_student"
    assert smoke.label("ns2_shapes_l") == smoke.label("shapes_l") + " + pseudo-labelled pool (NS iteration 2)"
    transfer = plan.load(preset("configs/paper-transfer.yaml"))
    assert transfer.dataset("in21k")["source"] == "released"
    vtab = plan.load(preset("configs/vtab.yaml"))
    assert len(vtab.vtab_tasks) == 19 and vtab.dataset("vtab_dmlab")["source"] == "vtab1k"


def test_run_lists():
    p = plan.load(preset())
    assert p.experiment and p.upstreams == ["shapes_s", "shapes_l"]
    assert p.pretrain_runs[-2:] == [("effnet_ns", "ns1_shapes_l"), ("effnet_ns", "ns2_shapes_l")]
    assert ("vit", "scratch") in p.finetune_runs and p.inspect_runs == [("vit", "shapes_l")]
    assert p.posemb_ablation_runs == [("vit", "shapes_l", "bilinear_corners")]
    assert p.pretrain_settings("effnet_ns", "ns1_shapes_l")["soft_targets"] is True
    assert not plan.load(preset("configs/vtab.yaml")).experiment


def test_bench_cases_are_each_models_largest_pretraining_run():
    p = plan.load(preset())
    extra = {"wide": {"arch": "vit", "patch_size": 4, "embed_dim": 96, "depth": 2, "num_heads": 3}}
    cases = p.bench_cases(extra=extra)
    assert list(cases) == ["vit", "bit", "effnet", "vit_mpp", "effnet_ns", "wide"]
    assert cases["vit"]["dataset"] == "shapes_l" and cases["vit"]["settings"] == {
        k: v for k, v in p.pretrain_job("vit", "shapes_l").items() if k != "tags"}
    # a student is timed on its labelled set with hard labels: its pseudo-labelled set needs a trained teacher
    assert cases["effnet_ns"]["dataset"] == "shapes_l" and "soft_targets" not in cases["effnet_ns"]["settings"]
    assert cases["effnet_ns"]["settings"]["augment"] == "randaugment"
    assert cases["wide"]["settings"] == dict(cases["vit"]["settings"], model="wide", model_args=extra["wide"])
    default = plan.load(preset("config.yaml"))
    both = default.bench_cases(others={"smoke": p})
    assert both["smoke_vit"] == dict(cases["vit"], dataset=default.bench_cases()["vit"]["dataset"])


def bad(edit, name: str = "configs/smoke.yaml") -> str:
    """The ConfigError message of `name` after `edit`."""
    config = preset(name)
    edit(config)
    with pytest.raises(ConfigError) as e:
        plan.load(config)
    return str(e.value)


def test_a_misspelled_key_is_named_with_the_valid_ones():
    msg = bad(lambda c: c["finetune"]["train"].update(learning_rate=0.1))
    assert "finetune.train" in msg and "learning_rate" in msg and "valid keys:" in msg and "lr" in msg
    assert "finetune.hyperrule.train" in bad(lambda c: c["finetune"]["hyperrule"]["train"].update(lr_rate=1))
    assert "colour" in bad(lambda c: c.update(colour="red"))


def test_a_wrong_type_is_named():
    msg = bad(lambda c: c["finetune"]["train"].update(steps="many"))
    assert "finetune.train.steps" in msg and "'many'" in msg
    assert "datasets.digits.source" in bad(lambda c: c["datasets"]["digits"].update(source="nope"))


@pytest.mark.parametrize("edit, key", [
    (lambda c: c["pretrain"]["runs"].update(vit_h=["shapes_l"]), "pretrain.runs names model 'vit_h'"),
    (lambda c: c["pretrain"]["runs"]["vit"].append("imagenet"), "pretrain.runs.vit names dataset 'imagenet'"),
    (lambda c: c["pretrain"]["epochs"].pop("shapes_s"), "pretrain.epochs (no epochs for it) names dataset 'shapes_s'"),
    (lambda c: c["pretrain"]["per_model"].update(vit_h={"lr": 0.1}), "pretrain.per_model names model 'vit_h'"),
    (lambda c: c["pretrain"].update(released={"vit_h": {"in21k": {"weights": "x"}}}),
     "pretrain.released names model 'vit_h'"),
    (lambda c: c["finetune"].update(per_task={"cifar10": {"steps": 1}}), "finetune.per_task names 'cifar10'"),
    (lambda c: c["finetune"].update(per_task={"digits": {"learning_rate": 1}}), "finetune.per_task.digits.learning_rate"),
    (lambda c: c["finetune"].update(per_task={"digits": {"steps": "many"}}), "finetune.per_task.digits.steps"),
    (lambda c: c["finetune"]["tasks"].append("cifar10"), "finetune.tasks names dataset 'cifar10'"),
    (lambda c: c["finetune"]["tasks"].append("shapes_s"), "finetune.tasks names 'shapes_s', an upstream set"),
    (lambda c: c["finetune"]["from_scratch"].append("vit_h"), "finetune.from_scratch names model 'vit_h'"),
    (lambda c: c["finetune"].update(per_model={"vit_h": {"lr": 0.1}}), "finetune.per_model names model 'vit_h'"),
    (lambda c: c["noisy_student"].update(student="vit_h"), "noisy_student.student names model 'vit_h'"),
    (lambda c: c["noisy_student"].update(pool="jft"), "noisy_student.pool names dataset 'jft'"),
    (lambda c: c["noisy_student"]["teacher"].update(upstream="shapes_s"), "noisy_student.teacher"),
    (lambda c: c["finetune"]["posemb_ablation"].update(vit=["shapes_m"]), "finetune.posemb_ablation.vit names 'shapes_m'"),
    (lambda c: c["finetune"]["posemb_ablation"].update(bit=["shapes_l"]), "finetune.posemb_ablation names 'bit'"),
    (lambda c: c["finetune"]["hyperrule"]["runs"].update(bit=["shapes_m"]), "finetune.hyperrule.runs.bit names 'shapes_m'"),
])
def test_each_cross_check_names_the_key(edit, key):
    assert key in bad(edit)


def test_an_imagenet21k_release_must_match_its_classes():
    def winter21(c):
        c["datasets"]["imagenet21k"]["release"] = "winter21"

    msg = bad(winter21, "configs/paper-i21k.yaml")
    assert "datasets.imagenet21k" in msg and "set classes: 19167 or release: fall11" in msg
    config = preset("configs/paper-i21k.yaml")
    winter21(config)
    config["datasets"]["imagenet21k"]["classes"] = 19167
    plan.load(config)


def test_an_unknown_vtab_task_is_named():
    assert "'nope'" in bad(lambda c: c["vtab"].update(tasks=["dmlab", "nope"]), "configs/vtab.yaml")


def test_higher_resolutions_for_restricts_the_grid_and_the_comparisons():
    """finetune.higher_resolutions_for: the listed checkpoints fine-tune at every resolution, the rest at
    the lowest; comparisons across checkpoints then read the lowest; cost estimates follow the grid."""
    from vit.account import cost

    config = preset()
    full = plan.load(config)
    assert full.transfer_resolution == max(config["finetune"]["resolutions"]) == 48
    config["finetune"]["higher_resolutions_for"] = {"vit": ["shapes_l", "scratch"]}
    p = plan.load(config)
    assert p.finetune_job("vit", "shapes_l", init="x")["resolutions"] == [32, 48]
    assert p.finetune_job("vit", "scratch")["resolutions"] == [32, 48]
    assert p.finetune_job("vit", "shapes_s", init="x")["resolutions"] == [32]
    assert p.finetune_job("bit", "shapes_l", init="x")["resolutions"] == [32]
    assert p.transfer_resolution == 32
    rows = {(r["model"], r["upstream"], r["resolution"]) for r in cost.jobs(p) if r["stage"] == "finetune"}
    assert ("vit", "shapes_l", 48) in rows and ("bit", "shapes_l", 48) not in rows and ("bit", "shapes_l", 32) in rows
    assert len([r for r in cost.jobs(p) if r["stage"] == "finetune"]) < len(
        [r for r in cost.jobs(full) if r["stage"] == "finetune"])
    config["finetune"]["higher_resolutions_for"] = {"vit": ["shapes_xl"]}
    with pytest.raises(ConfigError, match="higher_resolutions_for.vit names 'shapes_xl'"):
        plan.load(config)


def test_finetune_per_model_settings_reach_the_checkpoints_and_scratch_runs_of_that_model():
    """finetune.per_model: a family's own fine-tuning lr, over finetune.train, in its grid, its from-scratch
    grid and its resolution ablation; other models keep finetune.train's."""
    config = preset()
    config["finetune"]["per_model"] = {"vit": {"lr": 0.5}}
    p = plan.load(config)
    assert p.finetune_job("vit", "shapes_l", init="x")["lr"] == 0.5
    assert p.finetune_job("vit", "scratch")["lr"] == 0.5
    assert p.ablation_job("vit", "shapes_l", "bilinear_corners", init="x")["lr"] == 0.5
    assert p.finetune_job("bit", "shapes_l", init="x")["lr"] == config["finetune"]["train"]["lr"] != 0.5
    config["finetune"]["per_model"] = {"vit": {"lr": "fast"}}
    with pytest.raises(ConfigError, match="finetune.per_model.vit.lr"):
        plan.load(config)


def test_fewshot_probes_read_every_checkpoint_of_the_listed_models():
    """pretrain.fewshot: every pre-training checkpoint of the listed models is probed (the default's ladder);
    a model that is not pre-trained here is named."""
    config = preset("config.yaml")
    assert plan.load(config).fewshot_runs == [(m, u) for m in ("vit", "bit")
                                              for u in ("contours_s", "contours_m", "contours_l")]
    assert plan.load(preset()).fewshot_runs == []
    assert "'nope'" in bad(lambda c: c["pretrain"].update(fewshot=["vit", "nope"]), "config.yaml")


def test_the_pretraining_seed_reaches_every_pretraining_run_and_only_those():
    """pretrain.seed: another draw of every checkpoint (initialisation, batch order, augmentation); the
    default 0 is left out of the settings, so runs of seed 0 keep their settings and results."""
    assert "seed" not in plan.load(preset()).pretrain_job("vit", "shapes_l")
    config = preset()
    config["pretrain"]["seed"] = 3
    p = plan.load(config)
    assert {p.pretrain_job(m, u)["seed"] for m, u in p.pretrain_runs} == {3}  # Noisy Student's students too
    assert "seed" not in p.finetune_job("vit", "shapes_l", init="x")  # fine-tunes keep their own seeds
