"""The DAG-build layout: which experiments exist and what each reads."""

import pytest

from repro.common.config import load_paper_config
from repro.strainer.config import StrainerConfig
from repro.strainer.experiments import ablation_methods, in_domain_methods, init_plan, ood_methods
from repro.strainer.workflow import StrainerLayout
from tests.conftest import make_scratch_workflow, snakemake


def test_layout_from_smoke_config():
    lay = StrainerLayout.from_config("results/smoke/strainer", load_paper_config("strainer", "smoke"))
    assert lay.experiments == ["in_domain_celebahq", "in_domain_afhq", "in_domain_mri", "ood", "ablation",
                               "inverse", "speed"]
    assert lay.data_of("ood") == ["celebahq", "afhq", "mri"]
    assert lay.data_of("in_domain_mri") == ["mri"]
    assert lay.inits_of("ood") == ["celebahq"]
    assert lay.inits_of("speed") == ["celebahq", "afhq", "mri"]
    assert lay.kind("in_domain_afhq") == "in_domain" and lay.kind("inverse") == "inverse"
    assert "speed" not in lay.figure_experiments
    assert lay.parts == lay.experiments and not lay.shapes  # no 3D experiment at smoke
    paper = StrainerLayout.from_config("r", load_paper_config("strainer", "paper"))
    assert paper.parts == paper.experiments + ["shape3d"] and paper.shapes == ("shapenet_chairs", "thai_statue")
    assert "shape3d" in paper.figures and "shape3d" in paper.figure_experiments and "shape3d" not in lay.figures
    assert StrainerLayout.from_config("r", None).experiments == []


def test_every_method_has_its_initialisation_planned():
    for scale in ("smoke", "mid", "paper"):
        cfg = StrainerConfig.from_dict(load_paper_config("strainer", scale))
        source_plan = init_plan(cfg, cfg.data.source)
        needed = {m.init for m in in_domain_methods(cfg, controls=True)} | {m.init for group in ablation_methods(cfg) for m in group}
        if cfg.data.ood_targets:
            needed |= {m.init for c in (1, 3) for m in ood_methods(cfg, c)}
        assert needed - {None} <= set(source_plan), (scale, needed - set(source_plan))
        for d in cfg.data.datasets:
            assert {m.init for m in in_domain_methods(cfg)} - {None} <= set(init_plan(cfg, d))


def test_paper_scale_has_every_fig2_method_and_table2_gray_row():
    """Fig. 2's seven methods (five SIREN-family rows, TransINR and IPC with and without TTO) and Table 2's
    STRAINER-10 (Gray) row are computed at paper scale and laid out in the claims' tables."""
    from repro.common.config import load_claims
    from repro.strainer.hypernet import LABELS

    cfg = StrainerConfig.from_dict(load_paper_config("strainer", "paper"))
    assert cfg.hypernet is not None and set(cfg.hypernet.kinds) == {"transinr", "ipc"}
    methods = [m.label for m in in_domain_methods(cfg)] + [LABELS[k] for k in cfg.hypernet.kinds]
    assert methods == ["SIREN", "SIREN fine-tuned", "Meta-learned 5K", "STRAINER (1 decoder)", "STRAINER-10",
                       "TransINR", "IPC"]
    tables = load_claims("strainer")["tables"]
    fig2_rows = methods[:5] + [f"{LABELS[k]} w{s} TTO" for k in cfg.hypernet.kinds for s in ("/o", "/")]
    assert set(fig2_rows) <= set(tables["fig2"]["rows"])
    assert set(fig2_rows[5:]) | {"SIREN", "STRAINER-10"} == set(tables["table3"]["rows"])
    assert "STRAINER-10 (Gray)" in [m.label for m in ood_methods(cfg, 3)] + [m.label for m in ood_methods(cfg, 1)]
    assert "STRAINER-10 (Gray)" in tables["table2"]["rows"]
    assert cfg.shape3d is not None and cfg.shape3d.iters == 150 and cfg.shape3d.shapes == 10
    assert StrainerConfig.from_dict(load_paper_config("strainer", "smoke")).shape3d is None  # no meshes offline


def test_paper_config_fits_kodak_for_table4():
    cfg = StrainerConfig.from_dict(load_paper_config("strainer", "paper"))
    assert cfg.table4 is not None and cfg.table4.dataset in cfg.data.ood_targets
    assert cfg.model.width in cfg.table4.siren_widths and max(cfg.table4.siren_widths) > cfg.model.width
    assert StrainerConfig.from_dict(load_paper_config("strainer", "smoke")).table4 is None  # Kodak is not offline


@pytest.mark.dag
def test_paper_dag_builds_every_strainer_table_and_fetches_kodak(tmp_path):
    """`snakemake -n --config scale=paper papers='[strainer]'`: Kodak's 24 files are fetched and prepared for the
    out-of-domain fit (Table 4), and every experiment, figure and the tables are planned."""
    wf = make_scratch_workflow(tmp_path / "wf")
    proc = snakemake(wf, "-n", "--config", "scale=paper", "papers=[strainer]")
    out = proc.stdout
    assert "strainer_prepare_kodak" in out
    assert sum(f"downloads/kodak/kodim{i:02d}.png" in out for i in range(1, 25)) == 24
    for exp in ("in_domain_celebahq", "in_domain_afhq", "in_domain_mri", "ood", "ablation", "inverse", "speed",
                "shape3d"):
        assert f"parts/{exp}_s0.csv" in out, exp
    # the 3D experiment: both meshes fetched from the registry and prepared as occupancy grids
    assert "downloads/shapenet_chairs/03001627.zip" in out and "downloads/thai_statue/xyzrgb_statuette.ply.gz" in out
    assert "prepared/shapenet_chairs/all.npz" in out and "prepared/thai_statue/all.npz" in out
    assert "strainer_shape3d" in out and "figures/paper/strainer_shape3d.pdf" in out
    # Tables 1-6 (and Fig. 2's and Fig. 12's tables) are rendered
    for table in ("table1", "table2", "table3", "table4", "table5", "table6", "fig2", "fig12"):
        assert f"tables/strainer_{table}.tex" in out, table
    assert "tables_strainer" in out and "strainer_figure" in out


def test_paper_plan_prices_the_hypernetworks_and_the_3d_job():
    """`./suite plan`: the source dataset's inits job also trains TransINR and IPC (2 x 20,000 steps at the assumed
    60 ms, config/plan.yaml), the other datasets' do not; the 3D job is priced by its points (64^3 against one
    178 x 178 image at the measured 2.72 ms per iteration): (5000 x 10 + 3 x 150) x 2.72 ms x 262,144 / 31,684."""
    from pathlib import Path

    import pytest as _pytest

    from repro.common.plan import Planner

    planner = Planner("paper", Path(__file__).resolve().parents[2])
    source = planner.estimate("strainer_inits", {"dataset": "celebahq", "seed": "0"})
    other = planner.estimate("strainer_inits", {"dataset": "afhq", "seed": "0"})
    assert source.hours * 3600 - other.hours * 3600 == _pytest.approx(2 * 20_000 * 0.060, rel=1e-9)
    assert not source.measured
    s3 = planner.estimate("strainer_shape3d", {"seed": "0"})
    assert s3.hours * 3600 == _pytest.approx((5000 * 10 + 3 * 150) * 2.72e-3 * 64 ** 3 / 178 ** 2, rel=1e-9)
