"""Config validation: a misspelt key, an unknown scale or a wrong type stops with one clear message."""

from __future__ import annotations

import pytest
import yaml

from repro.common.config import config_hash, load_claims, load_paper_config, validate_run_config
from repro.common.errors import ConfigError
from tests.conftest import make_scratch_workflow, snakemake


def _scratch_config(tmp_path, root):
    dest = tmp_path / "wf"
    (dest / "config").mkdir(parents=True)
    for sub in ("config", "workflow"):
        import shutil
        shutil.copytree(root / sub, dest / sub, dirs_exist_ok=True)
    return dest


def test_valid_configs_load(root):
    for scale in ("smoke", "paper"):
        block = load_paper_config("lowdim", scale, root=root)
        assert block["k"] == 8
    validate_run_config(yaml.safe_load((root / "config/config.yaml").read_text()), root=root)


def test_misspelt_key_is_named_with_suggestion(tmp_path, root):
    dest = _scratch_config(tmp_path, root)
    path = dest / "config/lowdim.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["smoke"]["curved"]["sampels"] = doc["smoke"]["curved"].pop("samples")
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as err:
        load_paper_config("lowdim", "smoke", root=dest)
    msg = str(err.value)
    assert "config/lowdim.yaml" in msg and "smoke.curved" in msg
    assert "unknown key 'sampels'" in msg and "did you mean 'samples'" in msg


def test_wrong_type_is_named(tmp_path, root):
    dest = _scratch_config(tmp_path, root)
    path = dest / "config/lowdim.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["paper"]["k"] = "eight"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"key 'paper.k': 'eight' is not of type 'integer'"):
        load_paper_config("lowdim", "smoke", root=dest)


def test_unknown_scale_and_missing_block(root):
    with pytest.raises(ConfigError, match="unknown scale 'huge'"):
        load_paper_config("lowdim", "huge", root=root)
    with pytest.raises(ConfigError, match="no block for scale 'mid'"):
        load_paper_config("lowdim", "mid", root=root)
    with pytest.raises(ConfigError, match="scale"):
        validate_run_config({"scale": "huge", "papers": [], "seeds": [0], "data_dir": "data"}, root=root)


def test_claims_registries_validate(root):
    for path in sorted((root / "config/claims").glob("*.yaml")):
        reg = load_claims(path.stem, root=root)
        ids = [c["id"] for c in reg["claims"]]
        assert len(ids) == len(set(ids)), f"{path}: duplicate claim ids"
        for c in reg["claims"]:
            assert c.get("table") in reg["tables"] or "measure" in c, f"{c['id']}: table not declared in {path}"


def test_config_hash_is_stable_and_sensitive():
    a = {"x": 1, "y": [1, 2]}
    assert config_hash(a) == config_hash({"y": [1, 2], "x": 1})
    assert config_hash(a) != config_hash({"x": 2, "y": [1, 2]})


@pytest.mark.dag
def test_dag_refuses_bad_config_with_one_message(tmp_path):
    wf = make_scratch_workflow(tmp_path / "wf")
    proc = snakemake(wf, "-n", "--config", "scale=huge", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "key 'scale'" in out and "is not one of ['smoke', 'mid', 'paper']" in out
    path = wf / "config/lowdim.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["smoke"]["exact"]["dimz"] = doc["smoke"]["exact"].pop("dims")
    path.write_text(yaml.safe_dump(doc))
    proc = snakemake(wf, "-n", check=False)
    assert proc.returncode != 0
    assert "unknown key 'dimz' (did you mean 'dims'?)" in proc.stdout + proc.stderr


@pytest.mark.dag
def test_lint_is_clean(tmp_path):
    wf = make_scratch_workflow(tmp_path / "wf")
    proc = snakemake(wf, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


@pytest.mark.dag
def test_slurm_profile_builds_the_paper_dag(tmp_path):
    """The paper-scale DAG builds, under the SLURM profile (one build for both: the paper DAG is the largest)."""
    wf = make_scratch_workflow(tmp_path / "wf")
    proc = snakemake(wf, "-n", "--profile", str(wf / "workflow/profiles/slurm"), "--config", "scale=paper")
    assert all(rule in proc.stdout for rule in ("ddpm_train", "strainer_fit", "lowdim_curved", "tina_generator",
                                                "autopalette_run", "selfcheck_fid_halves")), proc.stdout[-3000:]


def test_seeds_from_the_command_line_are_whole_numbers(root):
    """`snakemake --config seeds=[1,2]` passes the list's items as strings."""
    cfg = validate_run_config({**yaml.safe_load((root / "config/config.yaml").read_text()), "seeds": ["1", "2"]},
                              root=root)
    assert cfg["seeds"] == [1, 2]
    with pytest.raises(Exception, match="seeds"):
        validate_run_config({**yaml.safe_load((root / "config/config.yaml").read_text()), "seeds": ["x"]}, root=root)
