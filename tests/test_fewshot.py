"""Few-shot linear evaluation (vit.evaluate.fewshot): the closed-form classifier, shot sampling, features, the stage."""
import json

import numpy as np
import pytest
import torch

from conftest import TINY_VIT
from vit import cli, models
from vit.evaluate import fewshot


def _clusters(n_per_class, num_classes=4, dim=8, spread=0.3, seed=0):
    """Gaussian blobs around well-separated centres: linearly separable with a wide margin."""
    g = torch.Generator().manual_seed(seed)
    centres = 5.0 * torch.eye(num_classes, dim)
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = centres[y] + spread * torch.randn(len(y), dim, generator=g)
    return x, y


# ----------------------------------------------------------------------------- classifier
@pytest.mark.parametrize("l2", [1e-3, fewshot.L2_REG])
def test_fit_predict_separates_and_ignores_example_order(l2):
    x, y = _clusters(40)
    xt, yt = _clusters(25, seed=1)
    pred = fewshot.fit_predict(x, y, xt, 4, l2)
    assert pred.dtype == torch.long and pred.shape == (100,)
    assert torch.equal(pred, yt)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))
    assert torch.equal(fewshot.fit_predict(x[perm], y[perm], xt, 4, l2), pred)
    a = fewshot.ridge_scores(fewshot.ridge_fit(x, y, 4, l2), xt)
    b = fewshot.ridge_scores(fewshot.ridge_fit(x[perm], y[perm], 4, l2), xt)
    torch.testing.assert_close(a, b)


def test_tiny_l2_is_least_squares_with_a_bias():
    g = torch.Generator().manual_seed(0)
    x, y, xt = torch.randn(60, 6, generator=g) * 3 + 1, torch.randint(0, 3, (60,), generator=g), torch.randn(9, 6)
    fit = fewshot.ridge_fit(x, y, 3, 1e-10)
    # reference: plain least squares on [standardised x, 1] onto {-1, +1} targets
    xs = ((x.double() - fit["mean"]) / fit["std"])
    a = torch.cat([xs, torch.ones(60, 1, dtype=torch.float64)], 1)
    t = 2.0 * torch.nn.functional.one_hot(y, 3).double() - 1
    sol = torch.linalg.lstsq(a, t).solution
    torch.testing.assert_close(fit["weight"], sol[:-1], atol=1e-7, rtol=1e-7)
    torch.testing.assert_close(fit["bias"], sol[-1], atol=1e-7, rtol=1e-7)
    ref = torch.cat([(xt.double() - fit["mean"]) / fit["std"], torch.ones(9, 1, dtype=torch.float64)], 1) @ sol
    torch.testing.assert_close(fewshot.ridge_scores(fit, xt), ref, atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("n,d", [(50, 6), (8, 30)])  # primal (N >= D) and dual (D > N) branches
def test_ridge_penalises_weights_but_not_the_bias(n, d):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, d, generator=g) + 2, torch.randint(0, 4, (n,), generator=g)
    l2 = 7.0
    fit = fewshot.ridge_fit(x, y, 4, l2)
    # reference: the augmented normal equations with the regulariser zero on the bias entry
    xs = (x.double() - fit["mean"]) / fit["std"]
    a = torch.cat([xs, torch.ones(n, 1, dtype=torch.float64)], 1)
    reg = torch.diag(torch.cat([torch.full((d,), l2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)]))
    t = 2.0 * torch.nn.functional.one_hot(y, 4).double() - 1
    sol = torch.linalg.solve(a.T @ a + reg, a.T @ t)
    torch.testing.assert_close(fit["weight"], sol[:-1], atol=1e-9, rtol=1e-7)
    torch.testing.assert_close(fit["bias"], sol[-1], atol=1e-9, rtol=1e-7)


