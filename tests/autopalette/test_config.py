"""Both scale blocks validate and build; bad values stop with a clear message."""

import copy

import pytest

from repro.autopalette.config import AutoPaletteConfig
from repro.autopalette.pipeline import stored_images_per_class
from repro.common.config import load_claims, load_paper_config, project_root, read_yaml, validate
from repro.common.errors import ConfigError


@pytest.mark.parametrize("scale", ["smoke", "paper"])
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
    cells = {(o.table, o.row, o.column) for r in cfg.runs.values() for o in r.outputs}
    for claim in load_claims("autopalette")["claims"]:
        if "measure" in claim or claim["row"] == "DATM":
            continue
        assert (claim["table"], claim["row"], claim["column"]) in cells, claim["id"]
