"""The paper and mid DAGs of autopalette build (dry run): every run of the block is planned, with the experts and
the graph-cut selections it reads; every claimed cell of Tables 1, 3, 4, 5, 7 and 8 has a run that writes it, and at
paper scale every cell of the paper's Tables 1 (our methods' rows), 2, 5 and 6 (the TM and AutoPalette rows on VGG11,
AlexNet and ResNet18, each with its shifted-label control cell) and the DM columns of Table 5 is written by a planned
run. The paper DAG is planned against a scratch mirror that holds an
(empty) ImageNet-1k folder, so the ImageNet-only subsets of Table 2 are planned too; without it they are left out
(test_imagenet_only_subsets_are_left_out_without_the_folder)."""

import os
import re
from pathlib import Path

import pytest

from repro.autopalette.config import AutoPaletteConfig
from repro.autopalette.pipeline import selection_colours
from repro.common.config import load_claims, load_paper_config
from tests.conftest import make_scratch_workflow, snakemake


TABLE2 = ("ImageNette", "ImageWoof", "ImageFruit", "ImageMeow", "ImageSquawk", "ImageYellow")


def scratch_mirror(tmp_path: Path) -> Path:
    """The real mirror's entries (linked) plus an empty ImageNet-1k folder layout."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    real = Path(os.environ.get("REPRO_MIRROR", Path(__file__).resolve().parents[3] / "shared" / "mirror"))
    if real.is_dir():
        for p in real.iterdir():
            (mirror / p.name).symlink_to(p)
    for split in ("train", "val"):
        (mirror / "imagenet" / split).mkdir(parents=True)
    return mirror


def planned(tmp_path, scale: str) -> str:
    wf = make_scratch_workflow(tmp_path / "wf")
    proc = snakemake(wf, "-n", "--printshellcmds", "--config", f"scale={scale}",
                     "papers=[autopalette]", timeout=600)
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("scale", ["paper", "mid"])
def test_dag_plans_every_run_expert_and_selection(tmp_path, scale, monkeypatch):
    if scale == "paper":
        monkeypatch.setenv("REPRO_MIRROR", str(scratch_mirror(tmp_path)))
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
        planned_cells = {(o.table, o.row, o.column) for name in runs for o in cfg.runs[name].all_outputs()}
        for c in load_claims("autopalette")["claims"]:             # comparisons and controls read planned cells
            if "paper" not in c["scales"]:
                continue
            for spec in (c, c["control"]):
                for side in (spec.get("measure") or {}).get("diff", []):
                    cell = (c["table"], side.get("row", c.get("row")), side.get("column", c.get("column")))
                    assert cell in planned_cells, (c["id"], cell)
        for ipc in (1, 10, 50):
            for ds in ("C10", "C100"):
                for row in ("TM (MTT)", "DATM", "AutoPalette", "DATM on Median-Cut-64 images (4x images)"):
                    assert ("table1", row, f"{ds} IPC{ipc}") in planned_cells
            for ds in ("CIFAR10", "CIFAR100"):
                for col in ("DM vanilla", "DM + AutoPalette", "TM vanilla", "TM + AutoPalette"):
                    assert ("table5", f"{ds} IPC{ipc}", col) in planned_cells, (ds, ipc, col)
            for row in ("TM", "AutoPalette"):
                for arch in ("VGG11", "AlexNet", "ResNet18"):
                    for r in (row, f"{row} (labels shifted, control)"):
                        assert ("table6", r, f"{arch} IPC{ipc}") in planned_cells, (r, arch, ipc)
        for row in ("TM", "AutoPalette"):
            for col in TABLE2:
                assert ("table2", row, col) in planned_cells, (row, col)
        for t in ("table3", "table4", "table7", "table8"):
            assert any(c[0] == t for c in planned_cells)
        # Table 6 has a claim with a negative control per architecture and IPC, all at paper scale
        control_row = lambda c: c["control"]["measure"]["diff"][0]["row"]     # noqa: E731
        t6 = {c["column"] for c in load_claims("autopalette")["claims"] if c["table"] == "table6"
              and "paper" in c["scales"] and control_row(c).endswith("(labels shifted, control)")}
        assert t6 == {f"{arch} IPC{ipc}" for arch in ("VGG11", "AlexNet", "ResNet18") for ipc in (1, 10, 50)}
        # DM runs read no experts, DM + AutoPalette only for its label init; the subsets are prepared by the data
        # rule, ImageNette/ImageWoof from their fetched archives
        assert "prepare-imagenet-subset --subset imagefruit" in out
        assert re.search(r"--run dm_c10_ipc1 .*--experts", out) is None
        assert re.search(r"--run dm_autopalette_c10_ipc1 .*--experts", out)


def test_imagenet_only_subsets_are_left_out_without_the_folder(tmp_path, capsys):
    from repro.autopalette.rules import plannable
    from repro.common.data.workflow import DataLayout

    layout = DataLayout(str(tmp_path / "data"), str(tmp_path / "mirror"), "paper")
    assert plannable("r", {"dataset": "imagenette"}, layout.imagenet_subset_source, layout.prepared)
    assert plannable("r", {"dataset": "cifar10"}, layout.imagenet_subset_source, layout.prepared)
    assert not plannable("r", {"dataset": "imagemeow"}, layout.imagenet_subset_source, layout.prepared)
    assert "needs an ImageNet-1k folder" in capsys.readouterr().err
    prepared = Path(layout.prepared("imagemeow", "train"))
    prepared.parent.mkdir(parents=True)
    prepared.touch()
    assert plannable("r", {"dataset": "imagemeow"}, layout.imagenet_subset_source, layout.prepared)
