"""A run killed mid-way is finished by `lab distill --resume DIR`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd

from lab.runs import Run

SMALL = json.dumps({"batch": 64, "student_net": {"type": "mlp", "hidden": 32, "depth": 2, "t_dim": 16}})


def lab_cmd(*args):
    return [sys.executable, "-m", "lab", *args]


def test_killed_run_resumes_from_the_cli(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(lab_cmd("distill", "--method", "consistency", "--teacher", "toy2d/8gaussians/analytic",
                                    "--steps", "1500", "--config", SMALL, "--out", str(out), "--quiet"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.safetensors").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint written within 120 s"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # no clean shutdown: only atomically written files survive
    proc.wait()
    assert not (out / "model.json").exists()
    done_before = Run.open(out).load_checkpoint()["trainable"]["it"]
    assert 0 <= done_before < 1500

    bad = subprocess.run(lab_cmd("distill", "--resume", str(out), "--method", "reflow"), capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr

    res = subprocess.run(lab_cmd("distill", "--resume", str(out), "--quiet"), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (out / "model.json").exists()
    m = pd.read_csv(out / "metrics.csv")
    assert m["step"].iloc[-1] == 1500 and m["step"].is_monotonic_increasing

    none = subprocess.run(lab_cmd("distill", "--resume", str(tmp_path / "nothing")), capture_output=True, text=True)
    assert none.returncode == 2 and "not a run folder" in none.stderr
