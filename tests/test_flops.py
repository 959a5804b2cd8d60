import pytest
import torch

from vit.account import compute as account
from vit.models import flops
from vit import models


def test_counted_vit_flops_match_the_analytical_formula():
    spec = {"arch": "vit", "patch_size": 8, "embed_dim": 64, "depth": 3, "num_heads": 4}
    for img in (32, 48):
        m = models.create(spec, 10, img)
        counted = flops.count(m, img)["fwd_flops_per_img"]
        formula = flops.vit_forward_flops(img, 8, 64, 3, 256, 10)
        assert counted == pytest.approx(formula, rel=0.01)


def test_depthwise_conv_backward_is_not_overcounted():
    """torch's own formula ignores groups in the weight gradient (x channels for depthwise)."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False)
    c = flops.count(conv, 16, in_chans=64)
    # the input needs no gradient, so backward is the weight gradient alone: as costly as the forward
    # (torch's formula would give 64x the forward here)
    assert c["train_flops_per_img"] == pytest.approx(2 * c["fwd_flops_per_img"])
    deeper = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 1, bias=False), conv)
    d = flops.count(deeper, 16)
    first = 2 * 3 * 64 * 16 * 16
    assert d["train_flops_per_img"] == pytest.approx(2 * first + 3 * c["fwd_flops_per_img"])
    assert c["fwd_flops_per_img"] == 2 * 64 * 9 * 16 * 16


def test_account_arithmetic():
    s = {"model": "vit", "upstream": "u", "num_classes": 10,
         "config": {"img_size": 32, "seed": 0, "batch_size": 10, "threads": 2},
         "params": 1, "steps": 5, "images_seen": 50, "fwd_flops_per_img": 1e6, "train_flops_per_img": 3e6,
         "train_time_s": 1800.0, "img_per_s": 100.0, "env": {"device": "cpu"}, "peak_rss_mb": 1}
    row = account.run_row(s, "pretrain")
    assert row["train_flops"] == 1.5e8 and row["core_hours"] == 1.0 and row["achieved_gflops"] == pytest.approx(0.3)


@pytest.mark.parametrize("spec", [
    {"arch": "vit", "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2},
    {"arch": "bit", "layers": [1, 1, 1, 1], "channels": [32, 64, 128, 256], "groups": 8},
    {"arch": "efficientnet", "variant": "tinynet_e"},
], ids=["vit", "bit", "efficientnet"])
def test_cost_interpolates_other_class_counts_exactly(spec):
    """vit.account.cost counts a (model, resolution) at two class counts and draws the rest from the line
    through them: the result must equal a direct count, to the FLOP."""
    from vit.account import cost

    cache: dict = {}
    for classes in (10, 1000):
        cost._flops_per_image(spec, 32, classes, cache)
    drawn = cost._flops_per_image(spec, 32, 37, cache)
    with torch.device("meta"):
        model = models.create(spec, 37, 32)
    direct = flops.count(model, 32, device="meta", batch=2)["train_flops_per_img"]
    assert drawn == direct and cost._flops_per_image(spec, 32, 1000, cache) != drawn
