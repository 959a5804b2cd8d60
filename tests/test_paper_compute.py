"""The paper-scale compute table (vit.account.paper_compute) against Tables 2 and 6; meta-device counting only."""
import math

import pandas as pd
import pytest
import torch

from vit.models import flops, zoo
from vit import models
from vit.account import paper_compute
from vit.account.cost import PEAKS


@pytest.fixture(scope="module")
def reference() -> dict:
    return paper_compute.load_reference()


@pytest.fixture(scope="module")
def table(reference) -> pd.DataFrame:
    return paper_compute.paper_compute(reference, mfu=0.4)


def _row(df, model, table, epochs=None, dataset=None):
    sel = (df.model == model) & (df.source_table == table)
    if epochs is not None:
        sel &= df.epochs == epochs
    if dataset is not None:
        sel &= df.dataset == dataset
    assert sel.sum() == 1, (model, table, epochs, dataset)
    return df[sel].iloc[0]


@pytest.mark.slow
def test_every_table6_and_table2_run_has_a_row(table, reference):
    t6 = table[table.source_table == "Table 6"]
    assert len(t6) == len(reference["compute"]["exaflops_table6"]) - 1 == 18  # minus the `source` key
    assert set(t6.family) == {"ViT", "ResNet (BiT)", "hybrid"}
    assert (t6.dataset == "JFT-300M").all() and (t6.images == 303e6).all()
    assert len(table[table.source_table == "Table 2"]) == len(reference["table2"]["models"]) == 5
    assert table.note.notna().all()


@pytest.mark.slow
def test_vit_rows_reproduce_table6(table):
    """The reconstruction fits five ViT rows within 1 %; B/32 is 56.1 vs the table's 55 (+2 %), which no
    variant of the formula fixes without breaking the others, so it gets its own tolerance and a note."""
    vit = table[(table.source_table == "Table 6") & (table.family == "ViT")]
    assert len(vit) == 6
    for r in vit.itertuples():
        tol = 0.021 if r.model == "ViT-B/32" else 0.01
        assert r.ratio == pytest.approx(1, abs=tol), (r.model, r.epochs, r.exaflops, r.exaflops_paper)
    b32 = _row(table, "ViT-B/32", "Table 6")
    assert b32.ratio > 1.01 and "within 1 %" in b32.note


@pytest.mark.slow
def test_resnet_and_hybrid_rows_within_looser_tolerances(table):
    """Measured: every BiT ResNet +3.0..+4.0 %; hybrids -2.9..+1.5 % (the -2.9 % is Table 6's 7-epoch
    R50x1+ViT-L/16, which is not half its own 14-epoch row)."""
    t6 = table[table.source_table == "Table 6"]
    resnet = t6[t6.family == "ResNet (BiT)"]
    assert len(resnet) == 7 and resnet.ratio.between(1.0, 1.05).all(), resnet[["model", "ratio"]]
    hybrid = t6[t6.family == "hybrid"]
    assert len(hybrid) == 5 and hybrid.ratio.between(0.96, 1.02).all(), hybrid[["model", "ratio"]]
    odd = _row(table, "R50x1+ViT-L/16", "Table 6", epochs=7)
    assert "not half" in odd.note
    assert odd.exaflops * 2 == pytest.approx(_row(table, "R50x1+ViT-L/16", "Table 6", epochs=14).exaflops)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ViT-B/16", "ViT-L/16"])
def test_analytical_vit_flops_match_the_counter(name, reference):
    with torch.device("meta"):
        model = models.create(zoo.resolve(name), 0, 224)  # num_classes=0: backbone, no head
    counted = flops.count(model, 224, device="meta", batch=1)["fwd_flops_per_img"]
    assert paper_compute.vit_forward_gflops(name, reference) * 1e9 == pytest.approx(counted, rel=0.01)
    # and the fact sheet's derived GFLOPs at 224
    entry = next(e for e in reference["model_flops"]["entries"] if e["model"] == name and e["res"] == 224)
    assert paper_compute.vit_forward_gflops(name, reference) == pytest.approx(entry["gflops"], rel=0.002)