# ----------------------------------------------------------------------------- sampling and evaluation
def test_sample_shots_per_class_seeded_and_nested():
    labels = torch.cat([torch.arange(5).repeat_interleave(30), torch.full((3,), 5)])  # class 5 has 3 examples
    idx = fewshot.sample_shots(labels, 5, seed=0)
    assert len(torch.unique(idx)) == len(idx)
    assert torch.bincount(labels[idx]).tolist() == [5, 5, 5, 5, 5, 3]
    assert torch.equal(idx, fewshot.sample_shots(labels, 5, seed=0))
    assert not torch.equal(idx, fewshot.sample_shots(labels, 5, seed=1))
    one = fewshot.sample_shots(labels, 1, seed=0)
    assert torch.bincount(labels[one]).tolist() == [1] * 6 and set(one.tolist()) <= set(idx.tolist())


def test_fewshot_eval_fits_on_exactly_the_shots(monkeypatch):
    x, y = _clusters(30, num_classes=5)
    xt, yt = _clusters(20, num_classes=5, seed=1)
    seen = []
    real = fewshot.fit_predict

    def spy(train_x, train_y, test_x, num_classes, l2_reg):
        seen.append((torch.bincount(train_y, minlength=5).tolist(), train_x.clone()))
        return real(train_x, train_y, test_x, num_classes, l2_reg)

    monkeypatch.setattr(fewshot, "fit_predict", spy)
    rows = fewshot.fewshot_eval(x, y, xt, yt, shots=(1, 5), seeds=(0, 1))
    assert [(r["shots"], r["seed"]) for r in rows] == [(1, 0), (1, 1), (5, 0), (5, 1)]
    assert all(set(r) == {"shots", "seed", "top1", "n_test", "n_train"} for r in rows)
    assert [c for c, _ in seen] == [[1] * 5, [1] * 5, [5] * 5, [5] * 5]
    assert [r["n_train"] for r in rows] == [5, 5, 25, 25] and all(r["n_test"] == 100 for r in rows)
    assert not torch.equal(seen[2][1], seen[3][1])  # seeds pick different examples
    assert all(r["top1"] > 90 for r in rows if r["shots"] == 5)  # separable: far above chance (20 %)


# ----------------------------------------------------------------------------- features
def test_features_are_pre_logits_and_independent_of_the_head():
    torch.manual_seed(0)
    model = models.create(TINY_VIT, 10, 32)
    imgs = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    model.train()
    f = fewshot.features(model, imgs, batch_size=4)
    assert f.shape == (6, 32) and f.dtype == torch.float32 and model.training  # mode restored
    torch.testing.assert_close(fewshot.features(model, imgs, batch_size=500), f)  # batching does not matter
    logits_before = model.eval()(imgs.float() / 127.5 - 1)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    assert not torch.allclose(model(imgs.float() / 127.5 - 1), logits_before)
    torch.testing.assert_close(fewshot.features(model, imgs), f)


