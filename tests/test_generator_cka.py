"""lab.probes.generator_cka: layer-by-layer CKA between a teacher's and a student's networks on matched x_t."""
from __future__ import annotations

import pytest
import torch

import lab
from lab.diffusion.denoiser import Denoiser
from lab.diffusion.generators import FlowGenerator
from lab.errors import LabError
from lab.nets import build_net, net_spec
from lab.probes.generator_cka import default_layers, generator_layer_cka


@pytest.fixture(scope="module")
def teacher():
    return lab.zoo.load("toy2d/8gaussians/teacher", train_if_missing=False)


def _diag(df):
    d = df[df.teacher_layer == df.student_layer]
    return d.groupby("teacher_layer", sort=False).cka.mean()


def test_a_network_against_itself_is_one_on_the_diagonal(teacher):
    df = generator_layer_cka(teacher, teacher, n=128, times=(0.3, 0.7))
    assert set(df.t) == {0.3, 0.7}
    assert list(df.teacher_layer.unique()) == default_layers(teacher.denoiser.net)
    assert (abs(_diag(df).values - 1.0) < 1e-6).all()
    off = df[df.teacher_layer != df.student_layer].cka
    assert (off < 0.999).any() and df.cka.between(0, 1 + 1e-9).all()


@pytest.mark.parametrize("seed", [7, 8])
def test_a_distilled_student_is_closer_to_its_teacher_than_a_fresh_network(teacher, seed):
    """The progressive student starts from the teacher's weights and regresses its outputs: its hidden layers
    stay closer (by CKA on the same x_t) than those of a freshly initialised network of the same shape.
    Tuned on data seeds 0..4 with init seeds 100..104 (margin 0.08-0.12 on the middle layers, spread 0.03)."""
    student = lab.zoo.load("toy2d/8gaussians/progressive", train_if_missing=False)
    torch.manual_seed(1000 + seed)
    fresh = FlowGenerator(Denoiser(build_net(net_spec(teacher.denoiser.net)), teacher.denoiser.process,
                                   teacher.denoiser.pred))
    d_student = _diag(generator_layer_cka(teacher, student, seed=seed)).values
    d_fresh = _diag(generator_layer_cka(teacher, fresh, seed=seed)).values
    assert (d_student[1:3] > d_fresh[1:3] + 0.05).all(), (d_student, d_fresh)


def test_digits_unets_compare_block_by_block_with_labels():
    t = lab.zoo.load("digits/teacher", train_if_missing=False)
    s = lab.zoo.load("digits/consistency", train_if_missing=False)
    df = generator_layer_cka(t, s, n=32, times=(0.5,), teacher_nfe=2)
    layers = default_layers(t.denoiser.net)
    assert "unet.mid_block" in layers and layers[-1] == "unet.conv_out"
    assert len(df) == len(layers) ** 2 and df.cka.notna().all()
    assert df[(df.teacher_layer == "unet.conv_out") & (df.student_layer == "unet.conv_out")].cka.item() > 0.5


def test_bad_input_is_one_line(teacher):
    particles = lab.zoo.load("toy2d/8gaussians/sds", train_if_missing=False)
    with pytest.raises(LabError, match="no network over") as e:
        generator_layer_cka(teacher, particles)
    assert "\n" not in str(e.value)
    with pytest.raises(LabError, match=r"n must be an integer in \[8, 4096\]"):
        generator_layer_cka(teacher, teacher, n=2)
    with pytest.raises(LabError, match=r"times must be"):
        generator_layer_cka(teacher, teacher, times=(0.0,))
