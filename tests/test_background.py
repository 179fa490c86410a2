"""The session's background run (tests/background.py): a failure reaches the waiting tests with its log, and an
ended session leaves nothing running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests import background

pytestmark = pytest.mark.dag


def test_a_failed_phase_is_raised_with_its_log(tmp_path):
    (tmp_path / "driver.pid").write_text("0")
    (tmp_path / "data.json").write_text(json.dumps({"rc": 1, "seconds": 3.0, "why": ""}))
    (tmp_path / "data.log").write_text("...\nError in rule prepare_cifar:\n    jobid: 4\n")
    with pytest.raises(RuntimeError, match=r"(?s)background data run failed \(exit 1\).*Error in rule prepare_cifar"):
        background.wait(tmp_path, "data")
    with pytest.raises(RuntimeError, match="never started"):
        background.wait(tmp_path / "elsewhere", "smoke")


def test_the_driver_stops_when_its_session_is_gone(tmp_path, monkeypatch):
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))   # nothing shared is touched
    state = tmp_path / "state"
    background.start(state, owner.pid, smoke=True)
    driver = int((state / "driver.pid").read_text())
    background.start(state, owner.pid, smoke=True)                   # a second caller starts nothing
    assert int((state / "driver.pid").read_text()) == driver
    owner.wait()
    deadline = time.monotonic() + 30
    while os.waitpid(driver, os.WNOHANG) == (0, 0):   # the driver is this process's child: reap it when it ends
        if time.monotonic() > deadline:
            background.stop(state)
            pytest.fail("the driver was still running 30 s after its session ended")
        time.sleep(0.3)
    assert not (state / "smoke.json").exists()          # it never claimed a smoke run it did not finish
