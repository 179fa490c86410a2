"""Both scale blocks validate and build; bad values stop with a clear message."""

import copy

import pytest

from repro.autopalette.config import AutoPaletteConfig
from repro.autopalette.pipeline import stored_images_per_class
from repro.common.config import load_claims, load_paper_config, project_root, read_yaml, validate
from repro.common.errors import ConfigError


@pytest.mark.parametrize("scale", ["smoke", "mid", "paper"])
def test_blocks_build(scale):
    cfg = AutoPaletteConfig.from_dict(load_paper_config("autopalette", scale))
    assert cfg.runs
    for run in cfg.runs.values():
        assert run.outputs
        assert stored_images_per_class(run) >= 1


def test_equal_storage_in_table1():
    cfg = AutoPaletteConfig.from_dict(load_paper_config("autopalette", "paper"))
    r = cfg.runs
    assert stored_images_per_class(r["autopalette_c10_ipc10"]) == 40
    assert stored_images_per_class(r["quantised_c100_ipc50"]) == 200
    assert stored_images_per_class(r["mtt_c10_ipc10"]) == 10
    assert stored_images_per_class(r["ablation_k2"]) == 10


def test_schema_rejects_unknown_key():
    doc = copy.deepcopy(read_yaml(project_root() / "config/autopalette.yaml"))
    doc["smoke"]["palette"]["colours"] = 64
    with pytest.raises(ConfigError, match="colours"):
        validate(doc, project_root() / "workflow/schemas/autopalette.schema.yaml", "config/autopalette.yaml")


def test_expert_length_is_checked():
    d = copy.deepcopy(load_paper_config("autopalette", "smoke"))
    d["distill"]["max_start_epoch"] = d["experts"]["epochs"]
    with pytest.raises(ConfigError, match="max_start_epoch"):
        AutoPaletteConfig.from_dict(d)


def test_every_claim_cell_is_produced_by_some_paper_run():
    cfg = AutoPaletteConfig.from_dict(load_paper_config("autopalette", "paper"))
    cells = {(o.table, o.row, o.column) for r in cfg.runs.values() for o in r.all_outputs()}
    for claim in load_claims("autopalette")["claims"]:
        if "measure" in claim:
            continue
        assert (claim["table"], claim["row"], claim["column"]) in cells, claim["id"]


def test_paper_block_runs_the_official_datm_algorithm():
    """The paper block's AutoPalette/DATM cells switch the DATM additions on, the MTT cells off (issue 12)."""
    cfg = AutoPaletteConfig.from_dict(load_paper_config("autopalette", "paper"))
    for name, run in cfg.runs.items():
        d = cfg.run_distill(run)
        if run.method in ("autopalette", "datm"):
            assert d.soft_labels and d.threshold is not None and d.img_lr_decay_at == pytest.approx(1 / 3), name
        elif run.method == "mtt":
            assert not d.soft_labels and d.threshold is None and d.current_max_start_epoch is None, name
            assert d.img_lr_decay_at is None, name
    c100 = cfg.run_distill(cfg.runs["autopalette_c100_ipc1"])
    assert (c100.max_start_epoch, c100.current_max_start_epoch, c100.lr_y) == (20, 10, 10.0)   # Table 10: 20
    assert cfg.run_distill(cfg.runs["autopalette_c100_ipc10"]).syn_steps == 35                   # Table 10: 35
    assert cfg.selection.pool_per_class is None and cfg.selection.lr == 0.1 and cfg.selection.greedy == "stochastic"
    assert cfg.data.zca and cfg.palette.gamma == 3.0


def test_equal_storage_of_the_median_cut_baseline():
    cfg = AutoPaletteConfig.from_dict(load_paper_config("autopalette", "paper"))
    for ds in ("c10", "c100"):
        for ipc in (1, 10, 50):
            base, ap = cfg.runs[f"datm_mediancut_{ds}_ipc{ipc}"], cfg.runs[f"autopalette_{ds}_ipc{ipc}"]
            assert stored_images_per_class(base) == stored_images_per_class(ap) == 4 * ipc
            assert cfg.run_distill(base) == cfg.run_distill(ap)          # same iterations and settings


def test_every_paper_claim_control_has_evidence_that_a_paper_run_writes():
    """Issue 10: each claim's negative control (the same set with labels moved to the next class) is written."""
    cfg = AutoPaletteConfig.from_dict(load_paper_config("autopalette", "paper"))
    cells = {(o.table, o.row, o.column) for r in cfg.runs.values() for o in r.all_outputs()}
    for claim in load_claims("autopalette")["claims"]:
        if "paper" not in claim["scales"]:
            continue
        ctl = claim["control"]
        if "measure" in ctl:
            sides = next(iter(ctl["measure"].values()))
            wanted = [(s.get("table", claim.get("table")), s.get("row", claim.get("row")),
                       s.get("column", claim.get("column"))) for s in sides]
        else:
            wanted = [(claim["table"], ctl["row"], claim["column"])]
        for cell in wanted:
            assert cell in cells, (claim["id"], cell)


def test_smoke_claims_have_their_control_rows():
    cfg = AutoPaletteConfig.from_dict(load_paper_config("autopalette", "smoke"))
    cells = {(o.table, o.row, o.column) for r in cfg.runs.values() for o in r.all_outputs()}
    smoke = [c for c in load_claims("autopalette")["claims"] if "smoke" in c["scales"]]
    assert smoke
    for claim in smoke:
        for side in next(iter(claim["control"]["measure"].values())):
            assert (claim["table"], side.get("row", claim.get("row")), claim["column"]) in cells, claim["id"]