def _colour_images(n_per_class, seed):
    """4 classes of flat colours with pixel noise: easy for even a random ViT's features."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.tensor([[230, 30, 30], [30, 230, 30], [30, 30, 230], [200, 200, 40]], dtype=torch.float32)
    y = torch.arange(4).repeat_interleave(n_per_class)
    x = colours[y][:, :, None, None] + 20 * torch.randn(len(y), 3, 32, 32, generator=g)
    return x.clamp(0, 255).to(torch.uint8), y


def test_fewshot_summary_matches_full_evaluation_and_beats_chance():
    torch.manual_seed(0)
    model = models.create(TINY_VIT, 10, 32)
    xtr, ytr = _colour_images(12, seed=0)
    xte, yte = _colour_images(10, seed=1)
    model.train()
    summary = fewshot.fewshot_summary(model, {"colours": (xtr, ytr, xte, yte)}, 32, shots=(1, 5), seeds=(0, 1))
    assert set(summary) == {"colours/1shot", "colours/5shot"} and model.training
    rows = fewshot.fewshot_eval(fewshot.features(model, xtr), ytr, fewshot.features(model, xte), yte,
                                shots=(1, 5), seeds=(0, 1))
    for k in (1, 5):  # computing only the shots' features gives the same answer as computing all of them
        assert summary[f"colours/{k}shot"] == pytest.approx(np.mean([r["top1"] for r in rows if r["shots"] == k]))
    assert summary["colours/5shot"] > 60  # chance is 25 %
    # prepared-data layout (numpy (N,H,W,3)) gives the same answer as NCHW tensors
    np_summary = fewshot.fewshot_summary(model, {"c": (xtr.permute(0, 2, 3, 1).numpy(), ytr.numpy(),
                                                      xte.permute(0, 2, 3, 1).numpy(), yte.numpy())},
                                         32, shots=(5,), seeds=(0, 1))
    assert np_summary["c/5shot"] == pytest.approx(summary["colours/5shot"])

# ----------------------------------------------------------------------------- the stage, end to end
@pytest.fixture(scope="module")
def digits200(tmp_path_factory):
    from vit.data.prepare import Config, prepare

    out = tmp_path_factory.mktemp("fewshot_data") / "digits"
    prepare(Config(name="digits", source="digits", group="natural", out=str(out), train=200, val=50, test=100))
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = models.create(TINY_VIT, 10, 32)
    path = tmp_path_factory.mktemp("fewshot_ckpt") / "checkpoint.pt"
    torch.save({"model": model.state_dict(), "model_args": TINY_VIT, "num_classes": 10, "img_size": 32,
                "grid_size": models.grid_size(model)}, path)
    return path


@pytest.mark.parametrize("img_size", [0, 48])  # 48: a 6x6 grid, position embeddings resampled from 4x4
def test_run_end_to_end(digits200, checkpoint, tmp_path, img_size):
    out = tmp_path / "fewshot.json"
    cfg = cli.parse(fewshot.Config, [f"--checkpoint={checkpoint}", f"--data={digits200}", "--shots=[1, 5]",
                                     "--seeds=[0, 1]", f"--img_size={img_size}", f"--out={out}", "--threads=1"])
    result = fewshot.run(cfg)
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(result)) and list(written) == ["digits"]
    rows = written["digits"]
    assert [(r["shots"], r["seed"]) for r in rows] == [(1, 0), (1, 1), (5, 0), (5, 1)]
    assert all(set(r) == {"shots", "seed", "top1", "n_test", "n_train"} for r in rows)
    assert all(r["n_test"] == 100 and 0 <= r["top1"] <= 100 for r in rows)
    assert [r["n_train"] for r in rows] == [10, 10, 50, 50]
    assert rows[2]["top1"] != rows[3]["top1"] or rows[0]["top1"] != rows[1]["top1"]  # seeds matter


def test_load_model_resamples_position_embeddings(checkpoint):
    model, size = fewshot.load_model(str(checkpoint), 48)
    assert size == 48 and model.pos_embed.shape == (1, 1 + 36, 32)
    ref = torch.load(checkpoint, weights_only=False)["model"]
    torch.testing.assert_close(model.pos_embed[:, :1], ref["pos_embed"][:, :1])  # class token copied
    model32, size32 = fewshot.load_model(str(checkpoint))
    assert size32 == 32 and torch.equal(model32.pos_embed, ref["pos_embed"])


def test_data_dirs_and_missing_settings(tmp_path):
    assert fewshot.data_dirs("a") == ["a"]
    assert fewshot.data_dirs("a, b") == ["a", "b"]
    assert fewshot.data_dirs(cli.parse(fewshot.Config, ['--data=["a", "b"]']).data) == ["a", "b"]
    assert fewshot.data_dirs(["a", "b"]) == ["a", "b"]
    with pytest.raises(cli.ConfigError):
        fewshot.run(fewshot.Config(out=str(tmp_path / "x.json")))
