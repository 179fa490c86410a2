"""The conda env files pin exactly what the virtual environment pins."""

from __future__ import annotations

import yaml


def _pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line and "==" in line:
            name, version = line.split("==")
            out[name.strip().lower().replace("_", "-")] = version.strip()
    return out


def test_env_files_match_requirements(root):
    req = _pins((root / "requirements.txt").read_text().splitlines())
    lock = _pins((root / "requirements.lock").read_text().splitlines())
    envs = sorted((root / "envs").glob("*.yaml"))
    assert envs, "no env files"
    for path in envs:
        doc = yaml.safe_load(path.read_text())
        pip = next(d["pip"] for d in doc["dependencies"] if isinstance(d, dict) and "pip" in d)
        pins = _pins(pip)
        assert len(pins) == len(pip), f"{path.name}: every pip entry must be pinned with =="
        for name, version in pins.items():
            assert req.get(name) == version, f"{path.name}: {name}=={version}, requirements.txt has {req.get(name)}"
    for name, version in req.items():
        assert lock.get(name) == version, f"requirements.lock has {name}=={lock.get(name)}, requirements.txt {version}"


def test_every_rule_declares_an_env_and_a_log(root):
    import re
    pattern = re.compile(r"^[ \t]*rule[ \t]*(\w*)[ \t]*:", re.M)
    for smk in sorted((root / "workflow/rules").glob("*.smk")):
        text = smk.read_text()
        starts = list(pattern.finditer(text))
        for i, m in enumerate(starts):
            name = m.group(1) or "(rule defined in a loop)"
            body = text[m.end(): starts[i + 1].start() if i + 1 < len(starts) else len(text)]
            assert "conda:" in body, f"{smk.name}: rule {name} has no conda env"
            assert "log:" in body, f"{smk.name}: rule {name} has no log"
