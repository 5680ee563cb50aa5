"""A run killed mid-way is finished by `lab distill --resume DIR`, to the same bits as a run never killed.

The kill lands at a known step, not at a wall-clock moment: the CLI process runs with the lab's test hook
``LAB_TEST_PAUSE=checkpoint-written@3`` (:func:`lab.io.pause_here`), so it stops inside its third checkpoint write
(checkpoints at steps 0, 100, 200 with ``--checkpoint-every 100``), after the new file is complete and before it is
committed, and is SIGKILLed there. The newest committed checkpoint is then exactly the one of step 100.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import torch

from lab.io import load_tensors
from lab.runs import Run
from lab.runs.recipes import distill_run

NET = {"type": "mlp", "hidden": 32, "depth": 2, "t_dim": 16}
CONFIG = {"batch": 64, "student_net": NET}
TEACHER = "toy2d/8gaussians/analytic"
STEPS, EVERY, KILL_AT = 300, 100, 3  # the 3rd checkpoint write is step 200's; step 100's is the newest committed


def lab_cmd(*args):
    return [sys.executable, "-m", "lab", *args]


def test_killed_run_resumes_from_the_cli(tmp_path):
    out, marker = tmp_path / "run", tmp_path / "paused"
    env = {**os.environ, "LAB_TEST_PAUSE": f"checkpoint-written@{KILL_AT}", "LAB_TEST_PAUSE_FILE": str(marker),
           "LAB_TEST_PAUSE_SECONDS": "120"}
    proc = subprocess.Popen(lab_cmd("distill", "--method", "consistency", "--teacher", TEACHER, "--steps", str(STEPS),
                                    "--checkpoint-every", str(EVERY), "--config", json.dumps(CONFIG),
                                    "--out", str(out), "--quiet"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # meanwhile, the same run never killed (in this process: the same seed, config and one thread)
    ref = distill_run("consistency", TEACHER, tmp_path / "ref", steps=STEPS, config=CONFIG, progress=False,
                      checkpoint_every=EVERY).folder
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the process did not reach its third checkpoint write within 120 s"
        time.sleep(0.1)
    assert marker.read_text().strip() == f"checkpoint-written@{KILL_AT}"
    os.kill(proc.pid, signal.SIGKILL)  # no clean shutdown: only atomically written files survive
    proc.wait()
    assert not (out / "model.json").exists()
    assert Run.open(out).load_checkpoint()["trainable"]["it"] == EVERY  # step 200's write was never committed
    # snapshots (every 30 steps): the killed process wrote those of steps 30..180
    stamp = {int(p.stem.split("_")[1]): (p.stat().st_ino, p.stat().st_mtime_ns) for p in Run(out).snapshots()}
    assert sorted(stamp) == list(range(30, 2 * EVERY, 30)), sorted(stamp)

    bad = subprocess.run(lab_cmd("distill", "--resume", str(out), "--method", "reflow"), capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
    assert "--resume takes only the run folder" in bad.stderr, bad.stderr

    res = subprocess.run(lab_cmd("distill", "--resume", str(out), "--quiet"), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (out / "model.json").exists()
    m = pd.read_csv(out / "metrics.csv")
    assert m["step"].iloc[-1] == STEPS and m["step"].is_monotonic_increasing and m["step"].is_unique
    # it went on from step 100, not from scratch: the snapshots up to step 100 are the killed process's files,
    # those after it were written again
    after = {int(p.stem.split("_")[1]): (p.stat().st_ino, p.stat().st_mtime_ns) for p in Run(out).snapshots()}
    assert sorted(after) == list(range(30, STEPS + 1, 30)), sorted(after)
    kept = [k for k in stamp if after[k] == stamp[k]]
    assert kept == [k for k in stamp if k <= EVERY], (kept, stamp, after)
    # resumed from step 100 with its optimiser, RNG and metrics rows: the same bits as the uninterrupted run
    pd.testing.assert_frame_equal(m, pd.read_csv(ref / "metrics.csv"))
    got, want = load_tensors(out / "weights.safetensors"), load_tensors(ref / "weights.safetensors")
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want), [k for k in want if not torch.equal(got[k], want[k])]

    none = subprocess.run(lab_cmd("distill", "--resume", str(tmp_path / "nothing")), capture_output=True, text=True)
    assert none.returncode == 2 and "not a run folder" in none.stderr