@pytest.mark.slow
def test_forward_only_counter_matches_vit_flops_count():
    spec = zoo.resolve("R50x1+ViT-B/32")
    with torch.device("meta"):
        model = models.create(spec, 0, 224)
    full = flops.count(model, 224, device="meta", batch=1)["fwd_flops_per_img"]
    assert paper_compute.counted_forward_gflops(spec) * 1e9 == pytest.approx(full, rel=1e-9)


@pytest.mark.slow
def test_tpuv3_utilisation(table, reference):
    assert PEAKS["tpuv3"] == reference["compute"]["tpuv3_peak"]["per_core_bf16_tflops"] * 1e12
    h14 = _row(table, "ViT-H/14", "Table 2")
    assert h14.epochs == 14 and h14.tpuv3_core_days == 2500
    assert h14.tpuv3_utilisation == pytest.approx(h14.exaflops * 1e18 / (2500 * 86400 * 61.5e12))
    assert h14.tpuv3_utilisation == pytest.approx(0.32, abs=0.005)  # vit/reference.yaml: implied_throughput_per_core
    i21k = _row(table, "ViT-L/16", "Table 2", dataset="ImageNet-21k")
    assert i21k.epochs == 90 and i21k.exaflops == pytest.approx(472, rel=0.002)
    assert i21k.tpuv3_utilisation * 61.5 == pytest.approx(23.8, abs=0.1)  # TFLOP/s per core (vit/reference.yaml)
    l16 = _row(table, "ViT-L/16", "Table 2", dataset="JFT-300M")
    assert l16.tpuv3_utilisation == pytest.approx(0.43, abs=0.005) and "22%" in l16.note  # 14 ep; 7 ep in note
    bit = _row(table, "BiT-L (ResNet152x4)", "Table 2")
    assert bit.epochs == reference["baselines"]["BiT-L"]["upstream"]["epochs"] == 40
    assert 0.2 < bit.tpuv3_utilisation < 0.3
    ns = _row(table, "Noisy Student (EfficientNet-L2)", "Table 2")
    assert math.isnan(ns.exaflops) and math.isnan(ns.h100_hours) and ns.tpuv3_core_days == 12300
    assert "not estimable" in ns.note
    assert table[table.source_table == "Table 6"].tpuv3_utilisation.isna().all()


@pytest.mark.slow
def test_gpu_hours(reference, table):
    r = _row(table, "ViT-L/16", "Table 6", epochs=14)
    assert r.h100_hours == pytest.approx(r.exaflops * 1e18 / (989e12 * 0.4) / 3600)
    assert r.a100_hours == pytest.approx(r.exaflops * 1e18 / (312e12 * 0.4) / 3600)
    assert r.h100_hours == pytest.approx(1100, rel=0.01)  # 1567 EF at 40 % of 989 TFLOP/s
    half = paper_compute.paper_compute(reference, mfu=0.2)
    assert half.h100_hours.fillna(0).tolist() == pytest.approx((2 * table.h100_hours).fillna(0).tolist())


@pytest.mark.slow
def test_markdown_names_every_model(table):
    md = paper_compute.markdown(table, 0.4)
    first, _, rest = md.partition("\n\n")
    assert "303M" in first and "14.2M" in first and "40% MFU" in first and "989" in first and "61.5" in first
    assert "(paper" in rest and "nan" not in rest.lower()
    body = [line for line in rest.splitlines() if line.startswith("| Table")]
    assert len(body) == len(table)
    for model in table.model.unique():
        assert f"| {model} " in rest


def test_cli_writes_parquet(tmp_path, capsys):
    out = tmp_path / "paper_scale.parquet"
    df = paper_compute.main(paper_compute.Config(mfu=0.5, out=str(out)))
    assert "ViT-H/14" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_parquet(out), df)
