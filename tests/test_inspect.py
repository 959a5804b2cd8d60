"""vit.evaluate.inspect (paper Fig. 6 and 7): attention read-out, rollout, attention distance, posemb statistics."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY_VIT

from vit import cli, models
from vit.report import plots
from vit.evaluate import inspect as vi
from vit.logs import save_torch

SPEC = {**TINY_VIT, "depth": 2}  # two layers, so rollout multiplies


def _vit(seed=0, img_size=32, classes=10):
    torch.manual_seed(seed)
    return models.create(SPEC, classes, img_size).eval()


def test_attention_probs_reproduce_timm_attention():
    model = _vit()
    x = torch.randn(3, 3, 32, 32)
    seen = []
    for blk in model.blocks:
        blk.attn.fused_attn = True  # compare with timm's SDPA path, which never forms the matrix
        blk.attn.register_forward_hook(lambda m, a, o: seen.append((m, a[0], o)))
    with torch.no_grad():
        model(x)
    assert len(seen) == 2
    for attn, inp, out in seen:
        probs = vi.attention_probs(attn, inp)
        assert probs.shape == (3, 2, 17, 17)
        torch.testing.assert_close(probs.sum(-1), torch.ones(3, 2, 17))
        b, n, _ = inp.shape
        v = attn.qkv(inp).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)[2]
        rebuilt = attn.proj(attn.norm((probs @ v).transpose(1, 2).reshape(b, n, -1)))
        torch.testing.assert_close(rebuilt, out, atol=1e-5, rtol=1e-4)
    # the hooked helper sees the same layers
    assert [a.shape for a in vi.layer_attentions(model, x)] == [(3, 2, 17, 17)] * 2


def test_rollout_of_uniform_attention_is_uniform():
    model = _vit()
    for blk in model.blocks:  # q = k = 0: every score equal, softmax uniform
        torch.nn.init.zeros_(blk.attn.qkv.weight)
        torch.nn.init.zeros_(blk.attn.qkv.bias)
    means = vi.layer_attentions(model, torch.randn(2, 3, 32, 32), reduce=lambda a: a.mean(1))
    plain = vi.rollout(means, residual=False)
    torch.testing.assert_close(plain, torch.full_like(plain, 1 / 17))
    joint = vi.rollout(means)
    torch.testing.assert_close(joint.sum(-1), torch.ones(2, 17))
    grid_maps, up = vi.rollout_maps(joint, (4, 4), 32)
    assert grid_maps.shape == (2, 4, 4) and up.shape == (2, 32, 32)
    # ((U + I) / 2)^L = I / 2^L + (1 - 2^-L) U: the class token's row over the patches is flat
    torch.testing.assert_close(grid_maps, torch.full_like(grid_maps, 0.75 / 17))


def test_rollout_multiplies_later_layers_on_the_left():
    # layer 1 sends each token to the next, layer 2 keeps the class token and swaps the others
    a1 = torch.eye(3).roll(1, dims=1)[None]
    a2 = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]])[None]
    torch.testing.assert_close(vi.rollout([a1, a2], residual=False), a2 @ a1)


def test_attention_distance_by_hand():
    grid, patch = (2, 2), (4, 4)  # patch centres (2,2) (2,6) (6,2) (6,6)
    dist = vi.patch_distances(grid, patch)
    assert dist[0, 1] == 4 and dist[0, 3] == pytest.approx(4 * math.sqrt(2))
    # every patch puts 0.5 on the class token (dropped), 0.25 on itself, 0.25 on the opposite corner
    a = torch.zeros(1, 1, 5, 5)
    a[..., :, 0] = 0.5
    for q in range(4):
        a[0, 0, 1 + q, 1 + q] = 0.25
        a[0, 0, 1 + q, 1 + (3 - q)] = 0.25
    got = vi.attention_distance(a, dist)
    assert got.shape == (1, 1) and got.item() == pytest.approx(0.5 * 4 * math.sqrt(2))
    uniform = torch.full((2, 3, 5, 5), 0.2)
    expected = (4 + 4 + 4 * math.sqrt(2)) / 4  # from any patch: 0, 4, 4, 4*sqrt(2)
    assert vi.uniform_distance(dist) == pytest.approx(expected)
    torch.testing.assert_close(vi.attention_distance(uniform, dist), torch.full((2, 3), expected).double())


def test_posemb_stats_see_2d_structure():
    gh = gw = 7
    r, c = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    freqs = torch.tensor([0.3, 0.6, 0.9])
    smooth = torch.cat([f(p.flatten()[:, None].float() * freqs) for p in (r, c) for f in (torch.sin, torch.cos)], 1)
    s = vi.posemb_stats(vi.posemb_similarity(smooth, (gh, gw)))
    assert s["neighbour"] > s["other"] + 0.1
    assert s["same_row_or_col"] > s["neither"] + 0.05
    assert s["distance_corr"] < -0.5 and s["distance_corr_pearson"] < -0.5
    assert s["pairs"] == 49 * 48 // 2
    rand = vi.posemb_stats(vi.posemb_similarity(torch.randn(gh * gw, 64, generator=torch.Generator().manual_seed(0)),
                                                (gh, gw)))
    assert abs(rand["distance_corr"]) < 0.1 and abs(rand["neighbour"] - rand["other"]) < 0.05
    # the permutation null: the smooth grid is far beyond it, random embeddings within it
    assert s["distance_corr"] < -5 * s["distance_corr_null_sd"]
    assert abs(rand["distance_corr"]) < 3 * rand["distance_corr_null_sd"]


def test_embedding_filters_pca():
    w = torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    comps, var = vi.embedding_filters(w, 40)
    assert comps.shape == (32, 3, 8, 8)  # capped at what exists (D = 32 < 40)
    assert var[:-1].sum() == pytest.approx(1.0, abs=1e-5) and torch.all(var[:-1] >= var[1:])
    flat = comps.flatten(1)[:5]
    torch.testing.assert_close(flat @ flat.T, torch.eye(5), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_cli_end_to_end(digits_dir, tmp_path, capsys):
    model = _vit()
    ckpt = tmp_path / "vit.pt"
    save_torch(ckpt, models.checkpoint(model, SPEC, 10, 32, {}))
    out = tmp_path / "inspect"
    vi.main(cli.parse(vi.Config, [f"--checkpoint={ckpt}", f"--data={digits_dir}", "--split=val",
                                  f"--out={out}", "--images=20", "--samples=3", "--batch_size=8",
                                  "--threads=1"]))
    d = dict(np.load(out / "inspect.npz"))
    assert d["images"].shape == (3, 32, 32, 3) and d["images"].dtype == np.uint8
    assert d["rollout"].shape == (3, 32, 32) and d["rollout_grid"].shape == (3, 4, 4)
    assert d["filters"].shape == (28, 3, 8, 8) and d["filter_variance"].shape == (28,)
    assert d["posemb_similarity"].shape == (4, 4, 4, 4) and d["attention_distance"].shape == (2, 2)
    np.testing.assert_allclose(np.einsum("ijij->ij", d["posemb_similarity"]), 1, atol=1e-5)
    s = json.loads((out / "inspect.json").read_text())
    assert s["images"] == 20 and s["samples"] == 3 and len(s["distance_per_layer"]) == 2
    np.testing.assert_allclose(s["distance"], d["attention_distance"], rtol=1e-6)
    assert s["uniform_distance"] == pytest.approx(float(d["uniform_distance"]))
    assert {"neighbour", "other", "same_row_or_col", "neither", "distance_corr"} <= set(s["posemb"])
    assert set(s["posemb"]["p"]) == {"neighbour", "line", "distance"} and 0 < s["posemb"]["p"]["distance"] <= 1
    # claim (e)'s null: layer 1 of 40 untrained initialisations, each head about as far as uniform attention
    untrained = np.asarray(s["untrained_distance"])
    assert untrained.shape == (40, 1, 2) and np.allclose(untrained, s["uniform_distance"], rtol=0.1)
    assert "torch" in s["environment"]
    for name in ("rollout", "embedding_filters", "posemb_similarity", "attention_distance"):
        getattr(plots, name)(out / "inspect.npz", tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 1000

    conv_spec = {"arch": "bit", "layers": [1, 1, 1, 1], "channels": [32, 64, 128, 256], "groups": 8}
    conv = tmp_path / "conv.pt"
    save_torch(conv, models.checkpoint(models.create(conv_spec, 10, 32), conv_spec, 10, 32, {}))
    with pytest.raises(cli.ConfigError, match="needs a ViT"):
        vi.main(vi.Config(checkpoint=str(conv), data=str(digits_dir), out=str(tmp_path / "x")))
