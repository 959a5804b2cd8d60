import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import zoom

from conftest import TINY_VIT
from vit import models


def _posemb(grid, dim=8, prefix=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, prefix + grid[0] * grid[1], dim, generator=g)


@pytest.mark.parametrize("interp", models.POSEMB_INTERP)
def test_resample_identity_at_equal_grid(interp):
    pe = _posemb((4, 4))
    assert torch.equal(models.resample_pos_embed(pe, (4, 4), (4, 4), 1, interp), pe)


@pytest.mark.parametrize("interp", models.POSEMB_INTERP)
@pytest.mark.parametrize("new", [(6, 6), (6, 8), (3, 3)])
def test_resample_keeps_class_token_and_shape(interp, new):
    pe = _posemb((4, 4))
    out = models.resample_pos_embed(pe, (4, 4), new, 1, interp)
    assert out.shape == (1, 1 + new[0] * new[1], 8)
    assert torch.equal(out[:, :1], pe[:, :1])


def test_bilinear_corners_matches_scipy_zoom():
    """The original JAX code resamples with scipy.ndimage.zoom(order=1) per channel."""
    pe = _posemb((4, 4), dim=5)
    out = models.resample_pos_embed(pe, (4, 4), (6, 8), 1, "bilinear_corners")
    grid = pe[0, 1:].reshape(4, 4, 5).numpy().astype(np.float64)
    ref = zoom(grid, (6 / 4, 8 / 4, 1), order=1)
    np.testing.assert_allclose(out[0, 1:].reshape(6, 8, 5).numpy(), ref, atol=1e-5)


def test_bicubic_matches_interpolate_reference():
    pe = _posemb((4, 4), dim=5)
    out = models.resample_pos_embed(pe, (4, 4), (7, 5), 1, "bicubic")
    grid = pe[:, 1:].reshape(1, 4, 4, 5).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(7, 5), mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(out[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, 35, 5))


def test_unknown_interp_rejected():
    with pytest.raises(ValueError, match="posemb_interp"):
        models.resample_pos_embed(_posemb((4, 4)), (4, 4), (6, 6), 1, "nearest")


def _pretrained(num_classes=16, img=32):
    torch.manual_seed(0)
    m = models.create(TINY_VIT, num_classes, img)
    return m, {"model": m.state_dict(), "grid_size": models.grid_size(m), "model_args": TINY_VIT}


def test_load_pretrained_resets_head_and_copies_the_rest():
    src, ckpt = _pretrained()
    dst = models.create(TINY_VIT, 10, 48)  # new task, higher resolution
    info = models.load_pretrained(dst, ckpt)
    assert info["posemb_resampled"] and info["grid_from"] == [4, 4] and info["grid_to"] == [6, 6]
    assert set(info["head_reset"]) == {"head.weight", "head.bias"}
    assert dst.head.weight.abs().sum() == 0 and dst.head.bias.abs().sum() == 0
    for name, p in dst.state_dict().items():
        if name.startswith("head.") or name == "pos_embed":
            continue
        assert torch.equal(p, ckpt["model"][name]), name
    assert torch.equal(dst.pos_embed[:, :1], ckpt["model"]["pos_embed"][:, :1])
    assert dst(torch.randn(2, 3, 48, 48)).abs().max() == 0  # zero head: zero logits


@pytest.mark.parametrize("spec", [
    {"arch": "bit", "layers": [1, 1, 1, 1], "channels": [32, 64, 128, 256], "groups": 8},
    {"arch": "efficientnet", "variant": "tinynet_e"},
])
def test_load_pretrained_convnets(spec):
    src = models.create(spec, 16, 32)
    dst = models.create(spec, 5, 48)
    info = models.load_pretrained(dst, {"model": src.state_dict(), "grid_size": None})
    assert info["head_reset"] and not info["posemb_resampled"]
    assert all(p.abs().sum() == 0 for p in dst.get_classifier().parameters())


def test_load_pretrained_refuses_a_different_architecture():
    _, ckpt = _pretrained()
    other = models.create(dict(TINY_VIT, depth=2), 10, 32)
    with pytest.raises(RuntimeError, match="missing"):
        models.load_pretrained(other, ckpt)


def test_tanh_mlp_pretraining_head_is_replaced_by_a_zero_linear_head():
    spec = dict(TINY_VIT, head="tanh_mlp")
    pre = models.create(spec, 16, 32)
    assert isinstance(pre.head[1], torch.nn.Tanh) and pre.head[0].out_features == 32
    ckpt = {"model": pre.state_dict(), "grid_size": models.grid_size(pre)}
    ft = models.create(models.transfer_spec(spec), 10, 32)
    info = models.load_pretrained(ft, ckpt)
    assert isinstance(ft.head, torch.nn.Linear) and ft.head.weight.abs().sum() == 0
    assert info["head_reset"] == ["head.bias", "head.weight"]
    with pytest.raises(ValueError, match="head='mlp'"):
        models.create(dict(TINY_VIT, head="mlp"), 10, 32)


@pytest.mark.parametrize("stride, side", [(1, 32), (2, 16)])
def test_bit_cifar_stem_keeps_the_maps_large(stride, side):
    """A 3x3 stem without max-pool: the first stage sees 32x32 (stride 1) or 16x16 maps at 32 px, where
    BiT's 7x7/2 + max-pool stem leaves 8x8."""
    spec = {"arch": "bit", "layers": [1, 1, 1, 1], "channels": [16, 32, 64, 128], "groups": 4}
    x = torch.zeros(2, 3, 32, 32)
    assert models.create(spec, 5, 32).stem(x).shape[-1] == 8
    model = models.create({**spec, "stem": "cifar", "stem_stride": stride}, 5, 32)
    assert model.stem(x).shape[-1] == side and model(x).shape == (2, 5)
    with pytest.raises(ValueError, match="stem='deep'"):
        models.create({**spec, "stem": "deep"}, 5, 32)


def test_efficientnet_stem_stride():
    spec = {"arch": "efficientnet", "variant": "tinynet_e"}
    x = torch.zeros(2, 3, 32, 32)
    assert models.create(spec, 5, 32).conv_stem(x).shape[-1] == 16
    model = models.create({**spec, "stem_stride": 1}, 5, 32)
    assert model.conv_stem(x).shape[-1] == 32 and model(x).shape == (2, 5)
