"""The DAG-build layout: which experiments exist and what each reads."""

from repro.common.config import load_paper_config
from repro.strainer.config import StrainerConfig
from repro.strainer.experiments import ablation_methods, in_domain_methods, init_plan, ood_methods
from repro.strainer.workflow import StrainerLayout


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
