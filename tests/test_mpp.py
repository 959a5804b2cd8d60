import math

import pytest
import torch

from conftest import TINY_VIT
from vit import models
from vit.data import normalize
from vit.models.mpp import MaskedPatchPrediction, backbone_state_dict, colour_targets, corrupt


def _solid(colours, patch=4):
    """uint8 colours (rows, cols, 3) -> one [-1, 1] image (1, 3, rows*patch, cols*patch) of solid patches."""
    c = torch.tensor(colours, dtype=torch.uint8)
    img = c.permute(2, 0, 1).repeat_interleave(patch, 1).repeat_interleave(patch, 2)
    return normalize(img[None])


# ---------------------------------------------------------------- colour targets

@pytest.mark.parametrize("rgb, cls", [
    ((255, 0, 0), 7 * 64), ((128, 128, 128), 4 * 64 + 4 * 8 + 4), ((0, 0, 0), 0), ((255, 255, 255), 511),
    ((32, 32, 32), 73),  # 32 / 127.5 - 1 comes back as 31.999998: a bin edge that plain floor gets wrong
    ((127, 31, 32), 3 * 64 + 0 * 8 + 1)])
def test_colour_class_of_a_solid_patch(rgb, cls):
    assert colour_targets(_solid([[rgb]], patch=16), 16).tolist() == [[cls]]


def test_colour_uses_the_patch_mean():
    # half black, half 63: mean 31.5 -> level 0 (per-pixel levels 0 and 1); with 64: mean 32 -> level 1
    x = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    x[..., :2] = 63
    assert colour_targets(normalize(x), 4).tolist() == [[0]]
    x[..., :2] = 64
    assert colour_targets(normalize(x), 4).tolist() == [[1 * 64 + 1 * 8 + 1]]


def test_patches_in_row_major_order_like_timm():
    colours = [[(255, 0, 0), (0, 255, 0)], [(0, 0, 255), (128, 128, 128)]]
    assert colour_targets(_solid(colours, patch=8), 8).tolist() == [[448, 56, 7, 292]]
    # the same order as timm's patch tokens: a patch_embed that reads each patch's mean red channel
    vit = models.create({**TINY_VIT, "embed_dim": 4}, 10, 16)
    with torch.no_grad():
        vit.patch_embed.proj.weight.zero_()
        vit.patch_embed.proj.bias.zero_()
        vit.patch_embed.proj.weight[0, 0] = 1 / 64
    red = vit.patch_embed(_solid(colours, patch=8))[0, :, 0]
    assert (red > 0.5).tolist() == [True, False, False, False]


# ---------------------------------------------------------------- corruption

def _corrupted(b=4, n=1000, d=8, seed=0, **kw):
    tokens = torch.randn(b, n, d, generator=torch.Generator().manual_seed(123))
    mask = torch.randn(d, generator=torch.Generator().manual_seed(7))
    out, corrupted = corrupt(tokens, mask, generator=torch.Generator().manual_seed(seed), **kw)
    return tokens, mask, out, corrupted


