"""Digits end to end: the shipped teacher through diffusers, labels reaching every network of a method,
and clear refusals (2D-only methods, an unavailable device)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import lab
from lab.cli import app


@pytest.fixture(scope="module")
def teacher():
    return lab.zoo.load("digits/teacher", train_if_missing=False)


def test_shipped_teacher_exports_to_plain_diffusers_with_the_same_images(teacher, tmp_path):
    from diffusers import DiffusionPipeline

    out = tmp_path / "pipe"
    r = CliRunner().invoke(app, ["export", "digits/teacher", "--format", "diffusers", "--out", str(out), "--nfe", "4",
                                 "--label", "3"])
    assert r.exit_code == 0, r.output
    pipe = DiffusionPipeline.from_pretrained(out)
    img = pipe(batch_size=6, num_inference_steps=4, generator=torch.Generator().manual_seed(5), output_type="np").images
    x = teacher.sample(6, nfe=4, seed=5, y=torch.full((6,), 3)).x
    ours = (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    other = (teacher.sample(6, nfe=4, seed=5, y=torch.full((6,), 8)).x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert np.abs(img - ours).max() < 1e-4 < np.abs(img - other).max()


def test_method_labels_reach_teacher_and_student(teacher):
    """The labels of a batch are bound to every denoiser of the method: the same x_t with other labels
    gives other teacher and student predictions (and the target follows)."""
    m = lab.get_method("consistency")(teacher, "digits", {"steps": 1, "batch": 8}, seed=0)
    assert m.conditional and m.n_classes == 10
    b = m.probe_batch(8, 0.6, seed=1)
    a1 = m.targets(b, t=0.6)
    b2 = {**b, "y": (b["y"] + 1) % 10}
    a2 = m.targets(b2, t=0.6)
    for k in ("teacher", "student", "target"):
        assert (getattr(a1, k) - getattr(a2, k)).abs().max() > 1e-3, k
    assert torch.equal(m.targets(b, t=0.6).target, a1.target)  # deterministic given the labels


def _lab(*args):
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "LAB_NUM_THREADS": "1"})


def test_point_only_methods_and_unavailable_devices_are_refused(tmp_path, monkeypatch):
    r = _lab("distill", "--method", "add", "--teacher", "digits/teacher", "--out", str(tmp_path / "a"), "--quiet")
    assert r.returncode == 2 and "add supports points data" in r.stderr and "consistency" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "a").exists()
    r = _lab("distill", "--method", "consistency", "--teacher", "digits/teacher", "--device", "tpu",
             "--out", str(tmp_path / "b"), "--quiet")
    assert r.returncode == 2 and "unknown device 'tpu'; allowed: auto, cpu, cuda" in r.stderr
    assert not (tmp_path / "b").exists()
    # a machine without CUDA (simulated, so the check runs on any machine)
    from lab.errors import LabError
    from lab.trainable import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LabError, match="CUDA is not available; allowed here: auto, cpu"):
        resolve_device("cuda")
    assert resolve_device("auto").type in ("cpu", "mps")


def test_cli_samples_a_zoo_student_for_a_label(tmp_path):
    from lab.metrics.images import predict

    out = tmp_path / "sevens.npy"
    r = _lab("sample", "digits/consistency", "--nfe", "1", "--n", "20", "--label", "7", "--out", str(out))
    assert r.returncode == 0, r.stderr
    x = np.load(out)
    assert x.shape == (20, 1, 8, 8)
    assert (predict(torch.from_numpy(x)) == 7).mean() >= 0.8  # the shipped classifier agrees
    r = _lab("sample", "digits/consistency", "--n", "2", "--label", "12", "--out", str(tmp_path / "bad.npy"))
    assert r.returncode == 2 and "allowed: 0..9" in r.stderr and not (tmp_path / "bad.npy").exists()


def test_cli_teacher_train_on_digits_with_ema(tmp_path):
    """`lab teacher train --data digits` builds the class-conditional UNet; --ema is recorded and applied,
    and a bad decay is refused before any folder exists."""
    from lab.diffusion.generators import load_generator

    out = tmp_path / "t"
    r = _lab("teacher", "train", "--data", "digits", "--steps", "3", "--ema", "0.5", "--out", str(out), "--quiet",
             "--config", '{"conditional": true, "batch": 8}')
    assert r.returncode == 0, r.stderr
    gen = load_generator(out)
    assert gen.shape == (1, 8, 8) and gen.denoiser.net.n_classes == 10 and gen.card["recipe"]["ema"] == 0.5
    r = _lab("teacher", "train", "--data", "digits", "--steps", "3", "--ema", "1.5", "--out", str(tmp_path / "bad"))
    assert r.returncode == 2 and "allowed: a float in [0, 1)" in r.stderr and not (tmp_path / "bad").exists()
