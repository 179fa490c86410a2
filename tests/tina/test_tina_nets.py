"""The ResNet-20 backbone of the `resnet20_after` head, and the CLI's error path."""

import subprocess
import sys

import torch

from repro.common.resnet import resnet20


def test_resnet20_size_features_and_head():
    m = resnet20(10)
    n = sum(p.numel() for p in m.parameters())
    assert 0.26e6 < n < 0.28e6  # He et al. 2016, Table 6: 0.27M
    assert sum(p.numel() for p in m.classifier.parameters()) == 650  # Tina's generated ResNet-20 head
    x = torch.randn(2, 3, 32, 32)
    assert m.embed(x).shape == (2, 64)
    m.eval()
    assert torch.allclose(m(x), m.classifier(m.embed(x)))


def test_cli_reports_a_missing_zoo_in_one_line(tmp_path, root):
    r = subprocess.run([sys.executable, "-m", "repro.tina", "evaluate", "--scale", "smoke", "--zoo",
                        str(tmp_path / "zoo.pt"), "--text", str(tmp_path / "t.npz"), "--test", str(tmp_path / "test.npz"), "--gen", "tina=x.pt", "--seed",
                        "0", "--out", str(tmp_path / "p.csv"), "--out-npz", str(tmp_path / "p.npz")],
                       cwd=root, capture_output=True, text=True, env={"PYTHONPATH": str(root / "src"), "PATH": ""})
    assert r.returncode == 2
    assert "model zoo not found; run the tina_zoo rule" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "p.csv").exists()