def test_corrupt_exact_counts_and_kinds():
    tokens, mask, out, corrupted = _corrupted()
    assert corrupted.sum(1).tolist() == [500] * 4
    is_mask = (out == mask).all(-1)
    same = (out == tokens).all(-1)
    assert not (is_mask & ~corrupted).any() and same[~corrupted].all()  # only corrupted positions change
    assert is_mask.sum(1).tolist() == [400] * 4
    kept = same & corrupted
    assert kept.sum(1).tolist() == [50] * 4
    rand = corrupted & ~is_mask & ~same
    assert rand.sum(1).tolist() == [50] * 4
    # each random replacement is another token of the batch, at a different (image, position)
    flat = tokens.reshape(-1, tokens.shape[-1])
    hits = (out[rand][:, None] == flat[None]).all(-1)  # (R, B*N)
    assert (hits.sum(1) == 1).all()
    own = torch.arange(flat.shape[0]).view(4, 1000)[rand]
    assert (hits.float().argmax(1) != own).all()
    assert (hits.float().argmax(1) // 1000 != own // 1000).any()  # other images are used too


def test_corrupt_rounding_small_n():
    _, mask, out, corrupted = _corrupted(b=2, n=16)  # k = 8: 6 mask (6.4), 1 random (0.8), 1 kept
    assert corrupted.sum(1).tolist() == [8, 8]
    assert (out == mask).all(-1).sum(1).tolist() == [6, 6]


def test_random_replacement_is_never_the_token_itself():
    tokens = torch.arange(4.0).view(1, 4, 1)  # one image of 4 distinct tokens, all replaced at random
    for seed in range(50):
        g = torch.Generator().manual_seed(seed)
        out, _ = corrupt(tokens, torch.tensor([-1.0]), rate=1.0, p_mask=0.0, p_random=1.0, generator=g)
        assert (out != tokens).all()


def test_corrupt_deterministic_under_generator():
    a, b, c = _corrupted(seed=1), _corrupted(seed=1), _corrupted(seed=2)
    assert torch.equal(a[2], b[2]) and torch.equal(a[3], b[3])
    assert not torch.equal(a[3], c[3])


# ---------------------------------------------------------------- the MPP model

def _batch(n=4, img=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    # blocky images, so that patch colours vary across the batch and are learnable
    x = torch.randint(0, 256, (n, 3, img // 8, img // 8), generator=g, dtype=torch.uint8)
    return normalize(x.repeat_interleave(8, 2).repeat_interleave(8, 3))


def test_mpp_loss_at_init_and_overfits_a_batch():
    torch.manual_seed(0)
    mpp = MaskedPatchPrediction(models.create(TINY_VIT, 10, 32))
    x = _batch()
    loss0, stats = mpp.loss(x, torch.Generator().manual_seed(0))
    assert math.isfinite(loss0.item()) and abs(loss0.item() - math.log(512)) < 0.2
    assert stats["corrupted"] == 0.5 and 0.0 <= stats["mpp_acc"] <= 1.0
    opt = torch.optim.Adam(mpp.parameters(), lr=3e-3)
    for _ in range(30):
        opt.zero_grad()
        loss, _ = mpp.loss(x, torch.Generator().manual_seed(0))  # fixed batch and corruption
        loss.backward()
        opt.step()
    assert loss.item() < loss0.item() - 1.0


def test_gradients_reach_mask_token_and_blocks_not_the_classifier():
    torch.manual_seed(0)
    mpp = MaskedPatchPrediction(models.create(TINY_VIT, 10, 32))
    loss, _ = mpp.loss(_batch(), torch.Generator().manual_seed(0))
    loss.backward()
    assert mpp.mask_token.grad.abs().sum() > 0
    assert mpp.vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert mpp.vit.patch_embed.proj.weight.grad.abs().sum() > 0
    assert mpp.vit.head.weight.grad is None


@pytest.mark.parametrize("reg_tokens", [0, 2])
def test_head_reads_the_corrupted_patch_outputs(reg_tokens):
    """The colour head sees the output tokens of the corrupted patches, after the class (+ register) tokens."""
    torch.manual_seed(0)
    mpp = MaskedPatchPrediction(models.create({**TINY_VIT, "reg_tokens": reg_tokens}, 10, 32)).eval()
    seen = []
    mpp.mpp_head.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    x = _batch()
    with torch.no_grad():
        mpp.loss(x, torch.Generator().manual_seed(3))
        out, corrupted = mpp.encode(x, torch.Generator().manual_seed(3))
    assert out.shape[1] == 1 + reg_tokens + 16
    assert torch.equal(seen[0], out[:, 1 + reg_tokens:][corrupted])


def test_forward_is_the_classifier_and_encode_matches_timm():
    torch.manual_seed(0)
    spec = {**TINY_VIT, "input_norm": [[0.5, 0.4, 0.3], [0.2, 0.25, 0.3]]}  # pre-hooks must be applied too
    vit = models.create(spec, 10, 32).eval()
    mpp = MaskedPatchPrediction(vit, rate=0.0).eval()
    x = _batch()
    assert torch.equal(mpp(x), vit(x))
    out, corrupted = mpp.encode(x)
    assert not corrupted.any()
    torch.testing.assert_close(vit.forward_head(out), vit(x))
    mpp.rate = 0.5  # the DDP-friendly path, forward(x, mpp=True), is the same loss
    a = mpp(x, mpp=True, generator=torch.Generator().manual_seed(0))
    b = mpp.loss(x, torch.Generator().manual_seed(0))
    assert torch.equal(a[0], b[0]) and a[1] == b[1] and a[1]["corrupted"] == 0.5


def test_backbone_state_dict_fine_tunes_like_a_supervised_checkpoint():
    torch.manual_seed(0)
    spec = {**TINY_VIT, "head": "tanh_mlp"}
    mpp = MaskedPatchPrediction(models.create(spec, 10, 32))
    state = backbone_state_dict(mpp)
    assert not any(k.startswith(("head.", "mask_token", "mpp_head")) for k in state)
    ckpt = {"model": state, "grid_size": models.grid_size(mpp.vit)}
    new = models.create(models.transfer_spec(spec), 7, 32)
    info = models.load_pretrained(new, ckpt)
    assert info["head_reset"] == ["head.bias", "head.weight"]
    x = _batch()
    with torch.no_grad():
        torch.testing.assert_close(new.eval().forward_features(x), mpp.vit.eval().forward_features(x))
        assert torch.equal(new(x), torch.zeros(4, 7))


def test_rejects_patch_dropout():
    with pytest.raises(ValueError, match="patch_drop"):
        MaskedPatchPrediction(models.create({**TINY_VIT, "patch_drop_rate": 0.25}, 10, 32))
