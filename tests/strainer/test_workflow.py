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
    for exp in ("in_domain_celebahq", "in_domain_afhq", "in_domain_mri", "ood", "ablation", "inverse", "speed"):
        assert f"parts/{exp}_s0.csv" in out, exp
    assert "tables_strainer" in out and "strainer_figure" in out
