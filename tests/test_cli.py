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


# --- `--key value`, --help, suggestions -------------------------------------------------------------------

import dataclasses  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Small:
    """A stage's Config in miniature (positional words go to `inputs`)."""
    out: str = "#not a comment"  # where results go
    n: int = 1                   # how many, continued
                                 # on a second line
    # a section header, not part of n's comment
    rate: float = dataclasses.field(
        default=0.5)             # a default over two lines
    flag: bool = False
    inputs: list = dataclasses.field(default_factory=list)


@pytest.mark.parametrize("key,value", [("steps", "3"), ("lr", "0.1"), ("save_checkpoint", "false"),
                                       ("augment", "crop_flip"), ("decay_at", "[0.5, 0.75]"),
                                       ("model_args", '{"arch": "vit", "depth": 2}')])
def test_key_space_value_equals_key_equals_value(key, value):
    spaced = cli.parse(train.Config, [f"--{key}", value, "--seed", "7"])
    assert spaced == cli.parse(train.Config, [f"--{key}={value}", "--seed=7"])
    assert spaced != train.Config(seed=7) and spaced.seed == 7


def test_value_may_start_with_a_dash():
    assert cli.parse(train.Config, ["--lr", "-1"]).lr == -1.0
    assert cli.parse(train.Config, ["--lr", "-1e-3", "--steps", "-2"]).steps == -2
    assert cli.parse(train.Config, ["--out", "--not-a-key"]).out == "--not-a-key"  # not a setting: a value
    with pytest.raises(cli.ConfigError, match="--steps='ten'"):
        cli.parse(train.Config, ["--steps", "ten"])
    with pytest.raises(cli.ConfigError, match="--out: no value"):
        cli.parse(train.Config, ["--out", "--lr=0.1"])  # a following setting is a key, not a value
    with pytest.raises(cli.ConfigError, match="--lr: no value"):
        cli.parse(train.Config, ["--lr"])


def test_positional_inputs_between_spaced_settings():
    cfg = cli.parse(Small, ["a.json", "--out", "x", "b.json", "--n", "2", "--flag=true", "c.json"])
    assert (cfg.out, cfg.n, cfg.flag, cfg.inputs) == ("x", 2, True, ["a.json", "b.json", "c.json"])
    with pytest.raises(cli.ConfigError, match="expected --key=value"):
        cli.parse(train.Config, ["--lr", "0.1", "stray"])


def test_unknown_key_suggests_the_closest():
    with pytest.raises(cli.ConfigError, match=r"--lerning_rate for vit\.train\..*Config; did you mean --lr\? "
                                              r"valid settings: data, "):
        cli.parse(train.Config, ["--lerning_rate", "0.1"])
    with pytest.raises(cli.ConfigError, match=r"did you mean --batch_size or --eval_batch_size\?"):
        cli.parse(train.Config, ["--batchsize=64"])
    with pytest.raises(cli.ConfigError, match=r"did you mean --weight_decay\?"):
        cli.parse(train.Config, ["--wd=0.1"])


def test_split_known_moves_pairs_together():
    from vit.train import finetune

    argv = ["--tasks", "['a', 'b']", "--lr", "-1", "--seeds=[0]", "--steps=3", "--out", "o", "--augment", "none"]
    mine, rest = cli.split_known(finetune.Config, argv)
    assert mine == ["--tasks", "['a', 'b']", "--seeds=[0]", "--out", "o"]
    assert rest == ["--lr", "-1", "--steps=3", "--augment", "none"]
    f, t = cli.parse(finetune.Config, mine), cli.parse(train.Config, rest)
    assert (f.tasks, f.seeds, f.out, t.lr, t.steps, t.augment) == (["a", "b"], [0], "o", -1.0, 3, "none")
    assert cli.split_known(finetune.Config, ["--lr", "0.1", "--help"]) == (["--help"], ["--lr", "0.1"])


def test_comments_join_continuation_lines():
    assert cli.comments(Small) == {"out": "where results go", "n": "how many, continued on a second line",
                                   "rate": "a default over two lines"}


def test_help_in_process(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.parse(Small, ["--n", "2", "-h"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "[inputs ...]" in out and "Config in miniature" not in out  # the module's doc, not the class's
    lines = {line.split()[0]: " ".join(line.split()) for line in out.splitlines() if line.startswith("  --")}
    assert lines["--out"] == '--out str (default: "#not a comment") where results go'
    assert lines["--n"] == "--n int (default: 1) how many, continued on a second line"
    assert lines["--flag"] == "--flag bool (default: false)" and lines["--inputs"] == "--inputs list (default: [])"


def _help(module: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_help_of_real_stages():
    peak = _help("vit.account.peak")
    assert peak.returncode == 0, peak.stderr
    assert peak.stdout.startswith("usage: python -m vit.account.peak ")
    assert "measured matmul peak" in peak.stdout and "--out str (default: \"\")" in peak.stdout
    assert "--threads int (default: 0)   CPU: measure 1..threads threads (0 = all cores)" in peak.stdout

    stage = _help("vit.train")
    if "vit.train.__main__" in stage.stderr:  # the package's __main__ is not there (yet): the module itself
        stage = _help("vit.train.loop")
    assert stage.returncode == 0, stage.stderr
    text = " ".join(stage.stdout.split())  # long comments are wrapped
    assert "--lr float (default: 0.001)" in text and '--augment str (default: "none")' in text
    assert "--epochs float (default: 0.0) duration: epochs, or steps if > 0" in text
    assert "--save_checkpoint bool (default: true)" in text and "--model_args dict (default: {})" in text
    assert ("per-device budget: accum_steps becomes the fewest whose micro-batch fits (vit.train.memory; "
            "0 = accum_steps as given)") in text
