"""The paper and mid DAGs of autopalette build (dry run): every run of the block is planned, with the experts and
the graph-cut selections it reads, and every claimed cell of Tables 1, 3, 4, 5, 7 and 8 has a run that writes it."""

import re

import pytest

from repro.autopalette.config import AutoPaletteConfig
from repro.autopalette.pipeline import selection_colours
from repro.common.config import load_claims, load_paper_config
from tests.conftest import make_scratch_workflow, snakemake


def planned(tmp_path, scale: str) -> str:
    wf = make_scratch_workflow(tmp_path / "wf")
    proc = snakemake(wf, "-n", "--printshellcmds", "--config", f"scale={scale}",
                     "papers=[autopalette]", timeout=600)
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("scale", ["paper", "mid"])
def test_dag_plans_every_run_expert_and_selection(tmp_path, scale):
    cfg = AutoPaletteConfig.from_dict(load_paper_config("autopalette", scale))
    out = planned(tmp_path, scale)
    runs = set(re.findall(r"autopalette run .*?--run (\S+)", out))
    assert runs == set(cfg.runs), set(cfg.runs) ^ runs
    for ds in cfg.data.datasets:
        experts = set(re.findall(rf"--dataset {ds} --index (\d+)", out))
        assert experts == {str(i) for i in range(cfg.experts.num_experts)}
    selections = set(re.findall(r"autopalette select .*?--dataset (\S+) --colors (\d+)", out))
    needed = {(r.dataset, str(selection_colours(r))) for r in cfg.runs.values() if selection_colours(r)}
    assert selections == needed
    if scale == "paper":
        assert ("cifar100", "64") in selections           # the CIFAR-100 selections that used to crash
        claimed = {(c["table"], c.get("row"), c.get("column")) for c in load_claims("autopalette")["claims"]
                   if "measure" not in c and "paper" in c["scales"]}
        written = {(o.table, o.row, o.column) for r in cfg.runs.values() for o in r.all_outputs()}
        assert claimed <= written, claimed - written
        assert {t for t, _, _ in claimed} >= {"table1", "table3", "table4", "table7", "table8"}
