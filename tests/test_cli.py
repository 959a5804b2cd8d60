import pytest

from vit import cli
from vit.train import loop as train


def test_parse_types_and_defaults():
    cfg = cli.parse(train.Config, ["--lr=0.1", "--steps=3", "--augment=crop_flip", "--save_checkpoint=false",
                                   "--model_args={'arch': 'vit', 'depth': 2}", "--tags={'task': 'x'}"])
    assert cfg.lr == 0.1 and cfg.steps == 3 and cfg.augment == "crop_flip" and cfg.save_checkpoint is False
    assert cfg.model_args == {"arch": "vit", "depth": 2} and cfg.batch_size == train.Config().batch_size


def test_int_is_accepted_for_float():
    assert cli.parse(train.Config, ["--lr=1"]).lr == 1.0


def test_unknown_key_is_named():
    with pytest.raises(cli.ConfigError, match="--learning_rate"):
        cli.parse(train.Config, ["--learning_rate=0.1"])


def test_wrong_type_is_named():
    with pytest.raises(cli.ConfigError, match="--steps"):
        cli.parse(train.Config, ["--steps=ten"])
    with pytest.raises(cli.ConfigError, match="--steps"):
        cli.parse(train.Config, ["--steps=1.5"])


def test_render_round_trip():
    values = {"lr": 0.03, "tasks": ["a", "b"], "model_args": {"arch": "vit", "layers": [1, 2]},
              "save_checkpoint": False, "train_split": "train+val"}
    import shlex

    argv = shlex.split(cli.render(values))
    from vit.train import finetune

    mine, rest = cli.split_known(finetune.Config, argv)
    f = cli.parse(finetune.Config, mine)
    t = cli.parse(train.Config, rest)
    assert f.tasks == ["a", "b"] and t.lr == 0.03 and t.save_checkpoint is False and t.train_split == "train+val"
