"""Data-parallel training under torchrun (lab.runs.distributed): 2 CPU processes (gloo) against 1.

One ``torchrun --nproc_per_node 2`` launch of this file (``--worker``) runs, through the CLI (``lab.cli.run``, as
``torchrun -m lab ...`` would), a trajectory method (consistency), a distribution-matching method (dmd: generator
and fake score, two DDP-wrapped networks) and a KD method (kd on digits), 30 steps each on their tiny configs,
plus the resume under 2 ranks of a run started by 1 process. In the same test the same runs go through one
process. Every rank draws the same global batch from the shared seeded generator and keeps its slice, and DDP
averages the gradients, so the logged metrics agree up to float error: the tolerance is 1e-4 (absolute, on
losses of order 0.01-3; measured differences are ~1e-6). Rank 1 records every run-folder write it attempts; it
must attempt none.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

TOL = 1e-4
STEPS = 30
DMD_EXTRA = {"n_pairs": 64, "pair_steps": 4}


def _runs():
    """(name, CLI argv without --out) of the three compared runs."""
    from lab.methods import get_method

    out = []
    for m in ("consistency", "dmd"):
        c = get_method(m)
        cfg = {**c.tiny, **(DMD_EXTRA if m == "dmd" else {})}
        out.append((m, ["distill", "--method", m, "--teacher", c.tiny_teacher, "--steps", str(STEPS),
                        "--config", json.dumps(cfg), "--checkpoint-every", "10", "--quiet"]))
    out.append(("kd", ["kd", "run", "--method", "kd", "--task", "digits", "--steps", str(STEPS),
                       "--config", json.dumps({"batch": 32, "eval_every": 10}), "--checkpoint-every", "10", "--quiet"]))
    return out


def _worker(root: Path) -> None:
    """Under torchrun: the three runs and the resume, through the CLI; rank 1 logs any run-folder write."""
    torch.set_num_threads(1)
    from lab.cli import run as cli
    from lab.runs.run import Run

    rank = int(os.environ["RANK"])
    writes = []
    if rank != 0:
        def spy(name, orig):
            def f(*a, **k):
                writes.append(name)
                return orig(*a, **k)
            return f
        create = Run.create  # bound to the class
        Run.create = staticmethod(spy("create", create))
        for name in ("write_config", "write_metrics", "write_snapshot", "save_checkpoint", "acquire"):
            setattr(Run, name, spy(name, getattr(Run, name)))
    codes = {}
    for name, argv in _runs():
        codes[name] = cli([*argv, "--out", str(root / f"{name}_2")])
    codes["resume"] = cli(["distill", "--resume", str(root / "resume"), "--steps", str(STEPS), "--quiet"])
    (root / f"rank{rank}.json").write_text(json.dumps({"codes": codes, "writes": writes}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _diff(a: Path, b: Path, common: bool = False) -> dict:
    x, y = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
    if common:  # a run resumed at step 15 also logged that step
        x, y = (d[d["step"].isin(set(x["step"]) & set(y["step"]))].reset_index(drop=True) for d in (x, y))
    assert list(x["step"]) == list(y["step"]) and list(x.columns) == list(y.columns)
    cols = [c for c in x.columns if c not in ("step", "stage")]
    return {c: float((x[c] - y[c]).abs().max()) for c in cols}


def test_two_processes_match_one_and_resume_across_world_sizes(tmp_path):
    from lab.cli import run as cli
    from lab.io import load_tensors

    # a consistency run started by ONE process, stopped at step 15: resumed to 30 by the 2-rank launch below
    assert cli([*_runs()[0][1], "--steps", "15", "--out", str(tmp_path / "resume")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LAB_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                "127.0.0.1", "--master_port", str(_free_port())]
    proc = subprocess.Popen([*torchrun, __file__, "--worker", str(tmp_path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for name, argv in _runs():  # meanwhile the same runs in one process
        assert cli([*argv, "--out", str(tmp_path / f"{name}_1")]) == 0
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert set(r0["codes"].values()) == {0} and set(r1["codes"].values()) == {0}, (r0, r1)
    assert r1["writes"] == [], f"rank 1 wrote to a run folder: {r1['writes']}"
    diffs = {name: _diff(tmp_path / f"{name}_1", tmp_path / f"{name}_2") for name, _ in _runs()}
    print("max |1 process - 2 processes| per metric:", json.dumps(diffs))
    for name, d in diffs.items():
        assert max(d.values()) < TOL, (name, d)
    # resume 1 -> 2 ranks: the same final student as the straight 1-process run
    w1 = load_tensors(tmp_path / "consistency_1" / "weights.safetensors")
    w2 = load_tensors(tmp_path / "resume" / "weights.safetensors")
    wdiff = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    print("resumed (1 -> 2 ranks) vs straight 1-process weights, max |diff|:", wdiff)
    assert set(w1) == set(w2) and wdiff < TOL
    rd = _diff(tmp_path / "consistency_1", tmp_path / "resume", common=True)
    print("resumed vs straight metrics, max |diff|:", json.dumps(rd))
    assert max(rd.values()) < TOL, rd


def test_methods_ddp_cannot_run_are_refused_by_name():
    from lab.errors import LabError
    from lab.methods import get_method
    from lab.runs import distributed

    m = get_method("scm")
    tr = m(m.tiny_teacher, "toy2d:8gaussians", m.tiny, seed=0)
    try:
        distributed.check_supported("distill", tr)
    except LabError as e:
        msg = str(e)
    else:
        raise AssertionError("scm was not refused")
    assert "scm cannot run under torchrun" in msg and "jvp" in msg and "\n" not in msg
    try:
        distributed.check_supported("dd", None)
    except LabError as e:
        assert "dataset distillation" in str(e)
    else:
        raise AssertionError("dd was not refused")
    cm = get_method("consistency")
    distributed.check_supported("distill", cm(cm.tiny_teacher, "toy2d:8gaussians", cm.tiny, seed=0))  # no error


if __name__ == "__main__" and "--worker" in sys.argv:
    _worker(Path(sys.argv[sys.argv.index("--worker") + 1]))
